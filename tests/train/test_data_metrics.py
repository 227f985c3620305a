"""Targets, instance extraction, metrics and the training data path: no torch needed."""

import numpy as np
import pytest

from copilot.inference.card import Normalization
from copilot.inference.preprocess import normalize as daemon_normalize
from copilot.inference.preprocess import resample
from copilot.sim.stem import random_params
from copilot.train.data import (Augment, class_targets, make_dataset, make_phase_dataset, normalize, sample_patch,
                                sample_phase_patch, to_working_scale)
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


def test_training_inputs_are_what_the_daemon_feeds_the_network():
    """Train on exactly what the backend will see: the daemon's resample + normalize, bit for bit."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60000, (300, 300)).astype(np.uint16)
    for nm_per_px in (0.1, 0.2, 0.37, 0.5):  # integer factors and not
        w, _ = to_working_scale(img, None, nm_per_px, 0.5)
        d, _ = resample(img, 0.5 / nm_per_px)
        assert w.shape == d.shape and np.array_equal(w, d)
        assert np.array_equal(normalize(w), daemon_normalize(d, Normalization()))


def test_working_scale_resampling_and_patch():
    img = np.ones((100, 80), np.uint16)
    lab = np.zeros((100, 80), np.int32)
    lab[:50] = 3
    w, wl = to_working_scale(img, lab, 0.1, 0.5)
    assert w.shape == wl.shape == (20, 16)
    assert set(np.unique(wl)) == {0, 3}
    x, inst, frame, nmpp = sample_patch(np.random.default_rng(0), patch_px=64)
    assert x.shape == inst.shape == (64, 64) and 0.1 <= nmpp <= 0.5


def test_particle_dataset_mixes_modalities_and_augments():
    xs, ys, inst, truths = make_dataset(10, seed=1, patch_px=48, modality="any",
                                        augment=Augment(p_low_dose=1.0, p_blur=1.0, low_dose=(2.0, 3.0),
                                                        blur_nm=(1.0, 1.1), max_aspect=(2.0, 2.2)))
    assert xs.shape == (10, 1, 48, 48) and ys.shape == inst.shape == (10, 48, 48)
    assert {t["modality"] for t in truths} == {"haadf", "bf-tem"}
    assert all(2.0 <= t["params"]["dose"] <= 3.0 and 1.0 <= t["params"]["probe_blur_nm"] <= 1.1 for t in truths)
    assert all(2.0 <= t["params"]["max_aspect"] <= 2.2 for t in truths)
    small = Augment(p_small=1.0, small_d50_nm=(2.0, 2.5), small_min_nm=1.2)
    fine, mid, coarse = (random_params(np.random.default_rng(0), 48, (nm, nm)) for nm in (0.2, 0.6, 0.9))
    drawn = small.params(fine, np.random.default_rng(1))
    assert 2.0 <= drawn.d50_nm <= 2.5 and drawn.min_diameter_nm == 1.2
    drawn = small.params(mid, np.random.default_rng(1))  # 3 px of a 0.6 nm/px frame: 1.8 nm
    assert drawn.min_diameter_nm == pytest.approx(1.8) and drawn.d50_nm >= 1.25 * 1.8
    assert small.params(coarse, np.random.default_rng(1)) == coarse  # 3 px of 0.9 nm/px: 2.7 nm, above the 2.5 nm clip
    flat = Augment(p_flat=1.0, flat_powers=(0.0, 0.2))
    assert flat.params(fine, np.random.default_rng(1)).profile_powers == (0.0, 0.2)
    assert Augment().params(fine, np.random.default_rng(1)).profile_powers == (0.5, 0.5)
    inv = Augment(p_invert=1.0).image(np.array([[0, 10], [20, 30]], np.uint16), np.random.default_rng(0))
    assert inv.tolist() == [[30, 20], [10, 0]]


def test_phase_patches_and_dataset():
    x, cls, frame, nmpp = sample_phase_patch(np.random.default_rng(0), patch_px=64)
    assert x.shape == cls.shape == (64, 64) and 0.5 <= nmpp <= 2.0
    assert frame.truth["task"] == "phases" and set(np.unique(cls)) <= {0, 1, 2}
    xs, ys, truths = make_phase_dataset(6, seed=2, patch_px=48)
    assert xs.shape == (6, 1, 48, 48) and ys.dtype == np.uint8 and ys.max() <= 2
    assert {t["structure"] for t in truths} <= {"two-phase", "porous"}
    assert all(t["detector"] == "se" for t in truths)


def test_phase_patch_metrics_perfect_and_biased():
    from copilot.train.phases_sem import phase_patch_metrics

    t = np.zeros((20, 20), np.uint8)
    t[:5] = 1
    t[15:] = 2
    probs = np.eye(3, dtype=np.float32)[t].transpose(2, 0, 1)
    m = phase_patch_metrics([probs], [t])
    assert m["pixel_miou"] == pytest.approx(1.0) and m["fraction_error_pp_max_class_mean"] == 0.0
    shifted = np.eye(3, dtype=np.float32)[np.roll(t, 1, axis=0)].transpose(2, 0, 1)
    shifted[:, 0] = probs[:, 0]
    m2 = phase_patch_metrics([shifted], [t])
    assert m2["pixel_miou"] < 1.0


def test_area_average_is_exact_coverage_up_and_down():
    from copilot.train.data import area_average

    m = np.zeros((10, 10), np.float32)
    m[:, :3] = 1  # a straight edge at 3 native px
    down = area_average(m, (4, 4))  # 2.5 native px per pixel: the edge pixel is 20 % covered
    assert down[:, 0] == pytest.approx(1.0) and down[:, 1] == pytest.approx(0.2) and down[:, 2:].max() == 0
    up = area_average(m, (20, 20))
    assert up.sum() * 0.25 == pytest.approx(m.sum())


def test_soft_particle_targets_put_the_half_coverage_line_on_the_true_edge():
    from copilot.train.data import soft_particle_targets

    yy, xx = np.mgrid[:400, :400]
    r_native = 93.0  # 9.3 working px at 10 native px per working px
    inst = ((yy - 200.3) ** 2 + (xx - 199.6) ** 2 < r_native**2).astype(np.int32)
    soft = soft_particle_targets(inst, (40, 40))
    assert soft.sum(axis=0) == pytest.approx(np.ones((40, 40)), abs=1e-5)
    fg = soft[1] + soft[2]
    assert fg.sum() == pytest.approx(np.pi * 9.3**2, rel=0.01)  # area in working px², sub-pixel
    assert soft[2].max() > 0 and set(np.unique(soft[1] > 0)) == {False, True}


def test_soft_training_step_runs():
    torch = pytest.importorskip("torch")
    from copilot.train.recipe import train_steps
    from copilot.train.unet import TinyUNet

    xs, ys, _, _ = make_dataset(4, seed=2, patch_px=32, soft=True)
    assert ys.shape == (4, 3, 32, 32) and ys.dtype == np.uint8
    torch.manual_seed(0)
    hist = train_steps(TinyUNet(3, (4, 8)), xs, ys, steps=2, batch=2)
    assert len(hist) == 2 and all(np.isfinite(h[1]) for h in hist)
