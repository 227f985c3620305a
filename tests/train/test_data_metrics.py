"""Targets, instance extraction and metrics: no torch needed."""

import numpy as np
import pytest

from copilot.train.data import class_targets, normalize, sample_patch, to_working_scale
from copilot.train.metrics import evaluate, instances_from_probabilities, match_instances


def _two_touching_disks():
    yy, xx = np.mgrid[:40, :60]
    inst = np.zeros((40, 60), np.int32)
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 < 10**2] = 1
    inst[((yy - 20) ** 2 + (xx - 38) ** 2 < 9**2) & (inst == 0)] = 2
    return inst


def test_boundary_class_separates_touching_particles():
    inst = _two_touching_disks()
    t = class_targets(inst)
    assert set(np.unique(t)) == {0, 1, 2}
    assert np.all(t[inst == 0] == 0)
    # the particle class alone has two connected components
    from scipy import ndimage as ndi

    assert ndi.label(t == 1)[1] == 2


def test_perfect_probabilities_give_perfect_metrics():
    inst = _two_touching_disks()
    t = class_targets(inst)
    probs = np.eye(3, dtype=np.float32)[t].transpose(2, 0, 1)
    pred = instances_from_probabilities(probs)
    assert match_instances(pred, inst) == (2, 2, 2)
    m = evaluate([probs], [t], [inst], 0.5)
    assert m["pixel_miou"] == pytest.approx(1.0)
    assert m["object_f1_iou50"] == pytest.approx(1.0)


def test_normalize_matches_card_convention():
    x = np.arange(10000, dtype=np.uint16).reshape(100, 100)
    n = normalize(x)
    assert n.min() == pytest.approx(-2.0) and n.max() == pytest.approx(2.0)


def test_working_scale_resampling_and_patch():
    img = np.ones((100, 80), np.uint16)
    lab = np.zeros((100, 80), np.int32)
    lab[:50] = 3
    w, wl = to_working_scale(img, lab, 0.1, 0.5)
    assert w.shape == wl.shape == (20, 16)
    assert set(np.unique(wl)) == {0, 3}
    x, inst, frame, nmpp = sample_patch(np.random.default_rng(0), patch_px=64)
    assert x.shape == inst.shape == (64, 64) and 0.1 <= nmpp <= 0.5
