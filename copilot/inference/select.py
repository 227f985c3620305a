"""Pick a backend for a model; ``auto`` takes the fastest backend this machine can run *and* that passes verification.

Order for ``auto``: TensorRT > ONNX Runtime TensorRT EP > ONNX Runtime CUDA EP > torch on CUDA > ONNX Runtime CPU.
Each candidate is probed cheaply first (is the package there, is there a GPU); one that is available is built and,
unless it is the ONNX Runtime CPU reference itself, verified against ONNX Runtime CPU on the card's validation frames
(mIoU ≥ 0.99, ``verify.py``). The reason every candidate was skipped is logged and kept on the returned backend as
``backend.selection`` (a list of ``(candidate, outcome)``), so ``copilot engines list`` and the logs say *why* a
machine runs what it runs. ONNX Runtime CPU never fails to load on a supported install: it is the floor.

An explicitly named backend that cannot load or is refused falls back to ONNX Runtime CPU as well (with an error
in the log), unless ``strict=True`` (``copilot engines verify|build``), which raises.

At run time a device backend is wrapped in :class:`RuntimeFallback`: a frame the device fails on is segmented by
ONNX Runtime CPU instead (nothing is lost), and after ``max_device_errors`` consecutive device errors the CPU backend
takes over for good (the device backend is closed, and ``selection`` says why).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from copilot.inference.card import ModelCard, load_card
from copilot.inference.names import ALIASES, AUTO_ORDER, BACKEND_CHOICES
from copilot.inference.ort_backend import OrtBackend, available_providers
from copilot.inference.segmentation import Backend

log = logging.getLogger(__name__)


GPU_WHOLE_PX = 2048  # working-grid edge a GPU backend runs whole (a 5120² frame at 0.2 nm/px on a 0.5 nm/px model)
GPU_TILE_BATCH = 4
MAX_DEVICE_ERRORS = 3
LOCAL_DEVICE_BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda")  # RuntimeFallback


@dataclass
class Candidate:
    name: str
    probe: Callable[[], str | None]  # why it cannot run here, or None
    build: Callable[[], Backend]
    verify: bool = True
    fallback: bool = True  # may select_backend fall back to ORT-CPU when this one fails to load


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _torch_cuda_reason() -> str | None:
    if not _has("torch"):
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def probe_tensorrt() -> str | None:
    if not _has("tensorrt"):
        return "tensorrt is not installed (pip install tensorrt)"
    if not _has("cuda") and _torch_cuda_reason() is not None:
        return "no CUDA runtime binding: install cuda-python, or torch with CUDA"
    try:
        from copilot.inference.trt_backend import cuda_binding

        cuda_binding().close()
    except Exception as exc:
        return str(exc)
    return None


def probe_ort_provider(provider: str) -> str | None:
    from copilot.inference.ort_backend import ort_distributions

    dists = ort_distributions()
    if len(dists) > 1:
        return (f"{' and '.join(dists)} are both installed and overwrite each other's files: uninstall both, then "
                "install one (pip install -e '.[gpu]' installs onnxruntime-gpu alone)")
    have = available_providers()
    if provider not in have:
        return f"onnxruntime has no {provider} (available: {', '.join(have)}; install onnxruntime-gpu)"
    return None


def probe_torch_cuda() -> str | None:
    if not _has("safetensors"):
        return "safetensors is not installed"
    if not _has("onnx"):
        return "onnx is not installed (needed once to convert model.onnx weights to safetensors)"
    return _torch_cuda_reason()


def probe_torch_cpu() -> str | None:
    for module in ("torch", "safetensors"):
        if not _has(module):
            return f"{module} is not installed"
    return None


def torch_dtype(device: str, precision: str) -> str:
    """The torch compute dtype for ``precision``: float16 only on CUDA and only when fp16 is asked for.

    >>> torch_dtype("cuda", "fp16"), torch_dtype("cuda", "fp32"), torch_dtype("cpu", "fp16")
    ('float16', 'float32', 'float32')
    """
    return "float16" if device.startswith("cuda") and precision == "fp16" else "float32"


def candidates(card: ModelCard, folder: Path, *, threads: int = 2, max_whole_px: int = 1536,
               state_dir: Path | None = None, precision: str = "fp16", triton=None) -> dict[str, Candidate]:
    state = Path(state_dir or "state")
    t = card.tiling.tile_px

    def trt():
        from copilot.inference.trt_backend import load_tensorrt

        return load_tensorrt(card, folder, state_dir=state, precision=precision)

    def ort_trt():
        from copilot.inference.ort_backend import ort_tensorrt_providers

        cache = state / "engines" / card.name / card.model_sha256[:12] / "ort-trt"
        return OrtBackend(card, folder, threads=threads, max_whole_px=t, tile_batch=8,
                          providers=ort_tensorrt_providers(cache, card, fp16=precision == "fp16"))

    def ort_cuda():
        from copilot.inference.ort_backend import ort_cuda_providers

        return OrtBackend(card, folder, threads=threads, max_whole_px=max(max_whole_px, GPU_WHOLE_PX), tile_px=2 * t,
                          tile_batch=GPU_TILE_BATCH, providers=ort_cuda_providers())

    def torch_backend(device: str):
        from copilot.inference.torch_backend import TorchBackend

        gpu = device == "cuda"
        return TorchBackend(card, folder, state_dir=state, device=device, dtype=torch_dtype(device, precision),
                            threads=threads,
                            max_whole_px=max(max_whole_px, GPU_WHOLE_PX) if gpu else max_whole_px,
                            tile_px=2 * t if gpu else None, tile_batch=GPU_TILE_BATCH if gpu else 1)

    from copilot.inference.triton_backend import triton_candidate

    return {
        "triton": triton_candidate(card, folder, triton, threads=threads, max_whole_px=max_whole_px),
        "tensorrt": Candidate("tensorrt", probe_tensorrt, trt, verify=False),  # load_tensorrt verifies new builds
        "onnxruntime-tensorrt": Candidate("onnxruntime-tensorrt", lambda: probe_ort_provider(
            "TensorrtExecutionProvider"), ort_trt),
        "onnxruntime-cuda": Candidate("onnxruntime-cuda", lambda: probe_ort_provider("CUDAExecutionProvider"),
                                      ort_cuda),
        "torch-cuda": Candidate("torch-cuda", probe_torch_cuda, lambda: torch_backend("cuda")),
        "torch-cpu": Candidate("torch-cpu", probe_torch_cpu, lambda: torch_backend("cpu")),
        "onnxruntime-cpu": Candidate("onnxruntime-cpu", lambda: None,
                                     lambda: OrtBackend(card, folder, threads=threads, max_whole_px=max_whole_px),
                                     verify=False),
    }


def try_candidate(cand: Candidate, reference: Callable[[], Backend], verify: bool = True) -> tuple[Backend | None, str]:
    """Probe, build and (optionally) verify one candidate; returns the backend or None, and what happened."""
    from copilot.inference.verify import BackendRefused, require_agreement

    reason = cand.probe()
    if reason:
        return None, f"skipped: {reason}"
    try:
        backend = cand.build()
    except BackendRefused as exc:
        return None, f"refused: {exc}"
    except Exception as exc:
        return None, f"failed to load: {type(exc).__name__}: {exc}"
    if verify and cand.verify:
        try:
            v = require_agreement(backend, reference())
        except BackendRefused as exc:
            getattr(backend, "close", lambda: None)()
            return None, f"refused: {exc}"
        except Exception as exc:
            getattr(backend, "close", lambda: None)()
            return None, f"verification failed: {type(exc).__name__}: {exc}"
        return backend, f"selected (verified: mIoU {v.miou:.4f})"
    return backend, "selected"


def select_backend(card: ModelCard, folder: Path, backend: str = "auto", *, threads: int = 2,
                   max_whole_px: int = 1536, state_dir: Path | None = None, verify: bool = True,
                   strict: bool = False, precision: str = "fp16",
                   table: dict[str, Candidate] | None = None, triton=None) -> Backend:
    """The backend for ``backend`` (a name from BACKEND_CHOICES), with ``backend.selection`` saying why."""
    backend = ALIASES.get(backend, backend)
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    table = table or candidates(card, folder, threads=threads, max_whole_px=max_whole_px, state_dir=state_dir,
                                precision=precision, triton=triton)
    order = list(AUTO_ORDER) if backend == "auto" else [backend]
    ref_cache: list[Backend] = []

    def reference() -> Backend:
        if not ref_cache:
            ref_cache.append(OrtBackend(card, folder, threads=threads, max_whole_px=max_whole_px))
        return ref_cache[0]

    selection: list[tuple[str, str]] = []
    for name in order:
        chosen, outcome = try_candidate(table[name], reference, verify)
        selection.append((name, outcome))
        if chosen is not None:
            chosen_from = name
            break
        log.debug("backend %s: %s", name, outcome)  # the summary line below counts them; -v shows why
    else:
        if strict or not table[order[-1]].fallback:
            raise RuntimeError(f"backend {backend} unavailable: {selection[-1][1]}")
        log.error("backend %s unavailable (%s); falling back to onnxruntime-cpu", backend, selection[-1][1])
        chosen, outcome = try_candidate(table["onnxruntime-cpu"], reference, verify=False)
        selection.append(("onnxruntime-cpu", "selected (fallback)"))
        chosen_from = "onnxruntime-cpu"
    if chosen_from in LOCAL_DEVICE_BACKENDS:  # a remote backend (triton) has its own fall-back policy
        chosen = RuntimeFallback(chosen, lambda: OrtBackend(card, folder, threads=threads, max_whole_px=max_whole_px))
    chosen.selection = selection
    why = "requested" if backend != "auto" else "auto"
    skipped = sum(1 for n, _ in selection if n != chosen.name)
    log.info("backend: %s for %s %s (%s%s)", chosen.name, card.name, card.version, why,
             f"; {skipped} not available here, -v or `copilot engines` says why" if skipped else "")
    log.debug("backend selection: %s", "; ".join(f"{n}: {o}" for n, o in selection))
    return chosen


class RuntimeFallback:
    """A device backend that hands over to the CPU backend when the device fails at run time.

    A frame the device backend fails on is segmented by the CPU backend instead; if the CPU backend fails too, the
    frame itself is at fault and its error is raised (not counted). After ``max_errors`` consecutive device errors
    (a persistent CUDA error, a lost device) the CPU backend takes over for good and the device backend is closed.
    Everything else (``card``, ``describe``, ...) is the active backend's.
    """

    def __init__(self, primary, make_fallback: Callable[[], Backend], max_errors: int = MAX_DEVICE_ERRORS):
        self.primary = primary
        self._make_fallback = make_fallback
        self.fallback = None
        self.max_errors = max_errors
        self.consecutive_errors = 0
        self.device_errors = 0
        self.switched = False
        self.selection: list[tuple[str, str]] = list(getattr(primary, "selection", []))
        self._lock = threading.Lock()

    @property
    def active(self):
        return self.fallback if self.switched else self.primary

    @property
    def name(self) -> str:
        return self.active.name

    def __getattr__(self, attr):
        if attr in ("primary", "fallback", "switched"):  # not yet set (during construction): no recursion
            raise AttributeError(attr)
        return getattr(self.active, attr)

    def _cpu(self):
        if self.fallback is None:
            self.fallback = self._make_fallback()
        return self.fallback

    def segment(self, frame):
        if self.switched:
            return self.fallback.segment(frame)
        try:
            seg = self.primary.segment(frame)
        except Exception as exc:  # noqa: BLE001 — decided below: the frame's fault or the device's
            seg = self._cpu().segment(frame)  # raises when the frame itself is bad
            self._device_error(exc)
            return seg
        self.consecutive_errors = 0
        return seg

    def _device_error(self, exc: Exception) -> None:
        with self._lock:
            self.consecutive_errors += 1
            self.device_errors += 1
            n = self.consecutive_errors
            log.error("backend %s failed (%s: %s); frame segmented by %s instead (%d/%d in a row)",
                      self.primary.name, type(exc).__name__, exc, self.fallback.name, n, self.max_errors)
            if n < self.max_errors or self.switched:
                return
            self.switched = True
            self.selection.append((self.primary.name, f"abandoned at run time after {n} consecutive device errors; "
                                                      f"last: {type(exc).__name__}: {exc}"))
            self.selection.append((self.fallback.name, "selected (run-time fallback)"))
            log.error("backend %s abandoned after %d consecutive errors; %s runs from now on",
                      self.primary.name, n, self.fallback.name)
        try:
            self.primary.close()
        except Exception as close_exc:  # noqa: BLE001 — a broken device may not close cleanly
            log.warning("closing %s failed: %s", self.primary.name, close_exc)

    def forget_scale(self, stream: str, frame_id: str) -> None:
        for backend in (self.primary, self.fallback):
            getattr(backend, "forget_scale", lambda *_: None)(stream, frame_id)

    def close(self) -> None:
        for backend in (self.primary, self.fallback):
            if backend is not None:
                getattr(backend, "close", lambda: None)()


def load_backend(model: str, backend: str = "auto", threads: int = 2, max_whole_px: int = 1536, *,
                 state_dir: Path | str | None = None, verify: bool = True, strict: bool = False,
                 precision: str = "fp16", triton=None) -> Backend:
    """Load ``model`` (name or folder) on ``backend``; see the module docstring for ``auto``. ``triton``: the
    ``[triton]`` settings (TritonSettings) for ``backend = "triton"``."""
    card, folder = load_card(model)
    return select_backend(card, folder, backend, threads=threads, max_whole_px=max_whole_px,
                          state_dir=Path(state_dir) if state_dir else None, verify=verify, strict=strict,
                          precision=precision, triton=triton)
