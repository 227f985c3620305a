import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copilot.analysis.phases import measure_phases
from copilot.analysis.settings import AnalysisSettings
from copilot.frame import Frame
from copilot.inference.segmentation import Segmentation

CLASSES = ("matrix", "lath")


def seg_from_classes(labels: np.ndarray, nm=1.0) -> Segmentation:
    probs = np.stack([(labels == c).astype(np.float32) * 0.9 + 0.05 for c in range(len(CLASSES))])
    frame = Frame(np.zeros(labels.shape, np.uint16), nm_per_px=nm, stream="s", frame_id="f", origin="m")
    return Segmentation(frame, probs, np.zeros(2, np.float32), CLASSES, "m", "1", "test")


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(0, 256), cols=st.integers(0, 256))
def test_exact_fraction_of_known_mask(rows, cols):
    labels = np.zeros((256, 256), np.uint8)
    labels[:rows, :cols] = 1
    ph = measure_phases(seg_from_classes(labels)).summary.phases
    lath = ph.phases[1]
    # boundaries are measured sub-pixel (the bilinear iso-line): straight edges are exact, each convex corner of
    # the mask is rounded off by a fraction of a pixel
    assert lath.area_fraction == pytest.approx(rows * cols / 256**2, abs=1 / 256**2)
    assert ph.phases[0].area_fraction + lath.area_fraction == pytest.approx(1.0)


def test_intervals_contain_truth_and_widen_with_correlation():
    rng = np.random.default_rng(0)
    fine = np.kron((rng.random((256, 256)) < 0.3).astype(np.uint8), np.ones((2, 2), np.uint8))  # uncorrelated 2² px
    coarse = np.kron((rng.random((8, 8)) < 0.3).astype(np.uint8), np.ones((64, 64), np.uint8))  # 64-px patches
    cfg = AnalysisSettings(phase_block_px=64)
    f = measure_phases(seg_from_classes(fine), cfg).summary.phases.phases[1]
    c = measure_phases(seg_from_classes(coarse), cfg).summary.phases.phases[1]
    assert f.ci.low <= 0.3 <= f.ci.high
    assert c.ci.low <= c.area_fraction <= c.ci.high
    assert (c.ci.high - c.ci.low) > 5 * (f.ci.high - f.ci.low)
    assert abs(f.point_count - f.area_fraction) < 0.03
    assert f.point_count_ci.low <= 0.3 <= f.point_count_ci.high


def test_sufficiency_for_headline_phase():
    labels = np.zeros((512, 512), np.uint8)
    labels[:, :256] = 1
    m = measure_phases(seg_from_classes(labels)).summary
    (s,) = m.sufficiency
    assert s.quantity == "fraction:lath" and s.estimate == pytest.approx(0.5)



@pytest.mark.parametrize("shape", [(4000, 8), (8, 4000), (5, 300)])
def test_point_count_on_a_strip_narrower_than_the_grid_spacing(shape):
    """A frame narrower than the point grid's spacing still gets a line of points (it had none: 0 / 0, and the
    frame failed in its document)."""
    labels = np.zeros(shape, np.uint8)
    if shape[0] > shape[1]:
        labels[: shape[0] // 2] = 1
    else:
        labels[:, : shape[1] // 2] = 1
    ph = measure_phases(seg_from_classes(labels), AnalysisSettings(point_grid_spacing_px=16)).summary.phases
    lath = ph.phases[1]
    assert ph.grid_points > 0
    assert lath.point_count == pytest.approx(0.5, abs=0.06) and lath.area_fraction == pytest.approx(0.5, abs=0.01)
