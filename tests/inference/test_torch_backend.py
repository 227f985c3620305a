"""The torch backend: safetensors weights converted from the ONNX initializers, loaded without pickle, segmenting like
ONNX Runtime."""

import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("onnx")

from copilot.frame import Frame  # noqa: E402
from copilot.inference.card import load_card  # noqa: E402
from copilot.inference.ort_backend import OrtBackend  # noqa: E402
from copilot.inference.torch_backend import TorchBackend, load_safetensors_state  # noqa: E402
from copilot.inference.verify import validation_frames, verify_backend  # noqa: E402
from copilot.inference.weights import convert, fused_conv_names, onnx_to_tensors, read_metadata  # noqa: E402


@pytest.fixture(scope="module")
def weights(unet_model_dir, tmp_path_factory):
    return convert(unet_model_dir / "model.onnx", tmp_path_factory.mktemp("w") / "model.safetensors")


def test_converter_names_every_fused_convolution(unet_model_dir, weights):
    tensors, meta = onnx_to_tensors(unet_model_dir / "model.onnx")
    assert meta["channels"] == "4,8,16" and meta["n_classes"] == "3" and meta["in_channels"] == "1"
    assert sorted(tensors) == sorted(f"{n}.{p}" for n in fused_conv_names((4, 8, 16)) for p in ("weight", "bias"))
    card, _ = load_card(unet_model_dir)
    assert read_metadata(weights)["onnx_sha256"] == card.model_sha256


def test_safetensors_file_is_json_header_plus_raw_buffers(weights):
    raw = weights.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "copilot.tinyunet-fused/1"
    assert b"\x80\x04" not in raw[:8 + n] and not raw.startswith(b"PK")  # no pickle protocol, not a torch zip


def test_loading_weights_never_unpickles(unet_model_dir, weights, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading weights")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    state, meta = load_safetensors_state(weights)
    assert "head.weight" in state
    card, folder = load_card(unet_model_dir)
    TorchBackend(card, folder, weights=weights)


def test_space_to_depth_network_converts_and_matches_onnxruntime(s2d_model_dir, tmp_path):
    """A network on 2 × 2 pixel blocks: the converter reads the block size off the graph, and the per-class counts
    off the r²-wide first and last convolutions; torch then segments like ONNX Runtime."""
    tensors, meta = onnx_to_tensors(s2d_model_dir / "model.onnx")
    assert meta["space_to_depth"] == "2" and meta["n_classes"] == "3" and meta["in_channels"] == "1"
    assert tensors["head.weight"].shape[0] == 12 and tensors["downs.0.0.weight"].shape[1] == 4
    card, folder = load_card(s2d_model_dir)
    x = np.random.default_rng(2).standard_normal((1, 1, 48, 80)).astype(np.float32)
    p_ref, e_ref = OrtBackend(card, folder).run_batch(x)
    p, e = TorchBackend(card, folder, state_dir=tmp_path).run_batch(x)
    assert p.shape == (1, 3, 48, 80)
    np.testing.assert_allclose(p, p_ref, atol=1e-4)
    np.testing.assert_allclose(e, e_ref, atol=1e-4)


@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_matches_onnxruntime_on_a_small_input(unet_model_dir, weights, channels_last):
    card, folder = load_card(unet_model_dir)
    x = np.random.default_rng(1).standard_normal((2, 1, 48, 80)).astype(np.float32)
    p_ref, e_ref = OrtBackend(card, folder).run_batch(x)
    p, e = TorchBackend(card, folder, weights=weights, channels_last=channels_last).run_batch(x)
    assert p.shape == p_ref.shape and p.dtype == np.float32
    np.testing.assert_allclose(p, p_ref, atol=1e-4)
    np.testing.assert_allclose(e, e_ref, atol=1e-4)


def test_torch_backend_passes_verification_and_converts_weights_into_state_dir(unet_model_dir, tmp_path):
    card, folder = load_card(unet_model_dir)
    backend = TorchBackend(card, folder, state_dir=tmp_path)  # no model.safetensors shipped: converted once
    assert backend.weights.is_relative_to(tmp_path / "engines" / "tiny-unet") and backend.name == "torch-cpu"
    frames, src = validation_frames(card, n_tiles=3, n_large=1)
    v = verify_backend(backend, OrtBackend(card, folder), frames, frames_from=src)
    assert v.accepted and v.miou > 0.99, v.message


def test_bfloat16_runs_and_mostly_agrees(unet_model_dir, weights):
    card, folder = load_card(unet_model_dir)
    frame = Frame(validation_frames(card, n_tiles=1, n_large=0)[0][0].pixels, nm_per_px=0.5, stream="s",
                  frame_id="f", origin="m")
    a = OrtBackend(card, folder).segment(frame)
    b = TorchBackend(card, folder, weights=weights, dtype="bfloat16").segment(frame)
    assert b.probabilities.dtype == np.float32 and (a.labels == b.labels).mean() > 0.9
    with pytest.raises(ValueError, match="float16 needs CUDA"):
        TorchBackend(card, folder, weights=weights, dtype="float16")


def test_weights_of_another_model_are_refused(unet_model_dir, weights, tmp_path):
    from safetensors.numpy import save_file

    card, folder = load_card(unet_model_dir)
    tensors, meta = onnx_to_tensors(unet_model_dir / "model.onnx")
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata={**meta, "onnx_sha256": "0" * 64})
    with pytest.raises(ValueError, match="another model.onnx"):
        TorchBackend(card, folder, weights=tmp_path / "other.safetensors")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_cuda_passes_verification(unet_model_dir, weights, dtype):
    card, folder = load_card(unet_model_dir)
    backend = TorchBackend(card, folder, weights=weights, device="cuda", dtype=dtype)
    v = verify_backend(backend, OrtBackend(card, folder))
    assert v.accepted, v.message


def test_fp32_asked_is_fp32_on_cuda():
    from copilot.inference.select import torch_dtype

    assert torch_dtype("cuda", "fp32") == "float32" and torch_dtype("cuda:1", "fp16") == "float16"
    assert torch_dtype("cpu", "fp16") == "float32"


def test_device_reductions_match_the_host_ones():
    from copilot.inference.torch_backend import reduce_on_device
    from copilot.reliability.features import entropy_map

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 40, 50)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    labels, conf, entropy = reduce_on_device(torch.from_numpy(probs))
    assert labels.dtype == torch.uint8
    np.testing.assert_array_equal(labels.numpy(), probs.argmax(0))
    np.testing.assert_allclose(conf.numpy(), probs.max(0), rtol=1e-6)
    np.testing.assert_allclose(entropy.numpy(), entropy_map(probs), atol=1e-5)
