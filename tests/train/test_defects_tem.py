"""The defects-tem recipe: its data carry soft per-class targets of the simulator's exact masks, and a few optimizer
steps on them reduce the loss; the recipe runs end to end (tiny) and writes a valid card with per-group metrics."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from copilot.train import defects_tem  # noqa: E402
from copilot.train.recipe import train_steps  # noqa: E402
from copilot.train.unet import TinyUNet  # noqa: E402


def test_data_soft_targets_sum_to_one_and_hold_both_classes():
    xs, ys, cls = defects_tem.make_defect_dataset(6, seed=3, patch_px=64)
    assert xs.shape == (6, 1, 64, 64) and ys.shape == (6, 3, 64, 64) and cls.shape == (6, 64, 64)
    total = ys.astype(int).sum(axis=1)
    assert np.all(np.abs(total - 255) <= 2)
    assert (cls == 1).any() and (cls == 2).any()


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xs, ys, _ = defects_tem.make_defect_dataset(4, seed=5, patch_px=64)
        net = TinyUNet(channels=(4, 8, 16))
        hist = train_steps(net, xs, ys, steps=30, batch=4, lr=1e-2, seed=0, warmup_steps=1,
                           class_weights=defects_tem.CLASS_WEIGHTS)
    finally:
        torch.set_num_threads(threads)
    first, last = np.mean([h[1] for h in hist[:5]]), np.mean([h[1] for h in hist[-5:]])
    assert last < 0.8 * first


def test_recipe_end_to_end_writes_a_defects_card(tmp_path, monkeypatch):
    from copilot.inference.card import load_card
    monkeypatch.setattr("copilot.train.export.ort_latency", lambda *a, **k: 0.0)
    monkeypatch.setattr(defects_tem, "PATCH_PX", 64)
    m = defects_tem.main(minutes=1, n_train=8, n_heldout=2, out_dir=tmp_path, steps=2, heldout_per_group=1)
    card, _ = load_card(tmp_path)
    assert card.task == "defects" and card.class_names == ["background", "cavity", "loop"]
    assert {"heldout:in-domain", "heldout:over-focus", "heldout:magnification"} <= set(card.metrics)
    assert "cavity_3nm_f1" in card.metrics["heldout:in-domain"] and "pixel_iou_cavity" in m

    # the reliability recipe on that model: table, ONNX regressor, and the daemon's assessor predicting per class
    pytest.importorskip("skl2onnx")
    from copilot.train import defects_reliability as rel

    rows, _ = rel.collect(str(tmp_path), per_group=1, seed=0, size_px=256, log=None)
    assert len(rows) == 7 and {"cavity_f1", "loop_recall", "cavity_n_objects", "shift_distance"} <= set(rows[0])
    rel.fit_and_write(str(tmp_path), rows * 3, "test")
    card, _ = load_card(tmp_path)
    assert card.reliability_regressor == "reliability.onnx"
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.inference.ort_backend import OrtBackend
    from copilot.reliability.score import Assessor
    from copilot.sim.domains import sample_domain_frame

    sim = sample_domain_frame("in-domain", np.random.default_rng(5), 256, task="defects")
    backend = OrtBackend(card, tmp_path, threads=1)
    r = Assessor(card, tmp_path).frame(measure(backend.segment(Frame(sim.image, sim.nm_per_px, "s", "1", "sim"))))
    assert r.predicted_f1 is not None and set(r.predicted_per_class) == set(rel.TARGETS[3:])
