"""GPU backends end to end (skipped without CUDA): TensorRT plan build + cache + verification, ORT CUDA/TensorRT EPs."""

import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_engine import OrtEngine, available_providers
from copilot.inference.verify import verify_engine


def _cuda() -> bool:
    try:
        from copilot.inference.trt_engine import cuda_backend

        cuda_backend().close()
        return True
    except Exception:
        return False


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")]


def test_tensorrt_plan_is_built_verified_and_cached(unet_model_dir, tmp_path):
    pytest.importorskip("tensorrt")
    from copilot.inference.trt_engine import load_tensorrt
    from copilot.inference.trt_plan import list_plans

    card, folder = load_card(unet_model_dir)
    engine = load_tensorrt(card, folder, state_dir=tmp_path, precision="fp16")
    [(plan, record)] = list_plans(tmp_path)
    assert record["verification"]["accepted"] and plan == engine.plan_path
    again = load_tensorrt(card, folder, state_dir=tmp_path, precision="fp16")  # from the cache
    assert again.plan_path == plan and len(list_plans(tmp_path)) == 1
    v = verify_engine(again, OrtEngine(card, folder))
    assert v.accepted, v.message


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_onnxruntime_gpu_providers(unet_model_dir, tmp_path, provider):
    if provider not in available_providers():
        pytest.skip(f"onnxruntime has no {provider}")
    from copilot.inference.ort_engine import ort_cuda_providers, ort_tensorrt_providers

    card, folder = load_card(unet_model_dir)
    providers = (ort_cuda_providers() if provider == "CUDAExecutionProvider"
                 else ort_tensorrt_providers(tmp_path, card))
    engine = OrtEngine(card, folder, providers=providers, max_whole_px=card.tiling.tile_px, tile_batch=8)
    v = verify_engine(engine, OrtEngine(card, folder))
    assert v.accepted, v.message
