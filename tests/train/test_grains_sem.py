"""The grains-sem recipe: soft boundary targets, patch metrics, a few real optimizer steps, and the held-out
metrics through the daemon's path."""

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.train.data import working_shape
from copilot.train.grains_metrics import boundary_match, f1_from, summarize
from copilot.train.grains_sem import (AUGMENT, CLASS_NAMES, grain_patch_metrics, make_grain_dataset,
                                      soft_boundary_targets)
from copilot.train.heldout import evaluate_backend


def test_soft_targets_cover_every_boundary_at_least_two_working_px_wide():
    grains = np.repeat([[1] * 40 + [2] * 40], 80, axis=0)
    # native 125 nm/px, working 250: a 100 nm groove is widened to 2 working px (4 native px)
    t = soft_boundary_targets(grains, 125.0, 100.0, working_shape(grains.shape, 2.0))
    assert t.shape == (2, 40, 40) and np.allclose(t.sum(axis=0), 1.0)
    assert t[1, :, 19:21].min() == pytest.approx(1.0) and t[1, :, :18].max() == 0.0
    assert t[1].sum(axis=1) == pytest.approx(np.full(40, 2.0), abs=0.3)


def test_dataset_and_perfect_patch_metrics():
    xs, ys, truths = make_grain_dataset(3, 0, patch_px=96, augment=AUGMENT)
    assert xs.shape == (3, 1, 96, 96) and ys.shape == (3, 2, 96, 96) and ys.dtype == np.uint8
    assert 0.02 < ys[:, 1].mean() / 255 < 0.5 and all(t["task"] == "grains" for t in truths)
    _, hy, _ = make_grain_dataset(2, 1, patch_px=96, soft=False)
    perfect = [np.stack([hy_i == 0, hy_i == 1]).astype(np.float32) for hy_i in hy]
    m = grain_patch_metrics(perfect, list(hy))
    assert m["boundary_iou_patch"] == 1.0 and m["boundary_f1_patch"] > 0.9
    empty = [np.stack([np.ones_like(p[0]), np.zeros_like(p[0])]) for p in perfect]
    assert grain_patch_metrics(empty, list(hy))["boundary_f1_patch"] == 0.0


def test_boundary_f1_tolerates_a_shift_within_the_tolerance_only():
    lab = np.repeat([[1] * 30 + [2] * 30], 60, axis=0)
    pred = np.zeros((60, 60), bool)
    pred[:, 31] = True
    assert f1_from(np.array(boundary_match(pred, lab)))[2] > 0.97  # (thinning shortens the true line's ends)
    pred[:] = False
    pred[:, 36] = True
    assert f1_from(np.array(boundary_match(pred, lab)))[2] == 0.0


def test_summary_pools_frames():
    rows = [{"tp_pred": 9, "n_pred": 10, "tp_true": 8, "n_true": 10, "dg_planimetric": 0.1, "dg_intercept": -0.2,
             "ci_covers": 1.0},
            {"tp_pred": 10, "n_pred": 10, "tp_true": 10, "n_true": 10, "dg_planimetric": -0.4,
             "dg_intercept": np.nan, "ci_covers": 0.0}]
    m = summarize(rows)
    assert m["boundary_precision"] == pytest.approx(0.95) and m["boundary_recall"] == pytest.approx(0.9)
    assert m["g_planimetric_abs_error_mean"] == pytest.approx(0.25) and m["g_within_0.25"] == 0.5
    assert m["g_within_0.5"] == 1.0 and m["g_intercept_abs_error_mean"] == pytest.approx(0.2)


def test_a_few_steps_export_and_run_the_daemon_path(tmp_path):
    torch = pytest.importorskip("torch")
    from copilot.train.export import export_onnx
    from copilot.train.recipe import loss_fn, train_steps
    from copilot.train.unet import TinyUNet

    torch.manual_seed(0)
    xs, ys, _ = make_grain_dataset(4, 0, patch_px=64, augment=AUGMENT)
    net = TinyUNet(n_classes=2, channels=(4, 8, 16, 32))
    x, y = torch.from_numpy(xs), torch.from_numpy(ys).float() / 255
    w = torch.tensor([1.0, 1.5])
    before = loss_fn(net(x)[0], y, w).item()
    train_steps(net, xs, ys, steps=3, batch=4, warmup_steps=1, class_weights=(1.0, 1.5))
    assert loss_fn(net(x)[0], y, w).item() < before
    folder = tmp_path / "grains-test"
    folder.mkdir()
    onnx_path = export_onnx(net, folder / "model.onnx")
    from copilot.inference.card import ModelCard, sha256_of

    card = ModelCard(name="grains-test", version="0", task="grains", class_names=list(CLASS_NAMES),
                     working_nm_per_px=250.0, trained_nm_per_px_range=(125.0, 500.0),
                     tiling={"tile_px": 128, "overlap_px": 16, "multiple_of": 8},
                     outputs={"embedding_dim": net.embedding_dim}, model_sha256=sha256_of(onnx_path),
                     training_command="tests")
    (folder / "card.json").write_text(card.model_dump_json())
    c, f = load_card(folder)
    res = evaluate_backend(OrtBackend(c, f, threads=1), "grains", per_group=1, size_px=128,
                           groups=("in-domain", "detector"), log=None)
    assert list(res) == ["in-domain", "detector"]
    for m in res.values():
        assert 0.0 <= m["boundary_f1"] <= 1.0 and m["frames"] == 1.0 and "g_planimetric_abs_error_mean" in m


def test_frame_targets_score_boundaries_and_cap_the_g_error():
    from copilot.train.grains_reliability import G_ERROR_CAP, frame_targets

    t = frame_targets({"tp_pred": 8, "n_pred": 10, "tp_true": 6, "n_true": 10, "dg_planimetric": -0.3})
    assert t["precision"] == 0.8 and t["recall"] == 0.6 and t["f1"] == pytest.approx(2 * 0.48 / 1.4)
    assert t["g_abs_error"] == pytest.approx(0.3)
    assert frame_targets({"tp_pred": 0, "n_pred": 0, "tp_true": 0, "n_true": 50,
                          "dg_planimetric": np.nan}) == {"f1": 0.0, "precision": 0.0, "recall": 0.0,
                                                         "g_abs_error": G_ERROR_CAP}
    assert frame_targets({"tp_pred": 0, "n_pred": 0, "tp_true": 0, "n_true": 0, "dg_planimetric": 9.0})["f1"] == 1.0


def test_grains_regressor_recipe_and_the_verdict_on_a_predicted_g_error(tmp_path):
    """The recipe on the shipped model (a copy): table, ONNX regressor; the assessor predicts the G error (≥ 0,
    not clipped to 1) and the verdict warns when it is beyond the threshold."""
    pytest.importorskip("skl2onnx")
    import shutil
    from pathlib import Path

    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.reliability.score import Assessor
    from copilot.reliability.settings import VerdictThresholds
    from copilot.reliability.task_checks import grain_reasons
    from copilot.sim.domains import sample_domain_frame
    from copilot.train import grains_reliability as rel

    shipped = Path(__file__).resolve().parents[2] / "engines" / "grains-sem"
    folder = tmp_path / "grains-sem"
    shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("reliability.*"))
    rows, _ = rel.collect(str(folder), per_group=1, seed=0, size_px=160, log=None)
    assert len(rows) >= 6 and set(rel.TARGETS) <= set(rows[0]) and "shift_distance" in rows[0]
    for i, r in enumerate(rows):  # spread the G error so the trees have something to fit
        r["g_abs_error"] = 1.5 * (i % 2)
    rel.fit_and_write(str(folder), rows * 3, "test")
    card, _ = load_card(folder)
    assert card.reliability_regressor == "reliability.onnx"
    sim = sample_domain_frame("in-domain", np.random.default_rng(5), 160, task="grains")
    fm = measure(OrtBackend(card, folder, threads=1).segment(Frame(sim.image, sim.nm_per_px, "s", "1", "sim")))
    r = Assessor(card, folder).frame(fm)
    assert r.predicted_f1 is not None and set(r.predicted_per_class) == {"g_abs_error"}
    assert r.predicted_per_class["g_abs_error"] >= 0.0
    t = VerdictThresholds()
    assert fm.summary.grains.count > 0
    assert any("predicted G error ±1.2" in why for _, why in grain_reasons(fm, t, {"g_abs_error": 1.2}))
    assert not any("predicted G error" in why for _, why in grain_reasons(fm, t, {"g_abs_error": 0.2}))
