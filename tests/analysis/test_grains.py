"""ASTM E112 grain size on ground-truth boundary maps of simulated polycrystals."""

import numpy as np
import pytest

from copilot.analysis.grains import close_grains, g_intercept, g_planimetric, measure_grains
from copilot.sim.polycrystal import g_from_na, na_from_g, simulate_polycrystal


def nm_for(g: float, size: int, grains: int) -> float:
    """Pixel size that puts about ``grains`` grains of ASTM number ``g`` on a size² frame."""
    return float(np.sqrt(1 / (na_from_g(g) * size * size / grains)) * 1e6)


def test_e112_formulas():
    assert g_from_na(15.5 * 2 ** 7) == pytest.approx(8.0, abs=0.01)  # E112 table: G 8 ↔ 1984 grains/mm²
    assert g_planimetric(1984.0) == pytest.approx(8.0, abs=0.01)
    assert g_intercept(0.0226) == pytest.approx(7.6, abs=0.05)  # E112 table: G 7.5–7.6 ↔ ℓ ≈ 22.6 µm


@pytest.mark.parametrize("g, sigma, curvature, seed", [(8, 0.0, 0.0, 0), (9, 0.5, 0.0, 1), (10, 0.3, 3.0, 2)])
def test_planimetric_and_intercept_g_match_truth(g, sigma, curvature, seed):
    pc = simulate_polycrystal((512, 512), g, nm_for(g, 512, 400), sigma, curvature, 2.0, rng=seed)
    r = measure_grains(pc.boundaries, pc.nm_per_px)
    assert r.planimetric.g == pytest.approx(pc.g, abs=0.25)
    assert r.planimetric.low <= r.planimetric.g <= r.planimetric.high
    assert r.intercept.g == pytest.approx(pc.g_intercept, abs=0.3)
    assert r.intercept.low <= r.intercept.g <= r.intercept.high
    assert r.n_inside > 250 and r.n_intercepted > 50
    edges, counts = r.g_histogram
    assert counts.sum() == r.n_inside == len(r.areas_um2) and np.allclose(np.diff(edges), 0.5)
    assert not r.ala


def test_every_pixel_belongs_to_a_grain_and_edge_grains_are_left_out_of_sizes():
    pc = simulate_polycrystal((256, 256), 9, nm_for(9, 256, 120), rng=5)
    r = measure_grains(pc.boundaries, pc.nm_per_px)
    assert (r.grains > 0).all()
    assert r.n_inside + r.n_intercepted == len(np.unique(r.grains))
    # grain areas of interior grains add up to the interior part of the frame
    edge_ids = np.unique(np.concatenate([r.grains[0], r.grains[-1], r.grains[:, 0], r.grains[:, -1]]))
    interior_px = (~np.isin(r.grains, edge_ids)).sum()
    assert r.areas_um2.sum() == pytest.approx(interior_px * (pc.nm_per_px * 1e-3) ** 2)


def test_boundary_gaps_are_closed():
    pc = simulate_polycrystal((512, 512), 8, nm_for(8, 512, 400), boundary_px=2.0, rng=7)
    rng = np.random.default_rng(0)
    broken = pc.boundaries.copy()
    for y, x in rng.integers(0, 510, size=(400, 2)):  # 400 gaps of 2 px
        broken[y : y + 2, x : x + 2] = False
    open_ = measure_grains(broken, pc.nm_per_px)
    closed = measure_grains(broken, pc.nm_per_px, close_px=2)
    assert abs(closed.planimetric.g - pc.g) <= 0.25
    assert abs(closed.planimetric.g - pc.g) < abs(open_.planimetric.g - pc.g)


def test_ala_flags_one_huge_grain():
    pc = simulate_polycrystal((512, 512), 9, nm_for(9, 512, 500), rng=3)
    b = pc.boundaries.copy()
    yy, xx = np.mgrid[:512, :512]
    b[(yy - 256) ** 2 + (xx - 256) ** 2 < 90**2] = False  # one grain of ~25 000 px among ~500 px ones
    r = measure_grains(b, pc.nm_per_px)
    assert r.ala and r.planimetric.g - r.ala_g >= 3


def test_uncalibrated_frame_and_small_regions():
    with pytest.raises(ValueError, match="calibrated"):
        measure_grains(np.zeros((64, 64), bool), None)
    b = np.zeros((32, 32), bool)
    b[10, :] = True
    b[20:23, 5:7] = True  # encloses nothing; the 1-px bits between would be tiny regions
    assert close_grains(b).max() == 2


def test_rendered_sem_image_has_dark_boundaries_and_grain_contrast():
    from copilot.sim.polycrystal import render_sem

    pc = simulate_polycrystal((256, 256), 9, nm_for(9, 256, 120), rng=1)
    img = render_sem(pc, rng=1)
    assert img.shape == (256, 256) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert img[pc.boundaries].mean() < img[~pc.boundaries].mean() - 0.1
    grain_means = [img[(pc.grains == g) & ~pc.boundaries].mean() for g in np.unique(pc.grains)[:40]]
    assert np.std(grain_means) > 0.05  # channelling contrast differs from grain to grain
