import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.preprocess import resample
from copilot.inference.tiling import blend_window, pad_to_multiple, tile_grid


@pytest.mark.parametrize("h,w,tile,overlap", [(100, 100, 64, 8), (1000, 300, 256, 32), (64, 64, 64, 8), (513, 1025, 512, 32)])
def test_tiles_cover_the_image_with_overlap(h, w, tile, overlap):
    cover = np.zeros((h, w), int)
    tiles = tile_grid(h, w, tile, overlap)
    for t in tiles:
        assert t.h <= tile and t.w <= tile and t.y + t.h <= h and t.x + t.w <= w
        cover[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert cover.min() >= 1
    ys = sorted({t.y for t in tiles})
    for a, b in zip(ys, ys[1:]):
        assert a + tile - b >= overlap


def test_blend_window_is_positive_and_ramps():
    w = blend_window(64, 64, 16)
    assert w.min() > 0 and w[32, 32] == 1.0 and w[0, 32] < w[8, 32] < w[20, 32]


def test_pad_to_multiple_restores_size():
    img = np.arange(35 * 21, dtype=np.float32).reshape(35, 21)
    padded, size = pad_to_multiple(img, 8)
    assert padded.shape == (40, 24) and size == (35, 21)
    np.testing.assert_array_equal(padded[:35, :21], img)


def test_resample_keeps_scale_and_mean():
    img = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    out, s = resample(img, 2.0)
    assert out.shape == (150, 100) and s == 2.0
    assert abs(out.mean() - img.mean()) < 1e-3
    out, s = resample(img, 1.5)
    assert out.shape == (200, 133) and s == pytest.approx(1.5)


def test_tiled_inference_matches_whole_frame(threshold_model_dir, disc_frame):
    whole = OrtBackend.from_name(threshold_model_dir, max_whole_px=4096).segment(disc_frame)
    tiled_backend = OrtBackend.from_name(threshold_model_dir, max_whole_px=64)
    tiled = tiled_backend.segment(disc_frame)
    assert tiled.probabilities.shape == whole.probabilities.shape == (3, 256, 256)
    np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-5)
    np.testing.assert_allclose(tiled.probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_backend_resamples_to_working_scale(threshold_model_dir, disc_frame):
    fine = Frame(disc_frame.pixels, nm_per_px=0.25, stream="s", frame_id="f", origin="m")
    seg = OrtBackend.from_name(threshold_model_dir).segment(fine)
    assert seg.probabilities.shape[1:] == (128, 128)
    assert seg.frame_px_per_px == 2.0 and seg.nm_per_px == pytest.approx(0.5)
    unc = Frame(disc_frame.pixels, nm_per_px=None, stream="s", frame_id="f", origin="m")
    seg = OrtBackend.from_name(threshold_model_dir).segment(unc)
    assert seg.probabilities.shape[1:] == (256, 256) and seg.nm_per_px is None


def test_card_sha256_mismatch_is_refused(threshold_model_dir):
    (threshold_model_dir / "model.onnx").write_bytes((threshold_model_dir / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        OrtBackend.from_name(threshold_model_dir)
