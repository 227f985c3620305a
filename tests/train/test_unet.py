"""The U-Net learns on a tiny batch, and its ONNX export has dynamic H/W and both outputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from copilot.train.data import make_dataset  # noqa: E402
from copilot.train.recipe import train_steps  # noqa: E402
from copilot.train.unet import TinyUNet  # noqa: E402


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is ~10x faster than two on a busy machine
    try:
        xs, ys, _, _ = make_dataset(4, seed=5, patch_px=64)
        net = TinyUNet(channels=(4, 8, 16))
        hist = train_steps(net, xs, ys, steps=30, batch=4, lr=1e-2, seed=0, warmup_steps=1)
    finally:
        torch.set_num_threads(threads)
    first, last = np.mean([h[1] for h in hist[:5]]), np.mean([h[1] for h in hist[-5:]])
    assert last < 0.8 * first


def test_forward_shapes():
    net = TinyUNet(channels=(4, 8, 16, 32)).eval()
    logits, emb = net(torch.zeros(2, 1, 48, 64))
    assert logits.shape == (2, 3, 48, 64) and emb.shape == (2, 32)
    assert net.multiple_of == 8 and net.embedding_dim == 32


def test_space_to_depth_runs_the_unet_on_pixel_blocks(tmp_path):
    """r = 2: the U-Net sees 2 × 2 blocks as 4 channels, the head's 3·4 outputs go back to full resolution; the
    export (SpaceToDepth by reshapes, DepthToSpace) gives torch's probabilities."""
    from copilot.train.export import export_onnx, ort_session

    torch.manual_seed(0)
    net = TinyUNet(channels=(4, 8, 16), space_to_depth=2).eval()
    assert net.multiple_of == 8 and net.head.out_channels == 12 and net.downs[0][0].in_channels == 4
    x = np.random.default_rng(3).standard_normal((1, 1, 40, 56)).astype(np.float32)
    with torch.no_grad():
        logits, emb = net(torch.from_numpy(x))
        blocks = net.downs[0](torch.nn.functional.pixel_unshuffle(torch.from_numpy(x), 2))
    assert logits.shape == (1, 3, 40, 56) and emb.shape == (1, 16) and blocks.shape[-2:] == (20, 28)
    probs, _ = ort_session(export_onnx(net, tmp_path / "model.onnx"), threads=1).run(None, {"image": x})
    assert np.allclose(probs, torch.softmax(logits, dim=1).numpy(), atol=1e-4)


def test_onnx_export_dynamic_hw(tmp_path):
    import onnx

    from copilot.train.export import export_onnx, ort_session

    net = TinyUNet(channels=(4, 8, 16, 32)).eval()
    path = export_onnx(net, tmp_path / "model.onnx")
    m = onnx.load(str(path))
    assert m.opset_import[0].version == 17
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1 and isinstance(dims[2], str) and isinstance(dims[3], str)
    sess = ort_session(path, threads=1)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "embedding"]
    for h, w in [(64, 64), (96, 136)]:
        x = np.random.default_rng(0).standard_normal((1, 1, h, w)).astype(np.float32)
        probs, emb = sess.run(None, {"image": x})
        assert probs.shape == (1, 3, h, w) and emb.shape == (1, 32)
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        with torch.no_grad():
            ref = torch.softmax(net(torch.from_numpy(x))[0], dim=1).numpy()
        assert np.allclose(probs, ref, atol=1e-4)


@pytest.mark.parametrize("space_to_depth", [1, 2])
def test_class_prior_correction_divides_out_the_training_weights(tmp_path, space_to_depth):
    """Weighted cross-entropy's softmax is ∝ w_c·p_c; the corrected model gives p_c (whatever the backend). A head on
    r × r pixel blocks gets each class's weight off all r² of its outputs: the same correction per pixel."""
    from copilot.train.export import correct_class_prior, export_onnx, ort_session

    torch.manual_seed(1)
    net = TinyUNet(channels=(4, 8, 16, 32), space_to_depth=space_to_depth).eval()
    raw = export_onnx(net, tmp_path / "raw" / "model.onnx")
    fixed = correct_class_prior(export_onnx(net, tmp_path / "fixed" / "model.onnx"), (1.0, 1.0, 2.5))
    x = np.random.default_rng(1).standard_normal((1, 1, 64, 64)).astype(np.float32)
    p_raw = ort_session(raw, threads=1).run(None, {"image": x})[0]
    p_fix = ort_session(fixed, threads=1).run(None, {"image": x})[0]
    expect = p_raw / np.array([1.0, 1.0, 2.5], np.float32)[None, :, None, None]
    expect /= expect.sum(axis=1, keepdims=True)
    assert np.allclose(p_fix, expect, atol=1e-5)
    assert (p_fix[:, 2] < p_raw[:, 2]).all()  # the up-weighted class loses exactly its prior
    with pytest.raises(ValueError, match="do not match"):
        correct_class_prior(fixed, (1.0, 2.0))


def test_fine_tuning_a_calibrated_parent_undoes_its_correction_once(tmp_path):
    """A parent shipped with −log w on its head starts training at the weighted loss's optimum (+log w back), so
    the export's correction is not applied twice; an uncalibrated parent is loaded as it is."""
    import json

    import torch

    from copilot.train.export import PRIOR_NOTE, correct_class_prior, export_onnx
    from copilot.train.recipe import _fused_from_onnx

    w = (1.0, 1.0, 2.5)
    net = TinyUNet(channels=(4, 8, 16, 32)).eval()
    for folder, note in (("raw", ""), ("calibrated", PRIOR_NOTE)):
        path = export_onnx(net, tmp_path / folder / "model.onnx")
        if note:
            correct_class_prior(path, w)
        (tmp_path / folder / "card.json").write_text(json.dumps({"name": "m", "version": "1", "description": note}))
    raw, lineage_raw = _fused_from_onnx(tmp_path / "raw" / "model.onnx", (4, 8, 16, 32), 3, w)
    cal, lineage_cal = _fused_from_onnx(tmp_path / "calibrated" / "model.onnx", (4, 8, 16, 32), 3, w)
    assert torch.allclose(cal.state_dict()["head.bias"], raw.state_dict()["head.bias"], atol=1e-6)
    assert "undone" in lineage_cal["method"] and "undone" not in lineage_raw["method"]


def test_fine_tuning_a_space_to_depth_parent_keeps_its_blocks(tmp_path):
    """The parent's block size comes from its graph; its calibrated head gets +log w back on every r² output."""
    import json

    from copilot.train.export import PRIOR_NOTE, correct_class_prior, export_onnx
    from copilot.train.recipe import _fused_from_onnx

    w = (1.0, 1.0, 2.5)
    net = TinyUNet(channels=(4, 8, 16), space_to_depth=2).eval()
    path = correct_class_prior(export_onnx(net, tmp_path / "model.onnx"), w)
    (tmp_path / "card.json").write_text(json.dumps({"name": "m", "version": "1", "description": PRIOR_NOTE}))
    tuned, _ = _fused_from_onnx(path, (4, 8, 16), 3, w)
    assert tuned.space_to_depth == 2
    assert torch.allclose(tuned.state_dict()["head.bias"], net.state_dict()["head.bias"], atol=1e-5)
