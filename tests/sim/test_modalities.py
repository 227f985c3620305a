"""BF-TEM beside HAADF-STEM: contrast, Fresnel fringes, support speckle, exact masks, scan artefacts."""

from dataclasses import replace

import numpy as np
import pytest

from copilot.sim import SimParams, SinteringRun, simulate_frame
from copilot.sim.artifacts import charging_streaks, line_shifts
from copilot.sim.stem import Particle, form_image, random_params, render_particles, support_texture

QUIET = dict(support_slow_contrast=0.0, scanline_noise=0.0, line_jitter_px=0.0, drift_shear=0.0, read_noise=0.0)


def test_bf_tem_particles_are_darker_than_the_support():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = random_params(rng, 256, modality="bf-tem", area_fraction=0.2, d50_nm=6.0, nm_per_px=0.2)
        f = simulate_frame(p, rng)
        fg = f.instances > 0
        assert fg.any() and f.truth["modality"] == "bf-tem"
        assert f.image[fg].mean() < f.image[~fg].mean()
    h = simulate_frame(random_params(np.random.default_rng(1), 256, area_fraction=0.2, d50_nm=6.0, nm_per_px=0.2), 1)
    assert h.truth["modality"] == "haadf"
    assert h.image[h.instances > 0].mean() > h.image[h.instances == 0].mean()


def test_bf_tem_masks_match_the_drawn_particles():
    p = SimParams(size_px=768, nm_per_px=0.15, d50_nm=8.0, touching_fraction=0.0, area_fraction=0.2,
                  modality="bf-tem", background=0.8, particle_signal=0.5, bf_fringe=0.5, particle_contrast_spread=0.3,
                  **QUIET)
    f = simulate_frame(p, 3)
    inner = [q for q in f.truth["particles"] if not q["touches_edge"]]
    assert len(inner) >= 10
    for q in inner:
        assert q["area_px"] * f.nm_per_px ** 2 == pytest.approx(q["area_nm2"], rel=0.06)


def test_fresnel_fringe_is_bright_outside_the_edge_under_focus():
    p = SimParams(size_px=128, nm_per_px=0.1, modality="bf-tem", background=0.75, particle_signal=0.6,
                  bf_fringe=0.6, fringe_nm=0.8, support_contrast=0.0, support_slow_contrast=0.0)
    sig, inst = render_particles([Particle(6.4, 6.4, 3.0, 3.0, 0.0)], (128, 128), 0.1, p)
    sup = support_texture((128, 128), 0.1, p, np.random.default_rng(0))
    img = form_image(sig, sup, p)
    row, lab = img[64], inst[64]
    edge = int(np.argmax(lab > 0))  # first particle pixel from the left
    assert row[edge - 3:edge].max() > 0.75 + 0.03  # bright fringe just outside
    assert row[edge + 4] < 0.75 * (1 - 0.4)  # dark inside
    over = form_image(sig, sup, replace(p, bf_fringe=-0.6))
    assert over[64, edge - 3:edge].min() < 0.75 - 0.03  # over-focus: dark fringe outside


def test_bf_tem_support_speckle_is_band_passed():
    p = SimParams(size_px=256, nm_per_px=0.1, modality="bf-tem", background=0.8, support_contrast=0.05,
                  support_grain_nm=0.5, support_slow_contrast=0.0)
    s = support_texture((256, 256), 0.1, p, np.random.default_rng(0))
    assert s.std() == pytest.approx(0.05, rel=0.05)
    # band-pass: no power at the largest scales (block means of 32 px are nearly flat)
    blocks = s.reshape(8, 32, 8, 32).mean(axis=(1, 3))
    assert blocks.std() < 0.2 * s.std()


def test_random_params_modalities():
    rng = np.random.default_rng(0)
    seen = {random_params(rng, 32, modality="any").modality for _ in range(20)}
    assert seen == {"haadf", "bf-tem"}
    b = random_params(rng, 32, modality="bf-tem")
    assert b.line_jitter_px == b.scanline_noise == b.drift_shear == 0.0  # a camera, not a scan
    with pytest.raises(ValueError):
        random_params(rng, 32, modality="sem")
    # haadf draws are unchanged by the modality feature (same stream as before)
    a1 = random_params(np.random.default_rng(5), 32)
    a2 = random_params(np.random.default_rng(5), 32, modality="haadf")
    assert a1 == a2


def test_sintering_run_in_bf_tem():
    p = SimParams(size_px=128, nm_per_px=0.25, touching_fraction=0.0, area_fraction=0.15, modality="bf-tem",
                  background=0.8, particle_signal=0.5, particle_contrast_spread=0.2)
    tf = next(iter(SinteringRun(seed=1, params=p, interval_s=10.0, duration_s=20.0).frames(1)))
    f = tf.frame
    assert f.image[f.instances > 0].mean() < f.image[f.instances == 0].mean()


def test_scan_wobble_moves_masks_with_the_image():
    p = SimParams(size_px=256, nm_per_px=0.2, touching_fraction=0.0, area_fraction=0.2, scan_wobble_px=3.0,
                  scan_wobble_period_px=20.0, **QUIET)
    f = simulate_frame(p, 4)
    still = simulate_frame(replace(p, scan_wobble_px=0.0), 4)
    assert not np.array_equal(f.instances, still.instances)
    # areas survive (rows move whole), except at the frame edge
    for q in f.truth["particles"]:
        if not q["touches_edge"] and q["area_px"] > 200:
            assert q["area_px"] * p.nm_per_px ** 2 == pytest.approx(q["area_nm2"], rel=0.08)
    assert line_shifts(10, 0.0, 0.0, 40.0, np.random.default_rng(0)) is None


def test_charging_streaks_trail_bright_features_along_the_scan():
    img = np.zeros((64, 128), np.float32)
    img[20:30, 20:30] = 1.0
    out = charging_streaks(img, 0.3, 20.0, np.random.default_rng(0))
    right, left = out[22:28, 32:50].mean(), out[22:28, 0:18].mean()
    assert right > left + 0.02  # tail after the feature, in the scan direction
    f0 = simulate_frame(SimParams(size_px=128, nm_per_px=0.3, **QUIET), 2)
    f1 = simulate_frame(SimParams(size_px=128, nm_per_px=0.3, charging=0.3, **QUIET), 2)
    assert np.array_equal(f0.instances, f1.instances) and not np.array_equal(f0.image, f1.image)
