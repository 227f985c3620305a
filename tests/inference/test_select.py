"""Backend selection on this machine and the names it accepts."""

import pytest

from copilot.inference.names import AUTO_ORDER, BACKEND_CHOICES
from copilot.inference.select import load_backend


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.skipif(_has_cuda(), reason="this test describes a machine without a GPU")
def test_auto_on_a_cpu_machine_falls_to_onnxruntime_cpu_with_reasons(threshold_model_dir, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="copilot.inference.select")
    backend = load_backend(str(threshold_model_dir), "auto", state_dir=tmp_path / "state")
    assert backend.name == "onnxruntime-cpu"
    names = [n for n, _ in backend.selection]
    assert names == list(AUTO_ORDER)  # tried in order, best first
    outcomes = dict(backend.selection)
    for name in AUTO_ORDER[:-1]:
        assert outcomes[name].startswith(("skipped:", "failed to load:", "refused:")), outcomes[name]
        assert len(outcomes[name]) > len("skipped: ") + 5
    assert outcomes["onnxruntime-cpu"] == "selected"
    assert "TensorrtExecutionProvider" in outcomes["onnxruntime-tensorrt"]
    assert "CUDAExecutionProvider" in outcomes["onnxruntime-cuda"]
    assert "backend tensorrt:" in caplog.text and "backend: onnxruntime-cpu" in caplog.text
    info = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]  # what a user sees: one line
    assert len(info) == 1 and f"{len(AUTO_ORDER) - 1} not available here" in info[0]


def test_explicit_cpu_and_aliases(threshold_model_dir):
    for name in ("onnxruntime", "onnxruntime-cpu", "ort"):
        e = load_backend(str(threshold_model_dir), name)
        assert e.name == "onnxruntime-cpu" and e.selection == [("onnxruntime-cpu", "selected")]
    assert {"auto", "tensorrt", "torch-cuda", "torch-cpu", "onnxruntime-cuda"} <= set(BACKEND_CHOICES)


def test_unknown_backend_is_an_error(threshold_model_dir):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        load_backend(str(threshold_model_dir), "tpu")


def test_torch_on_a_non_unet_model_falls_back_with_the_reason(threshold_model_dir, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    pytest.importorskip("onnx")
    e = load_backend(str(threshold_model_dir), "torch-cpu", state_dir=tmp_path)
    assert e.name == "onnxruntime-cpu"
    assert "TinyUNet" in e.selection[0][1]
