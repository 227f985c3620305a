"""SEM microstructures: class maps are what was drawn, fractions in range, porous structures connected, detectors."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from copilot.sim.sem import (CLASS_NAMES, SemParams, grains, porous_structure, random_sem_params, simulate_sem,
                             two_phase_structure)

QUIET = dict(scanline_noise=0.0, line_jitter_px=0.0, drift_shear=0.0, read_noise=0.0, dose=500.0)


def test_frame_types_and_truth():
    f = simulate_sem(SemParams(size_px=(96, 128), nm_per_px=2.0), 0)
    assert f.image.shape == f.instances.shape == (96, 128)
    assert f.image.dtype == np.uint16 and f.instances.dtype == np.int32
    assert f.truth["task"] == "phases" and f.truth["class_names"] == list(CLASS_NAMES)
    assert f.class_map is f.instances
    assert sum(f.truth["fractions"]) == pytest.approx(1.0)
    frac = np.bincount(f.instances.ravel(), minlength=3) / f.instances.size
    assert np.allclose(frac, f.truth["fractions"])
    g = simulate_sem(SemParams(size_px=(96, 128), nm_per_px=2.0), 0)
    assert np.array_equal(f.image, g.image) and np.array_equal(f.instances, g.instances)


def test_two_phase_fractions_in_range_and_laths_elongated():
    rng = np.random.default_rng(1)
    for _ in range(6):
        p = random_sem_params(rng, 192, structure="two-phase", nm_per_px=2.0)
        f = simulate_sem(p, rng)
        fr = f.truth["fractions"]
        assert 0.4 < fr[0] < 1.0 and 0.0 <= fr[1] < 0.55 and fr[2] < 0.08
    # all grains transformed, no particles: the laths cover about width / spacing of the keep-gated area
    p = SemParams(size_px=256, nm_per_px=2.0, lath_grain_fraction=1.0, lath_width_nm=20.0, lath_spacing_nm=50.0,
                  lath_keep=1.0, lath_waviness_nm=0.0, particle_fraction=0.0, pore_fraction=0.0)
    cls, _, _ = two_phase_structure(p, np.random.default_rng(2))
    assert np.mean(cls == 1) == pytest.approx(20.0 / 50.0, abs=0.04)
    # laths are long and thin: components have a large aspect ratio
    lab, n = ndi.label(cls == 1)
    assert n >= 5
    from skimage.measure import regionprops

    big = [r for r in regionprops(lab) if r.area > 200]
    assert big and np.median([r.axis_major_length / max(r.axis_minor_length, 1) for r in big]) > 3


def test_pore_area_matches_the_boolean_model():
    p = SemParams(size_px=512, nm_per_px=2.0, lath_grain_fraction=0.0, particle_fraction=0.0, pore_fraction=0.05,
                  pore_nm=30.0)
    fr = [np.mean(two_phase_structure(p, np.random.default_rng(s))[0] == 2) for s in range(3)]
    # discs of area fraction f placed at random cover 1 - exp(-f)
    assert np.mean(fr) == pytest.approx(1 - np.exp(-0.05), rel=0.2)


def _largest_share(mask: np.ndarray) -> float:
    lab, _ = ndi.label(mask)
    sizes = np.bincount(lab.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def test_porous_structure_fraction_and_connectivity():
    """A thresholded band-limited random field: ligaments form one network below 50 % porosity; at 50 % (the 2-D
    percolation point) both ligaments and pores form large connected channels; pores are never salt-and-pepper."""
    for porosity in (0.4, 0.5):
        p = SemParams(size_px=384, nm_per_px=2.0, structure="porous", porosity=porosity, ligament_nm=30.0)
        cls, h, _ = porous_structure(p, np.random.default_rng(3))
        assert set(np.unique(cls)) == {0, 2}
        assert np.mean(cls == 2) == pytest.approx(porosity, abs=0.005)
        pores, _ = ndi.label(cls == 2)
        sizes = np.bincount(pores.ravel())[1:]
        assert sizes[sizes > (30 / 2.0) ** 2].sum() / sizes.sum() > 0.9
        assert h[cls == 2].max() < h[cls == 0].min()  # pores are below the ligaments
        if porosity == 0.4:
            assert _largest_share(cls == 0) > 0.8
        else:
            assert _largest_share(cls == 0) > 0.3 and _largest_share(cls == 2) > 0.3


def test_grain_boundary_distance():
    gid, dist, n = grains((128, 128), 2.0, 60.0, np.random.default_rng(0))
    assert n >= 4 and len(np.unique(gid)) >= 3
    changes = np.zeros_like(gid, bool)
    changes[:, 1:] |= gid[:, 1:] != gid[:, :-1]
    assert np.median(dist[changes]) < 2.0  # ≤ 1 px from a boundary where the grain id changes
    assert dist.max() > 10.0


def test_se_edges_are_bright_and_bse_shows_composition():
    base = SemParams(size_px=256, nm_per_px=2.0, structure="two-phase", lath_grain_fraction=0.6, particle_fraction=0.03,
                     se_matrix=0.3, se_second=0.3, edge_gain=0.8, relief_nm=20.0, bse_matrix=0.4, bse_second=0.7,
                     channeling=0.0, probe_blur_nm=0.5, **QUIET)
    se = simulate_sem(base, 5)
    cls = se.instances
    edge = ndi.binary_dilation(cls == 1) & ~ndi.binary_erosion(cls == 1)
    interior = ndi.binary_erosion(cls == 1, iterations=3)
    assert se.image[edge].mean() > se.image[interior].mean() * 1.2  # SE edge brightening
    bse = simulate_sem(replace(base, detector="bse"), 5)
    assert np.array_equal(bse.instances, cls)
    assert bse.image[interior].mean() > bse.image[ndi.binary_erosion(cls == 0, iterations=3)].mean() * 1.4
    with pytest.raises(ValueError):
        simulate_sem(replace(base, detector="eds"), 0)


def test_etching_grooves_darken_or_brighten_boundaries_only_when_etched():
    p = SemParams(size_px=256, nm_per_px=2.0, lath_grain_fraction=0.0, particle_fraction=0.0, relief_nm=0.0,
                  grain_etch_nm=0.0, edge_gain=0.8, shadow_gain=0.0, probe_blur_nm=0.5, **QUIET)
    # simulate_sem(p, 7) draws its grains first from default_rng(7): the same grains
    gid, dist, _ = grains((256, 256), 2.0, p.grain_nm, np.random.default_rng(7))
    etched = simulate_sem(replace(p, etch_depth_nm=40.0, groove_width_nm=8.0), 7)
    polished = simulate_sem(replace(p, etch_depth_nm=0.0), 7)
    near = dist < 8.0
    far = dist > 30.0
    e, q = etched.image.astype(float), polished.image.astype(float)
    assert abs(e[near].mean() - e[far].mean()) > 0.1 * e[far].mean()  # grooves visible
    assert abs(q[near].mean() - q[far].mean()) < 0.03 * q[far].mean()  # as-polished: no groove contrast


def test_drift_shear_moves_classes_with_the_image():
    p = SemParams(size_px=128, nm_per_px=2.0, structure="porous", **QUIET)
    a = simulate_sem(p, 1)
    b = simulate_sem(replace(p, drift_shear=0.1), 1)
    assert not np.array_equal(a.instances, b.instances)
    # row i moved by round(0.1 i): compare an inner band
    i = 100
    s = int(round(0.1 * i))
    assert np.array_equal(b.instances[i, s + 5:120], a.instances[i, 5:120 - s])
