"""The classical baseline (Otsu + distance-transform watershed) recovers count and size of synthetic discs."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from copilot.baseline import classical_particles, classical_phases, particles_are_bright

NM_PER_PX = 0.25


def discs_image(centres, radius_px, shape=(256, 256), bright=True, noise=4.0, seed=0):
    """Discs of ``radius_px`` on a flat support, Gaussian noise; returns (image, truth labels)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        truth[disk((r, c), radius_px, shape=shape)] = k
    signal = np.where(truth > 0, 100.0, 30.0) if bright else np.where(truth > 0, 30.0, 100.0)
    return signal + rng.normal(0, noise, shape), truth


GRID = [(r, c) for r in range(40, 240, 60) for c in range(40, 240, 60)]  # 16 separated discs


def ecd(labels):
    areas = np.bincount(labels.ravel())[1:]
    return 2 * np.sqrt(areas[areas > 0] / np.pi)


@pytest.mark.parametrize("bright", [True, False])
def test_separated_discs_count_and_size(bright):
    img, truth = discs_image(GRID, 12, bright=bright)
    labels = classical_particles(img, NM_PER_PX, bright_particles=bright)
    assert labels.dtype == np.int32
    assert labels.max() == 16
    d = ecd(labels)
    assert np.median(d) == pytest.approx(np.median(ecd(truth)), rel=0.03)
    assert np.median(d) * NM_PER_PX == pytest.approx(2 * 12 * NM_PER_PX, rel=0.05)  # ~6 nm


def test_auto_polarity_finds_dark_particles():
    img, _ = discs_image(GRID, 10, bright=False)
    assert not particles_are_bright(img)
    assert particles_are_bright(-img)
    assert classical_particles(img, NM_PER_PX, bright_particles=None).max() == 16
    # the wrong polarity gives the support as one big object, not 16 particles
    assert classical_particles(img, NM_PER_PX, bright_particles=True).max() != 16


def test_touching_pairs_are_split_by_the_watershed():
    pairs = [(60, 50), (60, 72), (170, 60), (170, 82), (110, 180), (132, 180)]  # 3 pairs, centres 22 px, r = 12
    img, truth = discs_image(pairs, 12, noise=2.0)
    labels = classical_particles(img, NM_PER_PX)
    assert labels.max() == 6
    assert np.median(ecd(labels)) == pytest.approx(np.median(ecd(truth)), rel=0.05)


def test_small_specks_are_removed_by_physical_area():
    img, _ = discs_image(GRID[:4], 10, noise=0.0)
    img[200, 200] = img[201, 201] = 100.0  # two one-pixel specks (0.0625 nm² each)
    assert classical_particles(img, NM_PER_PX, smooth_sigma_px=0).max() == 4
    assert classical_particles(img, None, smooth_sigma_px=0, min_area_px=1).max() == 6


def test_flat_or_empty_frames_give_no_particles():
    assert classical_particles(np.full((32, 32), 7.0), 0.5).max() == 0
    assert classical_phases(np.full((32, 32), 7.0)).max() == 0


def test_phases_two_and_three_classes_recover_area_fractions():
    rng = np.random.default_rng(1)
    truth = np.zeros((128, 128), np.uint8)
    truth[:, 80:] = 1
    truth[10:40, 10:40] = 2
    levels = np.array([20.0, 120.0, 220.0])
    img = levels[truth] + rng.normal(0, 8, truth.shape)
    three = classical_phases(img, 3)
    assert three.dtype == np.uint8
    for k in range(3):  # smoothing puts a 1-px rim of the dark/bright interface into the middle class
        assert np.mean(three == k) == pytest.approx(np.mean(truth == k), abs=0.02)
    assert np.mean(classical_phases(img, 3, smooth_sigma_px=0) == 1) == pytest.approx(np.mean(truth == 1), abs=0.005)
    two = classical_phases(np.where(truth == 2, 20.0, img), 2)  # dark "pores" in a bright matrix
    assert np.mean(two == 1) == pytest.approx(np.mean(truth == 1), abs=0.01)
    with pytest.raises(ValueError):
        classical_phases(img, 1)
