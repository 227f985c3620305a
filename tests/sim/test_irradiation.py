"""The irradiated-foil simulator: exact masks and classes, Fresnel contrast that inverts through focus, the truth the
measurements are checked against (swelling, densities), and the defects shift groups."""

from dataclasses import replace

import numpy as np
import pytest

from copilot.sim.domains import groups_for, sample_domain_frame
from copilot.sim.irradiation import (CAVITY, LOOP, Defect, FoilParams, class_map, render_defects, simulate_foil)

QUIET = dict(size_px=160, nm_per_px=0.5, cavity_density_per_um2=0.0, loop_density_per_um2=0.0, line_dislocations=0,
             precipitate_density_per_um2=0.0, bend_contours=0, fringe_contrast=0.0, contamination=0.0, dose=1e5,
             read_noise=0.0, thickness_gradient=0.0, drift_nm=0.0)


def _one_cavity(defocus_nm: float) -> np.ndarray:
    """Mean image at the core and in a ring just outside a 16 nm cavity, relative to the far background."""
    p = FoilParams(**QUIET, defocus_nm=defocus_nm)
    import copilot.sim.irradiation as irr

    orig = irr.place_defects
    irr.place_defects = lambda p, rng: [Defect(CAVITY, 40.0, 40.0, 8.0, 8.0, 0.0)]
    try:
        f = simulate_foil(p, 0)
    finally:
        irr.place_defects = orig
    img = f.image.astype(float)
    yy, xx = np.mgrid[:160, :160]
    r = np.hypot((xx + 0.5) * 0.5 - 40, (yy + 0.5) * 0.5 - 40)
    bg = img[r > 25].mean()
    return np.array([img[r < 3].mean() / bg, img[(r > 8.2) & (r < 9.5)].mean() / bg])


def test_fresnel_contrast_inverts_through_focus():
    core_u, ring_u = _one_cavity(-1000.0)
    core_o, ring_o = _one_cavity(+1000.0)
    assert core_u > 1.02 and ring_u < 0.99  # under-focus: bright core, dark ring
    assert core_o < 0.99 and ring_o > 1.01  # over-focus: inverted
    assert abs(_one_cavity(-1.0)[0] - 1) < abs(core_u - 1) / 2  # near focus: mass-thickness contrast only


def test_masks_classes_and_truth_are_exact():
    f = simulate_foil(replace(FoilParams(size_px=256, nm_per_px=0.5), cavity_density_per_um2=1500,
                              loop_density_per_um2=1500), 3)
    rows = f.truth["defects"]
    ids = {r["instance"] for r in rows}
    assert ids == set(np.unique(f.instances[f.instances > 0]).tolist())
    cm = class_map(f)
    assert {"cavity", "loop"} == {r["class"] for r in rows}
    for r in rows[:20]:
        got = np.unique(cm[f.instances == r["instance"]])
        assert got.tolist() == [1 if r["class"] == "cavity" else 2]
    # a cavity's mask area matches its outline (round ones: π a b) when it is inside the frame
    inner = [r for r in rows if r["class"] == "cavity" and not r["touches_edge"] and not r["facets"]
             and r["diameter_nm"] > 6]
    assert inner
    for r in inner:
        assert r["area_px"] * 0.25 == pytest.approx(np.pi * r["a_nm"] * r["b_nm"], rel=0.1)
    assert f.truth["foil_thickness_nm"] == 80.0 and f.truth["swelling"] > 0


def test_swelling_truth_follows_the_formula():
    p = FoilParams(**{**QUIET, "size_px": 200})  # 100 nm x 100 nm
    import copilot.sim.irradiation as irr

    cavities = [Defect(CAVITY, 30.0, 30.0, 5.0, 5.0, 0.0), Defect(CAVITY, 70.0, 60.0, 10.0, 10.0, 0.0),
                Defect(LOOP, 20.0, 80.0, 4.0, 3.0, 0.0), Defect(CAVITY, 130.0, 50.0, 5.0, 5.0, 0.0)]  # last: outside
    orig = irr.place_defects
    irr.place_defects = lambda p, rng: cavities
    try:
        f = simulate_foil(p, 0)
    finally:
        irr.place_defects = orig
    v = np.pi / 6 * (10.0**3 + 20.0**3)
    assert f.truth["swelling"] == pytest.approx(v / (100 * 100 * 80.0 - v))
    assert f.truth["density_per_um2"]["cavity"] == pytest.approx(2 / 0.01)
    assert len(f.truth["defects"]) == 3  # the one outside the frame has no pixels


def test_render_puts_loops_on_a_ring_and_dots_filled():
    p = FoilParams(**QUIET)
    big = Defect(LOOP, 40.0, 40.0, 12.0, 8.0, 0.3, g_angle=0.0)
    dot = Defect(LOOP, 60.0, 60.0, 1.5, 1.5, 0.0)
    _, dark, inst, ids = render_defects([big, dot], p)
    assert ids == [1, 2]
    ring = dark[inst == 1]
    assert ring.max() > 0.5 and np.median(ring) < 0.4  # dark line near the outline, light inside
    assert dark[inst == 2].mean() > 0.5


@pytest.mark.parametrize("group", groups_for("defects"))
def test_every_group_draws_a_defects_frame(group):
    f = sample_domain_frame(group, np.random.default_rng(1), 96, task="defects")
    assert f.truth["domain"] == group and f.truth["task"] == "defects" and f.image.shape == (96, 96)
    if group == "over-focus":
        assert f.truth["defocus_nm"] > 0
    if group == "thickness":
        assert f.truth["foil_thickness_nm"] >= 170
