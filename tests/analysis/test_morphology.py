"""Phase morphology against structures of known widths and spacings."""

import numpy as np
import pytest

from copilot.analysis.morphology import local_widths, measure_morphology
from copilot.analysis.phases import measure_phases
from copilot.analysis.settings import AnalysisSettings
from copilot.document.schema import Measurements
from copilot.result import measurements_document
from copilot.sim.structures import lamellae, ligament_network
from tests.analysis.test_phases import seg_from_classes


@pytest.mark.parametrize("width", [5, 9, 14, 25])
@pytest.mark.parametrize("angle", [0, 17, 45, 71])
def test_band_width_at_any_orientation(width, angle):
    band = lamellae((256, 256), width, width * 2.5, angle) == 1
    w, ys, xs = local_widths(band)
    assert len(w) > 100 and len(w) == len(ys) == len(xs)
    assert np.median(w) == pytest.approx(width, rel=0.05)


def test_empty_and_full_phases_have_no_widths():
    assert len(local_widths(np.zeros((64, 64), bool))[0]) == 0
    m = measure_morphology(np.zeros((64, 64), np.uint8), ("matrix", "pore"))
    pore = m.phases[1]
    assert pore.width_samples == 0 and pore.width_median is None and pore.mean_intercept is None
    assert m.anisotropy is None


def test_ligament_network_width_and_interval():
    lab = ligament_network((512, 512), 9.0, 18, rng=3)
    m = measure_morphology(lab, ("pore", "ligament"), 2.0, resamples=300)  # 2 nm per pixel
    lig = m.phases[1]
    assert lig.width_median.value == pytest.approx(18.0, rel=0.05)
    assert lig.width_median.low <= lig.width_median.value <= lig.width_median.high
    assert lig.width_p10 <= lig.width_median.value <= lig.width_p90
    assert m.anisotropy < 2 and lig.lamellar_spacing is None  # random network: not lamellar


def test_lamellar_spacing_and_intercept_identities():
    lab = lamellae((512, 512), 6, 16, angle_deg=30)
    m = measure_morphology(lab, ("ferrite", "cementite"), resamples=300)
    assert m.anisotropy > 2
    ferrite, cementite = m.phases
    for ph in m.phases:
        assert ph.lamellar_spacing.value == pytest.approx(16, rel=0.02)
        assert ph.lamellar_spacing.low <= ph.lamellar_spacing.value <= ph.lamellar_spacing.high
    assert cementite.width_median.value == pytest.approx(6, rel=0.05)
    assert ferrite.width_median.value == pytest.approx(10, rel=0.05)
    vv = lab.mean()
    assert cementite.mean_intercept.value / cementite.mean_free_path.value == pytest.approx(vv / (1 - vv), rel=0.05)  # L_L ≈ V_V
    # two phases: one phase's free path is the other's mean intercept
    assert cementite.mean_free_path.value == pytest.approx(ferrite.mean_intercept.value)


def test_phases_document_carries_morphology_in_nm():
    lab = lamellae((256, 256), 5, 12, angle_deg=90)
    fm = measure_phases(seg_from_classes(lab, nm=0.5), AnalysisSettings(bootstrap_resamples=200))
    doc = Measurements.model_validate_json(measurements_document(fm).model_dump_json())
    morph = doc.phases.morphology
    assert [p.name for p in morph.phases] == ["matrix", "lath"]
    lath = morph.phases[1]
    assert lath.width_median == pytest.approx(2.5, rel=0.05) and lath.lamellar_spacing == pytest.approx(6.0, rel=0.02)
    assert lath.width_median_ci.low <= lath.width_median <= lath.width_median_ci.high
    off = measure_phases(seg_from_classes(lab), AnalysisSettings(morphology=False, bootstrap_resamples=200))
    assert off.morphology is None and measurements_document(off).phases.morphology is None


def test_intercept_intervals_hold_their_estimates():
    lab = ligament_network((256, 256), 7.0, 2, rng=5)  # sparse: many test lines never cross a ligament
    for ph in measure_morphology(lab, ("pore", "ligament"), resamples=200).phases:
        for est in (ph.mean_intercept, ph.mean_free_path):
            assert est.low <= est.value <= est.high


def test_resampled_medians_equal_the_full_table():
    """The block bootstrap's medians read by binary search equal those of the full (resamples × bins) table."""
    from copilot.analysis.morphology import _hist_median, _resampled_medians

    rng = np.random.default_rng(4)
    hist = rng.poisson(0.3, size=(23, 700)).astype(np.float64)
    hist[5] = 0.0
    hist[:, 0] += 1  # every block has a sample
    picks = rng.integers(0, 23, size=(500, 23))
    weights = np.zeros((500, 23))
    np.add.at(weights, (np.arange(500)[:, None], picks), 1)
    np.testing.assert_array_equal(_resampled_medians(weights, np.cumsum(hist, axis=1)), _hist_median(weights @ hist))


def test_a_frame_all_of_one_class_has_no_widths():
    """A blank frame (one class everywhere) has no inscribed circle inside the frame: no widths, and no thinning of
    the whole frame to find that out; a band inside the frame keeps its width."""
    full = np.ones((300, 200), bool)
    w, ys, xs = local_widths(full)
    assert w.size == ys.size == xs.size == 0
    band = np.zeros((300, 200), bool)
    band[100:131, 5:195] = True  # 31 px wide
    assert np.median(local_widths(band)[0]) == pytest.approx(31, abs=0.5)
