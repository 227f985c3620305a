from dataclasses import replace

import numpy as np
import pytest

from copilot.sim import SimParams, simulate_frame
from copilot.sim.stem import render_particles


def test_instance_areas_match_drawn_particles():
    p = SimParams(size_px=640, nm_per_px=0.15, d50_nm=8.0, touching_fraction=0.0, area_fraction=0.2)
    f = simulate_frame(p, 0)
    inner = [q for q in f.truth["particles"] if not q["touches_edge"]]
    assert len(inner) >= 10
    for q in inner:
        area_nm2 = q["area_px"] * f.nm_per_px**2
        assert area_nm2 == pytest.approx(q["area_nm2"], rel=0.06), q
    # labels are exactly the truth ids
    assert set(np.unique(f.instances)) - {0} == {q["instance"] for q in f.truth["particles"]}


def test_touching_pairs_are_separate_touching_instances():
    p = SimParams(size_px=300, nm_per_px=0.2, touching_fraction=0.6, area_fraction=0.2, line_jitter_px=0.0)
    f = simulate_frame(p, 1)
    pairs = [q for q in f.truth["particles"] if q["pair"] >= 0]
    assert pairs
    lab = f.instances
    # some horizontally adjacent pixels carry two different particle labels
    a, b = lab[:, :-1], lab[:, 1:]
    assert np.any((a > 0) & (b > 0) & (a != b))


def test_size_distribution_is_lognormal_around_d50():
    p = SimParams(size_px=1024, nm_per_px=0.25, d50_nm=6.0, sigma_log=0.3, touching_fraction=0.0)
    f = simulate_frame(p, 2)
    d = np.array([q["ecd_nm"] for q in f.truth["particles"]])
    assert len(d) > 100
    assert np.median(d) == pytest.approx(6.0, rel=0.1)
    assert np.std(np.log(d)) == pytest.approx(0.3, rel=0.25)


def test_deterministic_and_shapes():
    p = SimParams(size_px=(96, 128), nm_per_px=0.3)
    f1, f2 = simulate_frame(p, 7), simulate_frame(p, 7)
    assert f1.image.shape == (96, 128) and f1.image.dtype == np.uint16 and f1.instances.dtype == np.int32
    assert np.array_equal(f1.image, f2.image) and np.array_equal(f1.instances, f2.instances)


def test_dose_controls_shot_noise():
    base = SimParams(size_px=256, nm_per_px=0.3, area_fraction=0.0, support_contrast=0.0, support_slow_contrast=0.0,
                     scanline_noise=0.0, read_noise=0.0, background=0.2)
    rel = []
    for dose in (10.0, 1000.0):
        img = simulate_frame(replace(base, dose=dose), 3).image.astype(float) - base.detector_offset
        rel.append(img.std() / img.mean())
    assert rel[0] == pytest.approx(1 / np.sqrt(10 * 0.2), rel=0.15)
    assert rel[1] < rel[0] / 5


def test_drift_shear_keeps_areas():
    p = SimParams(size_px=256, nm_per_px=0.2, drift_shear=0.05, line_jitter_px=0.0, touching_fraction=0.0)
    f = simulate_frame(p, 4)
    for q in f.truth["particles"]:
        if not q["touches_edge"] and q["area_px"] > 150:
            assert q["area_px"] * p.nm_per_px**2 == pytest.approx(q["area_nm2"], rel=0.08)


def test_render_probe_blur_is_smooth_signal():
    from copilot.sim.stem import Particle

    p = SimParams(size_px=64, nm_per_px=0.2)
    sig, inst = render_particles([Particle(6.4, 6.4, 3.0, 3.0, 0.0)], (64, 64), 0.2, p)
    assert inst[32, 32] == 1 and inst[0, 0] == 0
    assert sig[32, 32] > sig[32, 45] > 0


def test_flat_topped_particles_keep_their_contrast_to_the_rim():
    """profile_powers: an ellipsoid's contrast thins towards its rim, a flat-topped particle's does not; the outline
    (instances) is the same ellipse either way and nothing is drawn outside it (0⁰ must not fill the box)."""
    from copilot.sim.stem import Particle

    p = SimParams(size_px=96, nm_per_px=0.1, thickness_scale_nm=4.0)
    part = [Particle(4.8, 4.8, 3.0, 3.0, 0.0)]
    sphere, inst_s = render_particles(part, (96, 96), 0.1, p)
    flat, inst_f = render_particles(part, (96, 96), 0.1, p, powers=np.array([0.0], np.float32))
    np.testing.assert_array_equal(inst_s, inst_f)
    rim = inst_s[47, 47 + 28]  # 2.8 nm from the centre of a 3 nm radius: ρ = 0.93
    assert rim == 1
    assert flat[47, 75] == pytest.approx(flat[47, 47]) and sphere[47, 75] < 0.75 * sphere[47, 47]
    assert np.all(flat[inst_f == 0] == 0) and np.all(sphere[inst_s == 0] == 0)


def test_profile_powers_are_drawn_per_particle_and_default_frames_unchanged():
    base = SimParams(size_px=128, nm_per_px=0.25, area_fraction=0.2, line_jitter_px=0.0, scan_wobble_px=0.0)
    a, b = simulate_frame(base, 5), simulate_frame(replace(base, profile_powers=(0.5, 0.5)), 5)
    np.testing.assert_array_equal(a.image, b.image)
    flat = simulate_frame(replace(base, profile_powers=(0.0, 0.1)), 5)
    np.testing.assert_array_equal(flat.instances, a.instances)  # same particles, other contrast profile
    inside = a.instances > 0
    assert flat.image[inside].astype(float).mean() > a.image[inside].astype(float).mean()
