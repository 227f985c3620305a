"""GPU backends end to end (skipped without CUDA): TensorRT plans for every shape class, cached and re-checked; the
ORT CUDA/TensorRT EPs without silent CPU fall-back; torch on CUDA in the precision asked for, reduced on the device."""

import threading
import warnings

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend, available_providers
from copilot.inference.verify import frames_for, verify_backend


def _cuda() -> bool:
    try:
        from copilot.inference.trt_backend import cuda_binding

        cuda_binding().close()
        return True
    except Exception:
        return False


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_plan_is_built_verified_on_every_shape_class_and_cached(unet_model_dir, tmp_path, precision):
    pytest.importorskip("tensorrt")
    from copilot.inference.trt_backend import load_tensorrt
    from copilot.inference.trt_plan import list_plans, shape_classes

    card, folder = load_card(unet_model_dir)
    backend = load_tensorrt(card, folder, state_dir=tmp_path, precision=precision, tile_batch=2)
    [(plan, record)] = list_plans(tmp_path)
    v = record["verification"]
    assert v["accepted"] and plan == backend.plan_path and record["key"]["precision"] == precision
    sizes = {s[0] for s in v["frame_shapes"]}
    assert set(shape_classes(backend.profiles, card.tiling.multiple_of).values()) <= sizes
    assert v["embedding_diff"] <= v["embedding_tolerance"]
    backend.close()
    again = load_tensorrt(card, folder, state_dir=tmp_path, precision=precision, tile_batch=2)  # cached, re-checked
    assert again.plan_path == plan and len(list_plans(tmp_path)) == 1
    result = []
    t = threading.Thread(target=lambda: result.append(verify_backend(again, OrtBackend(card, folder))))
    t.start()  # inference from another thread than the one that loaded the plan
    t.join()
    assert result and result[0].accepted, result[0].message if result else "no result"


def test_cuda_python_stream_handle_without_deprecation():
    pytest.importorskip("cuda.bindings")
    from copilot.inference.trt_backend import CudaPython

    cuda = CudaPython(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert cuda.handle(cuda.stream()) != 0
    assert cuda.driver_version() != "unknown"
    cuda.close()


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_onnxruntime_gpu_providers(unet_model_dir, tmp_path, provider):
    if provider not in available_providers():
        pytest.skip(f"onnxruntime has no {provider}")
    from copilot.inference.ort_backend import ort_cuda_providers, ort_tensorrt_providers

    card, folder = load_card(unet_model_dir)
    providers = (ort_cuda_providers() if provider == "CUDAExecutionProvider"
                 else ort_tensorrt_providers(tmp_path, card))
    backend = OrtBackend(card, folder, providers=providers, max_whole_px=card.tiling.tile_px, tile_batch=8)
    assert backend.session.get_providers()[0] == provider and backend.placement
    v = verify_backend(backend, OrtBackend(card, folder))
    assert v.accepted, v.message
    assert backend.session.get_providers()[0] == provider  # still on the device after every frame


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_cuda_verifies_in_the_dtype_asked_and_reduces_on_the_device(unet_model_dir, tmp_path, dtype):
    torch = pytest.importorskip("torch")
    from copilot.inference.torch_backend import DeviceSegmentation, TorchBackend

    card, folder = load_card(unet_model_dir)
    backend = TorchBackend(card, folder, state_dir=tmp_path, device="cuda", dtype=dtype, max_whole_px=2048)
    assert next(backend.net.parameters()).dtype == getattr(torch, dtype)
    if dtype == "float32":
        assert torch.backends.cudnn.allow_tf32 is False
    frames, src = frames_for(backend, card, n_tiles=2)
    seg = backend.segment(frames[0])
    assert isinstance(seg, DeviceSegmentation)
    np.testing.assert_array_equal(seg.labels, seg.probabilities.argmax(0))
    v = verify_backend(backend, OrtBackend(card, folder), frames, frames_from=src)
    assert v.accepted, v.message
