"""ONNX Runtime engines: the embedded default (CPU), and the CUDA / TensorRT execution providers of onnxruntime-gpu."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkEngine

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "CPUExecutionProvider": "onnxruntime-cpu",
    "CUDAExecutionProvider": "onnxruntime-cuda",
    "TensorrtExecutionProvider": "onnxruntime-tensorrt",
}


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


class OrtEngine(NetworkEngine):
    """Segments a Frame with the card's ONNX model.

    The frame is resampled to the card's working nm/px, normalized, and run whole when it fits in ``max_whole_px``
    (fastest on a CPU), otherwise as overlapping tiles blended with linear ramps.

    ``spin=False`` stops ONNX Runtime's worker threads from busy-waiting between operators, so the stages that
    run beside inference in the daemon get the CPU.

    ``providers`` is handed to ONNX Runtime as is (names or ``(name, options)`` pairs); the engine's ``name`` follows
    the first one: ``onnxruntime-cpu``, ``onnxruntime-cuda`` or ``onnxruntime-tensorrt``. A session that silently
    fell back to the CPU provider raises instead (``session.get_providers()`` is checked).
    """

    name = "onnxruntime-cpu"

    def __init__(
        self,
        card: ModelCard,
        folder: Path,
        *,
        threads: int = 2,
        max_whole_px: int = 1536,
        providers: list | None = None,
        tile_px: int | None = None,
        tile_batch: int = 1,
        spin: bool = False,
    ):
        super().__init__(card, folder, max_whole_px=max_whole_px, tile_px=tile_px, tile_batch=tile_batch)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's pool threads busy-wait after each op by default; in the daemon the analysis of the previous frame
        # needs those cycles (2 cores), so they sleep instead unless ``spin`` is asked for
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = providers or ["CPUExecutionProvider"]
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        self.name = _PROVIDER_NAMES.get(first, f"onnxruntime-{first}")
        self.session = ort.InferenceSession(str(card.model_path(folder)), sess_options=opts, providers=providers)
        if first not in self.session.get_providers():
            raise RuntimeError(f"ONNX Runtime did not enable {first} (session has {self.session.get_providers()})")
        self._outputs = [card.outputs.probabilities, card.outputs.embedding]

    @classmethod
    def from_name(cls, name_or_path: str | Path, **kwargs) -> "OrtEngine":
        card, folder = load_card(name_or_path)
        return cls(card, folder, **kwargs)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, emb = self.session.run(self._outputs, {self.card.outputs.input: x})
        return probs, emb.reshape(len(x), -1)

    def run_network(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return super().run_network(img)


def ort_cuda_providers(device_id: int = 0) -> list:
    return [("CUDAExecutionProvider", {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"}),
            "CPUExecutionProvider"]


def ort_tensorrt_providers(cache_dir: Path, card: ModelCard, *, fp16: bool = True, device_id: int = 0,
                           max_batch: int = 8) -> list:
    """TensorRT execution provider with its engine and timing caches under ``cache_dir`` and one optimization
    profile spanning the whole-frame and tile shapes (ORT-TRT takes min/opt/max shape strings)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    m, t = card.tiling.multiple_of, card.tiling.tile_px
    name = card.outputs.input
    opts = {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": f"{name}:1x1x{m}x{m}",
        "trt_profile_opt_shapes": f"{name}:{max_batch}x1x{t}x{t}",
        "trt_profile_max_shapes": f"{name}:{max_batch}x1x{t}x{t}",
    }
    return [("TensorrtExecutionProvider", opts), *ort_cuda_providers(device_id)]
