"""Simulated etched-polycrystal SEM frames: exact grain maps, known G, and the grains shift groups."""

import numpy as np
import pytest

from copilot.sim.domains import groups_for, sample_domain_frame
from copilot.sim.grain_frames import (GRAIN_GROUPS, MAX_GRAIN_PX, MIN_GRAIN_PX, clamp_g, random_grain_params,
                                      simulate_grains, smooth_field)


def test_frame_truth_is_consistent():
    p = random_grain_params(np.random.default_rng(0), 256, nm_per_px_range=(250.0, 250.0), grain_g=11.0)
    f = simulate_grains(p, 1)
    assert f.image.shape == f.instances.shape == (256, 256) and f.image.dtype == np.uint16
    assert f.truth["task"] == "grains" and f.truth["g"] == pytest.approx(11.0, abs=0.5)
    assert f.truth["n_grains"] == len(np.unique(f.instances)) > 30
    # same seed, same frame; another seed, another frame
    assert np.array_equal(simulate_grains(p, 1).image, f.image)
    assert not np.array_equal(simulate_grains(p, 2).image, f.image)


def test_etched_boundaries_are_darker_than_grains():
    p = random_grain_params(np.random.default_rng(3), 256, nm_per_px_range=(250.0, 250.0), etch_depth=0.4,
                            rim=0.0, dose=200.0, scratches=0)
    f = simulate_grains(p, 0)
    g = f.instances
    edge = np.zeros(g.shape, bool)
    edge[:-1] |= g[:-1] != g[1:]
    edge[:, :-1] |= g[:, :-1] != g[:, 1:]
    assert f.image[edge].mean() < f.image[~edge].mean() - 0.1 * f.image.std()


def test_grain_size_stays_resolvable_at_any_scale():
    for nm in (50.0, 250.0, 1200.0):
        for g in (5.0, 14.0):
            d_px = np.sqrt(1 / 10 ** ((clamp_g(g, nm) + 2.954) / 3.321928)) * 1e6 / nm
            assert MIN_GRAIN_PX - 1e-6 <= d_px <= MAX_GRAIN_PX + 1e-6


def test_every_group_draws_its_shift():
    assert groups_for("grains") == GRAIN_GROUPS and GRAIN_GROUPS[0] == "in-domain"
    rng = np.random.default_rng(0)
    frames = {grp: sample_domain_frame(grp, rng, 96, task="grains") for grp in GRAIN_GROUPS}
    assert all(f.truth["domain"] == grp and f.truth["task"] == "grains" for grp, f in frames.items())
    assert frames["detector"].truth["params"]["detector"] == "bse"
    assert frames["dose"].truth["params"]["dose"] <= 5.0
    assert not 125.0 <= frames["magnification"].nm_per_px <= 500.0
    with pytest.raises(KeyError, match="unknown domain group"):
        sample_domain_frame("contrast-inversion", rng, 64, task="grains")


def test_smooth_field_has_unit_spread_and_its_correlation_length():
    f = smooth_field((256, 256), 40.0, np.random.default_rng(0))
    assert f.shape == (256, 256) and f.std() == pytest.approx(1.0, abs=1e-3)
    near = np.corrcoef(f[:, :-4].ravel(), f[:, 4:].ravel())[0, 1]
    far = np.corrcoef(f[:, :-120].ravel(), f[:, 120:].ravel())[0, 1]
    assert near > 0.9 and abs(far) < 0.5
