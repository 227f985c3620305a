"""ONNX Runtime backends: the embedded default (CPU), and the CUDA / TensorRT execution providers of onnxruntime-gpu.

A device session never silently becomes a CPU session. ONNX Runtime's Python ``InferenceSession`` falls back to the
CPU providers by itself twice over: when creating the session fails, and when ``run`` meets an execution-provider
error (a CUDA out-of-memory), after which it keeps running on the CPU while the backend still says ``cuda``. Both
are switched off (``enable_fallback=0``). Nodes the device provider does not take are placed on the CPU inside a
device session without a word; the session is first opened strictly (the CPU provider not listed and
``session.disable_cpu_ep_fallback=1``, so any such node is an error), and only if that fails is it opened with the
CPU provider, one profiled run saying which nodes ran where (``placement``); a session whose nodes all ran on the
CPU is refused. Every ``run`` checks that the session still has the provider it was opened with.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

try:
    import onnxruntime as ort
except ImportError as exc:  # the package's ONNX Runtime comes from an extra (pyproject.toml)
    raise ImportError("ONNX Runtime is not installed: pip install 'microscope-copilot[cpu]' "
                      "(or [gpu] on an NVIDIA machine)") from exc

from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkBackend

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "CPUExecutionProvider": "onnxruntime-cpu",
    "CUDAExecutionProvider": "onnxruntime-cuda",
    "TensorrtExecutionProvider": "onnxruntime-tensorrt",
}
CPU = "CPUExecutionProvider"
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn")


class DeviceFallback(RuntimeError):
    """The session no longer runs on the provider it was opened with."""


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def ort_distributions() -> list[str]:
    """Installed distributions that provide the ``onnxruntime`` module (``name==version``); more than one means the
    last installed silently replaced the other's files."""
    from importlib import metadata

    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def _provider_name(p) -> str:
    return p if isinstance(p, str) else p[0]


def node_placement(profile_json: str | Path) -> Counter:
    """Nodes per execution provider in an ONNX Runtime profile (``{"CUDAExecutionProvider": 40, ...}``)."""
    events = json.loads(Path(profile_json).read_text())
    return Counter(e["args"]["provider"] for e in events
                   if e.get("cat") == "Node" and "provider" in e.get("args", {}))


def _options(threads: int, spin: bool) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads busy-wait after each op by default; in the daemon the analysis of the previous frame
    # needs those cycles (2 cores), so they sleep instead unless ``spin`` is asked for
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


def open_device_session(model: str, providers: list, make_options, probe: np.ndarray, input_name: str, *,
                        allow_cpu_nodes: bool = True) -> tuple[ort.InferenceSession, dict[str, int]]:
    """A session on ``providers[0]`` (not the CPU) with no silent fall-back; returns it and its node placement.

    Strict first (no CPU provider, ``session.disable_cpu_ep_fallback``): every node on the device providers. If
    some nodes need the CPU and ``allow_cpu_nodes``, the session is opened with the CPU provider and one profiled
    run of ``probe`` counts the nodes per provider; when none ran on a device provider, RuntimeError.
    """
    first = _provider_name(providers[0])
    device = [p for p in providers if _provider_name(p) != CPU]
    opts = make_options()
    opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        session = ort.InferenceSession(model, sess_options=opts, providers=device, enable_fallback=0)
        return session, {"all nodes on": ", ".join(_provider_name(p) for p in device)}
    except Exception as exc:  # noqa: BLE001 — ORT raises its own Fail/InvalidArgument types
        if "assigned to the default CPU EP" not in str(exc) or not allow_cpu_nodes:
            raise RuntimeError(f"ONNX Runtime could not run the model on {first} alone: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="copilot-ort-placement-") as tmp:
        opts = make_options()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "placement")
        session = ort.InferenceSession(model, sess_options=opts, providers=[*device, CPU], enable_fallback=0)
        session.run(None, {input_name: probe})
        placement = dict(node_placement(session.end_profiling()))
    on_device = {p: n for p, n in placement.items() if p != CPU}
    if not on_device:
        raise RuntimeError(f"ONNX Runtime ran every node of the model on the CPU although {first} was asked for "
                           f"(placement {placement})")
    log.warning("%s runs %d node(s) on the CPU (placement %s): host↔device copies around them", first,
                placement.get(CPU, 0), placement)
    return session, placement


class OrtBackend(NetworkBackend):
    """Segments a Frame with the card's ONNX model.

    The frame is resampled to the card's working nm/px, normalized, and run whole when it fits in ``max_whole_px``
    (fastest on a CPU), otherwise as overlapping tiles blended with linear ramps.

    ``spin=False`` stops ONNX Runtime's worker threads from busy-waiting between operators, so the stages that
    run beside inference in the daemon get the CPU.

    ``providers`` is handed to ONNX Runtime (names or ``(name, options)`` pairs); the backend's ``name`` follows the
    first one: ``onnxruntime-cpu``, ``onnxruntime-cuda`` or ``onnxruntime-tensorrt``. A device provider is opened
    by :func:`open_device_session` (no silent fall-back; ``placement`` says which nodes run where), and ``run_batch``
    raises :class:`DeviceFallback` if the session ever stops running on it.
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
        allow_cpu_nodes: bool = True,
    ):
        super().__init__(card, folder, max_whole_px=max_whole_px, tile_px=tile_px, tile_batch=tile_batch)
        providers = providers or [CPU]
        first = _provider_name(providers[0])
        self.name = _PROVIDER_NAMES.get(first, f"onnxruntime-{first}")
        self.provider = first
        model = str(card.model_path(folder))
        if first == CPU:
            self.session = ort.InferenceSession(model, sess_options=_options(threads, spin), providers=providers,
                                                enable_fallback=0)
            self.placement: dict[str, int] = {"all nodes on": CPU}
        else:
            if first not in available_providers():
                raise RuntimeError(f"onnxruntime {ort.__version__} has no {first} (available: "
                                   f"{', '.join(available_providers())}; install onnxruntime-gpu)")
            m = card.tiling.multiple_of
            probe = np.zeros((1, 1, m, m), np.float32)
            self.session, self.placement = open_device_session(
                model, providers, lambda: _options(threads, spin), probe, card.outputs.input,
                allow_cpu_nodes=allow_cpu_nodes)
        self.session.disable_fallback()
        if self.session.get_providers()[0] != first:
            raise RuntimeError(f"ONNX Runtime did not enable {first} (session has {self.session.get_providers()})")
        self._outputs = [card.outputs.probabilities, card.outputs.embedding]

    @classmethod
    def from_name(cls, name_or_path: str | Path, **kwargs) -> "OrtBackend":
        card, folder = load_card(name_or_path)
        return cls(card, folder, **kwargs)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, emb = self.session.run(self._outputs, {self.card.outputs.input: x})
        now = self.session.get_providers()
        if not now or now[0] != self.provider:
            raise DeviceFallback(f"{self.name}: the session moved from {self.provider} to {now}")
        return probs, emb.reshape(len(x), -1)

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.session.get_providers(), "placement": self.placement}


def ort_cuda_providers(device_id: int = 0) -> list:
    """CUDA execution provider (no CPU entry: :func:`open_device_session` adds it only where nodes need it)."""
    return [("CUDAExecutionProvider", {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"})]


def ort_tensorrt_cache(state_dir: Path, card: ModelCard, precision: str) -> Path:
    """TensorRT engine-cache folder of the ORT TensorRT EP for one model file and precision: ORT's engine id hashes the
    graph but not ``trt_fp16_enable``, so fp16 and fp32 engines must live apart."""
    return Path(state_dir) / "engines" / card.name / card.model_sha256[:12] / f"ort-trt-{precision}"


def ort_tensorrt_providers(cache_dir: Path, card: ModelCard, *, fp16: bool = True, device_id: int = 0,
                           max_batch: int = 8) -> list:
    """TensorRT execution provider (then CUDA for what TensorRT does not take) with its TensorRT engine cache under
    ``cache_dir/<precision>`` and prefix ``<model>-<precision>`` and one optimization profile spanning the
    whole-frame and tile shapes (ORT-TRT takes min/opt/max shape strings)."""
    precision = "fp16" if fp16 else "fp32"
    trt_cache = Path(cache_dir) / precision
    trt_cache.mkdir(parents=True, exist_ok=True)
    m, t = card.tiling.multiple_of, card.tiling.tile_px
    name = card.outputs.input
    opts = {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(trt_cache),
        "trt_engine_cache_prefix": f"{card.name}-{precision}",
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": f"{name}:1x1x{m}x{m}",
        "trt_profile_opt_shapes": f"{name}:{max_batch}x1x{t}x{t}",
        "trt_profile_max_shapes": f"{name}:{max_batch}x1x{t}x{t}",
    }
    return [("TensorrtExecutionProvider", opts), *ort_cuda_providers(device_id)]
