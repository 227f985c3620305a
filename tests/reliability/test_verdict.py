"""The shipped model and its regressor on simulated frames: the verdict follows what a microscopist would see."""

from dataclasses import replace

import numpy as np
import onnx
import pytest

from copilot.analysis import measure
from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.reliability.score import Assessor
from copilot.sim.stem import SimParams, simulate_frame

SHARP = SimParams(size_px=512, nm_per_px=0.25, dose=120.0, probe_blur_nm=0.15, area_fraction=0.15,
                  touching_fraction=0.1)


@pytest.fixture(scope="module")
def backend():
    return OrtBackend.from_name("particles-stem")


def judge(backend, params, seed=0, invert=False):
    sim = simulate_frame(params, seed)
    image = sim.image
    if invert:
        image = (int(image.max()) + int(image.min()) - image.astype(np.int64)).astype(np.uint16)
    frame = Frame(image, params.nm_per_px, stream="t", frame_id=str(seed), origin="sim")
    reliability, verdict, uncertainty = Assessor(backend.card, backend.folder).assess(measure(backend.segment(frame)))
    return reliability, verdict, uncertainty


def test_regressor_is_onnx_without_pickle(backend):
    path = backend.folder / backend.card.reliability_regressor
    model = onnx.load(path)
    assert {op.domain for op in model.opset_import} <= {"", "ai.onnx.ml"}
    assert b"pickle" not in path.read_bytes()


def test_sharp_in_domain_frame_is_ok(backend):
    r, v, unc = judge(backend, SHARP)
    assert v.level == "ok", v.reasons
    assert r.predicted_f1 > 0.85
    assert unc.shape == (256, 256) and 0 <= unc.min() and unc.max() <= 1


def test_blurred_frame_predicts_lower_f1_and_says_out_of_focus(backend):
    sharp, _, _ = judge(backend, SHARP)
    # 2.6 nm: well past what the model sizes (true F1 0.73 with particles-stem 0.7.0). At 1.8 nm, the blur this test
    # used up to 0.6.0, 0.7.0 still scores object F1 0.94 and the regressor says so (0.935): an 'ok' there
    blurred, v, _ = judge(backend, replace(SHARP, probe_blur_nm=2.6))
    assert blurred.predicted_f1 < sharp.predicted_f1 - 0.1
    assert v.level != "ok" and any("out of focus" in r for r in v.reasons), v.reasons


def test_tenth_of_the_dose_predicts_lower_f1_and_says_dose_too_low(backend):
    # from the low end of the training doses (5 counts/px at unit signal) to a tenth of it
    sharp, _, _ = judge(backend, replace(SHARP, dose=5.0))
    dim, v, _ = judge(backend, replace(SHARP, dose=0.5))
    assert dim.predicted_f1 < sharp.predicted_f1 - 0.05
    assert v.level != "ok" and any("dose too low" in r for r in v.reasons), v.reasons


@pytest.mark.parametrize("kind", ["blank", "noise", "photograph"])
def test_frames_the_model_was_never_meant_for_fail(backend, kind):
    from skimage import data, transform

    if kind == "blank":
        img = np.full((512, 512), 3000, np.uint16)
    elif kind == "noise":
        img = np.random.default_rng(0).poisson(50, (512, 512)).astype(np.uint16)
    else:
        img = (transform.resize(data.camera(), (512, 512)) * 60000).astype(np.uint16)
    # each the first frame of its own stream: the daemon forgets a failed frame's particle size
    # (tests/test_pipeline.py); this direct path does not, and after the noise frame the photograph would start 2x
    # upsampled
    frame = Frame(img, 0.25, stream=kind, frame_id=kind, origin="test")
    _, v, _ = Assessor(backend.card, backend.folder).assess(measure(backend.segment(frame)))
    if kind == "photograph":  # 8 of 10 photographs fail (bench/reliability/report.md); this one is never trusted
        assert v.level != "ok", v.reasons
    else:
        assert v.level == "fail", v.reasons


def test_inverted_contrast_is_in_scope_for_a_model_trained_on_both_contrasts(backend):
    # particles-stem learned HAADF (bright particles) and BF-TEM (dark particles): an inverted HAADF frame is fine
    assert "BF-TEM" in backend.card.description or "bf-tem" in backend.card.description.lower()
    r, v, _ = judge(backend, SHARP, invert=True)
    assert v.level != "fail" and r.predicted_f1 > 0.8, v.reasons


def test_noise_without_structure_fails_on_its_signal_to_noise(backend):
    # a noise frame the network happens to find nothing in gets a high predicted F1 (nothing missed, nothing wrong):
    # its signal-to-noise below 1 (no simulated frame under 1 reached F1 0.5) is what fails it
    img = np.random.default_rng(9).poisson(300, (512, 512)).astype(np.uint16)
    frame = Frame(img, 0.25, stream="no-structure", frame_id="noise", origin="test")  # no prior scale
    r, v, _ = Assessor(backend.card, backend.folder).assess(measure(backend.segment(frame)))
    assert r.quality["snr"] < 1.0
    assert v.level == "fail" and any("no structure above the noise" in x for x in v.reasons), v.reasons
