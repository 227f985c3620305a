import numpy as np
import pytest
from scipy import ndimage as ndi

from copilot.analysis.particles import measure_particles
from copilot.frame import Frame
from copilot.inference.card import EmbeddingReference
from copilot.reliability.features import OUTPUT_FEATURES, entropy_map, output_features
from copilot.reliability.quality import image_quality, noise_sigma, sharpness
from copilot.reliability.shift import ShiftWindow, embedding_distance, mmd2
from tests.analysis.test_particles import discs, segmentation_from_instances


def test_output_features_count_objects_by_confidence():
    inst = discs((200, 200), [(50, 50), (50, 150), (150, 100)], 12)
    fm = measure_particles(segmentation_from_instances(inst, 0.5))
    f = output_features(fm)
    assert set(OUTPUT_FEATURES) <= set(f)
    assert f["n_objects"] == 3 and f["counts_0.9"] == 3 and sum(f[f"counts_{b / 10}"] for b in range(1, 9)) == 0
    assert f["area_ratio"] == pytest.approx((inst > 0).mean())
    assert 0.9 < f["image_confidence"] <= 1


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    certain = np.zeros((3, 4, 4), np.float32)
    certain[0] = 1
    assert entropy_map(certain).max() == pytest.approx(0, abs=1e-4)
    assert entropy_map(np.full((3, 4, 4), 1 / 3, np.float32)).min() == pytest.approx(1, abs=1e-4)


def test_quality_sees_blur_noise_saturation_and_blank():
    rng = np.random.default_rng(0)
    sharp = np.kron(rng.random((32, 32)), np.ones((16, 16))).astype(np.float32)
    blurred = ndi.gaussian_filter(sharp, 4)
    assert sharpness(blurred) < 0.5 * sharpness(sharp)
    noisy = sharp + rng.normal(0, 0.2, sharp.shape).astype(np.float32)
    assert noise_sigma(noisy) == pytest.approx(0.2, rel=0.25)
    assert noise_sigma(sharp) < 0.05
    img = (sharp * 60000).astype(np.uint16)
    img[:100] = 65535
    q = image_quality(Frame(img, 1.0, "s", "f", "m"), None)
    assert q["saturated_fraction"] > 0.1
    blank = image_quality(Frame(np.full((64, 64), 500, np.uint16), 1.0, "s", "f", "m"), None)
    assert blank["dynamic_range"] == 0


def test_noise_is_measured_at_the_frames_own_pixels_when_it_was_enlarged():
    from copilot.inference.card import Normalization
    from copilot.inference.preprocess import normalize, resample
    from copilot.reliability.quality import native_crop

    frame = Frame(np.random.default_rng(4).poisson(300, (512, 512)).astype(np.uint16), 1.0, "s", "f", "m")  # noise only
    norm = Normalization()
    enlarged, _ = resample(frame.pixels.astype(np.float32), 0.5)  # 2× onto a finer working grid
    own = image_quality(frame, native_crop(frame, norm))
    interpolated = image_quality(frame, normalize(enlarged, norm))
    assert own["snr"] < 1.0 < interpolated["snr"]  # interpolation smooths away the noise the Laplacian sees
    assert own["noise_sigma"] > 2 * interpolated["noise_sigma"]
    assert native_crop(frame, norm).shape == (256, 256)


def test_shift_distance_and_window_mmd():
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, (300, 8))
    ref = EmbeddingReference(mean=train.mean(0).tolist(), std=train.std(0).tolist(), samples=train[:200].tolist())
    assert embedding_distance(train.mean(0), ref) == pytest.approx(0, abs=1e-9)
    assert embedding_distance(train.mean(0) + 3 * train.std(0), ref) == pytest.approx(3, rel=1e-6)
    same, far = rng.normal(0, 1, (10, 8)), rng.normal(2.5, 1, (10, 8))
    assert mmd2(far, train, 1 / 16) > 10 * abs(mmd2(same, train, 1 / 16))
    win = ShiftWindow(ref, window=5)
    out = [win.process("s", e) for e in far[:5]]
    assert out[0] is None and out[1] is None and out[-1] > 0
    assert out[-1] == pytest.approx(mmd2((far[:5] - ref.mean) / np.asarray(ref.std), win.ref.samples_z, win.ref.gamma))
    assert win.ref.distance(far[0]) > 2
    assert ShiftWindow(None).process("s", far[0]) is None


def test_edge_blur_estimate_tracks_the_true_blur_and_snr_tracks_dose():
    from copilot.reliability.quality import edge_blur_px, snr

    rng = np.random.default_rng(2)
    steps = np.kron(rng.random((16, 16)) > 0.5, np.ones((32, 32))).astype(np.float32)
    estimates = [edge_blur_px(ndi.gaussian_filter(steps, s)) for s in (0.5, 1.5, 3.0)]
    assert estimates[0] < estimates[1] < estimates[2]
    assert estimates[2] == pytest.approx(3.0, rel=0.25)
    lo = snr(steps + rng.normal(0, 0.3, steps.shape).astype(np.float32))
    hi = snr(steps + rng.normal(0, 0.03, steps.shape).astype(np.float32))
    assert hi > 5 * lo


def test_object_scores_count_only_objects_present_in_the_frame():
    from copilot.train.reliability import object_scores

    truth = np.zeros((40, 40), np.int32)
    truth[5:15, 5:15] = 3  # particles 1 and 2 lie outside the frame: their numbers must not count
    truth[20:30, 20:30] = 7
    pred = np.zeros_like(truth)
    pred[5:15, 5:15] = 1
    s = object_scores(pred, truth)
    assert s == {"f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5}
    assert object_scores(np.zeros_like(truth), np.zeros_like(truth))["f1"] == 1.0


def test_output_maps_match_the_plain_numpy_definitions():
    from copilot.inference.segmentation import output_maps

    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (3, 40, 50)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(0)
    m = output_maps(p)
    assert np.array_equal(m.labels, np.argmax(p, axis=0))
    assert np.allclose(m.confidence, p.max(axis=0))
    q = np.clip(p, 1e-7, 1)
    assert np.allclose(m.entropy, -(q * np.log(q)).sum(0) / np.log(3), atol=1e-5)
    assert np.allclose(m.foreground, 1 - p[0])
    assert entropy_map(p).dtype == np.float32


def test_output_maps_compiled_equal_the_numpy_passes(monkeypatch):
    """The fused pass (segmentation.reduce_classes) gives the class-by-class numpy passes' arrays bit for bit: ties
    go to the first class, zero probabilities, four classes."""
    from copilot.compiled import compiled
    from copilot.inference import segmentation

    if compiled("reduce_classes", vars(segmentation)) is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(6)
    p = rng.random((4, 37, 53)).astype(np.float32)
    p /= p.sum(0)
    p[:, 3, 4] = 0.25
    p[:, 5, 5] = [0, 1, 0, 0]
    fast = segmentation.output_maps(p)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = segmentation.output_maps(p)
    for name in ("labels", "confidence", "entropy", "foreground"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert fast.labels[3, 4] == 0 and fast.labels[5, 5] == 1


def test_shift_window_merges_and_rebuilds_from_documents():
    rng = np.random.default_rng(5)
    train = rng.normal(0, 1, (200, 6))
    ref = EmbeddingReference(mean=train.mean(0).tolist(), std=train.std(0).tolist(), samples=train.tolist())
    frames = rng.normal(1.5, 1, (6, 6))
    whole = ShiftWindow(ref, window=5)
    expected = [whole.process("s", e) for e in frames][-1]
    first, second = ShiftWindow(ref, window=5), ShiftWindow(ref, window=5)
    for e in frames[:3]:
        first.process("s", e)
    for e in frames[3:]:
        second.process("s", e)
    first.merge(second)
    assert first.results("s") == pytest.approx(expected)
    rebuilt = ShiftWindow(ref, window=5)
    rebuilt.rebuild("s", [{"reliability": {"embedding": e.tolist()}} for e in frames] + [{"reliability": {}}])
    assert rebuilt.results("s") == pytest.approx(expected)
    assert rebuilt.results("other") is None
    with pytest.raises(TypeError):
        first.merge(object())
    from copilot.accumulator import Accumulator

    assert isinstance(rebuilt, Accumulator)
