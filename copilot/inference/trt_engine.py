"""TensorRT engine: a plan built from model.onnx for this GPU, cached, verified, run asynchronously on a CUDA stream.

``tensorrt`` is optional (``pip install tensorrt``; not a dependency of the package). CUDA memory and streams come
from ``cuda-python`` (``cuda.bindings.runtime``) when installed, else from ``torch.cuda``.

Build (minutes, once per model × GPU × TensorRT version × precision × profiles; see ``trt_plan`` for the key):
the ONNX parser, one optimization profile per tile edge, FP16 (``precision="fp16"``, default) or FP32, a timing
cache shared by all builds on this GPU, and a rich progress display fed by TensorRT's ``IProgressMonitor``.
FP16 on TensorRT 10 is the ``BuilderFlag.FP16`` of the documented 10.x API; TensorRT 11 (current on PyPI) removed
weak typing, so there the graph itself is converted to float16 with float32 I/O (``fp16_onnx``) and built
strongly typed. Either way the new plan is verified before use.
INT8 is not offered: TensorRT 10 deprecates implicit (calibrator) INT8 in favour of explicit Q/DQ quantization,
and a per-pixel segmentation U-Net this small gains little from it (FP16 already fits its tiles in L2).

Run: one execution context per profile (a profile is bound to one context), pinned host buffers and device buffers
allocated once per profile for its largest shape, ``set_input_shape`` + ``set_tensor_address`` per call, host→device
copy, ``execute_async_v3`` and device→host copy queued on one stream, one synchronize per batch.

Every new plan is verified against ONNX Runtime on the CPU (``verify.load_verified_build``) before it is used.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np

from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkEngine
from copilot.inference.trt_plan import PlanKey, Profile, RunPlan, default_profiles, plan_run, choose_profile

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError("TensorRT is not installed (pip install tensorrt, with a CUDA 12/13 driver)") from exc
    return trt


# -- CUDA: the few calls the engine needs, from cuda-python or torch ----------------------------------------------
class CudaPython:
    """cuda-python runtime bindings."""

    kind = "cuda-python"

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        self.device = device
        self._check(cudart.cudaSetDevice(device))
        self._host: list[int] = []
        self._dev: list[int] = []

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def device_info(self) -> tuple[str, str]:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device))
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    def stream(self):
        return self._check(self.rt.cudaStreamCreate())

    @staticmethod
    def handle(stream) -> int:
        return int(stream)

    def pinned(self, nbytes: int) -> np.ndarray:
        ptr = self._check(self.rt.cudaMallocHost(nbytes))
        self._host.append(ptr)
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(int(ptr)))

    def device_buffer(self, nbytes: int) -> int:
        ptr = self._check(self.rt.cudaMalloc(nbytes))
        self._dev.append(ptr)
        return int(ptr)

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, stream))

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, stream))

    def synchronize(self, stream) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))

    def close(self) -> None:
        for p in self._dev:
            self.rt.cudaFree(p)
        for p in self._host:
            self.rt.cudaFreeHost(p)
        self._dev, self._host = [], []


class TorchCuda:
    """The same calls through torch.cuda: pinned and device uint8 tensors (addressed by pointer), a torch stream."""

    kind = "torch.cuda"

    def __init__(self, device: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch reports no CUDA device")
        self.torch = torch
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self._tensors: dict[int, object] = {}  # data pointer → tensor (host pinned or device)

    def device_info(self) -> tuple[str, str]:
        p = self.torch.cuda.get_device_properties(self.device)
        return p.name, f"{p.major}.{p.minor}"

    def stream(self):
        return self.torch.cuda.Stream(self.device)

    @staticmethod
    def handle(stream) -> int:
        return int(stream.cuda_stream)

    def pinned(self, nbytes: int) -> np.ndarray:
        t = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
        self._tensors[t.data_ptr()] = t
        return t.numpy()

    def device_buffer(self, nbytes: int) -> int:
        t = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        self._tensors[t.data_ptr()] = t
        return int(t.data_ptr())

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        with self.torch.cuda.stream(stream):
            self._tensors[dst][:nbytes].copy_(self._tensors[src.ctypes.data][:nbytes], non_blocking=True)

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        with self.torch.cuda.stream(stream):
            self._tensors[dst.ctypes.data][:nbytes].copy_(self._tensors[src][:nbytes], non_blocking=True)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def close(self) -> None:
        self._tensors.clear()


def cuda_backend(device: int = 0):
    """cuda-python if importable, else torch.cuda; raises with both reasons when neither works."""
    errors = []
    for cls in (CudaPython, TorchCuda):
        try:
            return cls(device)
        except Exception as exc:  # ImportError, no device, driver mismatch
            errors.append(f"{cls.kind}: {type(exc).__name__}: {exc}")
    raise RuntimeError("no usable CUDA runtime binding (" + "; ".join(errors) + ")")


# -- build ------------------------------------------------------------------------------------------------------
def fp16_onnx(onnx_path: Path) -> bytes:
    """model.onnx with float16 weights and arithmetic, float32 inputs/outputs (Casts at both ends).

    TensorRT 11 removed the weak-typing ``BuilderFlag.FP16``: a strongly typed network runs in the precision the
    graph says. NVIDIA's route is ModelOpt AutoCast; this graph (Conv, Relu, MaxPool, Resize, Add, reductions, Exp,
    Div) needs far less: every float initializer and constant becomes float16, except Resize's ``roi``/``scales``
    inputs, which the operator requires in float32. Needs ``onnx``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    keep = {name for n in g.node if n.op_type == "Resize" for name in n.input[1:] if name}

    def half(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            init.CopyFrom(half(init))
    for node in g.node:
        if node.op_type == "Cast":
            raise ValueError("fp16_onnx: graphs with Cast nodes are not handled; use precision fp32")
        if node.op_type == "Constant" and node.output[0] not in keep:
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(half(a.t))
    def rename(old: str, new: str, fields: tuple[str, ...]) -> None:
        for node in g.node:
            for f in fields:
                getattr(node, f)[:] = [new if x == old else x for x in getattr(node, f)]

    def floats(values) -> list[tuple[str, str]]:
        return [(v.name, f"{v.name}__fp16") for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT]

    casts_in = []
    for name, new in floats(g.input):  # float32 graph inputs → Cast to float16 in front of their consumers
        rename(name, new, ("input",))
        casts_in.append(helper.make_node("Cast", [name], [new], to=TensorProto.FLOAT16))
    for name, new in floats(g.output):
        rename(name, new, ("output", "input"))  # float16 results → Cast back to the float32 graph outputs
        g.node.append(helper.make_node("Cast", [new], [name], to=TensorProto.FLOAT))
    for i, c in enumerate(casts_in):
        g.node.insert(i, c)
    del g.value_info[:]
    return model.SerializeToString()


def _network_bytes(card: ModelCard, folder: Path, trt, precision: str) -> tuple[bytes, bool]:
    """The ONNX bytes to parse and whether the FP16 builder flag applies (TensorRT 10) or the graph itself is
    float16 (TensorRT 11, strongly typed)."""
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16")
    if precision == "fp16" and not weak_fp16:
        return fp16_onnx(card.model_path(folder)), False
    return card.model_path(folder).read_bytes(), precision == "fp16" and weak_fp16


def _progress_monitor(trt, progress):
    """A TensorRT IProgressMonitor that drives a rich Progress (one bar per build phase)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.tasks: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            indent = "  " if parent_phase else ""
            self.tasks[phase_name] = progress.add_task(f"{indent}{phase_name}", total=max(num_steps, 1))

        def step_complete(self, phase_name, step):
            if phase_name in self.tasks:
                progress.update(self.tasks[phase_name], completed=step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                progress.remove_task(task)

    return Monitor()


def build_plan(card: ModelCard, folder: Path, key: PlanKey, plan_path: Path, timing_cache: Path, *,
               workspace_bytes: int = 2 << 30, console=None) -> Path:
    """Parse model.onnx, build a serialized plan for ``key`` and write it (and the updated timing cache)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    trt = import_tensorrt()
    if key.precision == "int8":
        raise NotImplementedError("INT8 plans are not built: use precision fp16 (see trt_engine's docstring)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    onnx_bytes, fp16_flag = _network_bytes(card, folder, trt, key.precision)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {card.model_path(folder)}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16_flag:  # TensorRT 10: weak typing; TensorRT 11 got a float16 graph instead
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    for p in key.profiles:
        prof = builder.create_optimization_profile()
        prof.set_shape(card.outputs.input, p.min, p.opt, p.max)
        config.add_optimization_profile(prof)
    console = console or Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        overall = progress.add_task(f"building TensorRT plan ({key.precision}, {len(key.profiles)} profiles)",
                                    total=None)
        if hasattr(trt, "IProgressMonitor"):
            monitor = _progress_monitor(trt, progress)
            config.progress_monitor = monitor  # must outlive the build
        serialized = builder.build_serialized_network(network, config)
        progress.remove_task(overall)
    if serialized is None:
        raise RuntimeError("TensorRT build failed (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_name(f".{plan_path.name}.partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(plan_path)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    console.print(f"TensorRT plan written: {plan_path} ({plan_path.stat().st_size / 2**20:.1f} MiB)")
    return plan_path


# -- run --------------------------------------------------------------------------------------------------------
class TensorRTEngine(NetworkEngine):
    """Runs a serialized plan. Use :func:`load_tensorrt` (cache, build, verification) rather than this directly."""

    name = "tensorrt"

    def __init__(self, card: ModelCard, folder: Path, plan_path: Path, profiles: tuple[Profile, ...], *,
                 device: int = 0, cuda=None):
        super().__init__(card, folder, max_whole_px=max(p.tile_px for p in profiles),
                         tile_px=max(p.tile_px for p in profiles), tile_batch=1)
        trt = import_tensorrt()
        self.trt = trt
        self.profiles = tuple(profiles)
        self.plan_path = Path(plan_path)
        self.cuda = cuda or cuda_backend(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.plan_path}")
        self.stream = self.cuda.stream()
        self._h = self.cuda.handle(self.stream)
        out = card.outputs
        self.io = {"input": out.input, "probabilities": out.probabilities, "embedding": out.embedding}
        self.dtypes = {k: np.dtype(trt.nptype(self.engine.get_tensor_dtype(v))) for k, v in self.io.items()}
        n_cls, dim = len(card.class_names), card.outputs.embedding_dim
        self.contexts, self.buffers = [], []
        for i, p in enumerate(self.profiles):
            ctx = self.engine.create_execution_context()
            ctx.set_optimization_profile_async(i, self._h)
            n, _, h, w = p.max
            shapes = {"input": (n, 1, h, w), "probabilities": (n, n_cls, h, w), "embedding": (n, dim)}
            bufs = {}
            for k, shape in shapes.items():
                nbytes = int(np.prod(shape)) * self.dtypes[k].itemsize
                bufs[k] = (self.cuda.pinned(nbytes), self.cuda.device_buffer(nbytes))
            self.contexts.append(ctx)
            self.buffers.append(bufs)
        self.cuda.synchronize(self.stream)

    def infer(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape
        plan: RunPlan = plan_run(self.profiles, h, w, self.card.tiling.multiple_of)
        if plan.mode == "whole":
            return self.run_network(img)
        return self.run_tiled(img, plan.tile_px, plan.batch)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, _, h, w = x.shape
        i = choose_profile(self.profiles, n, h, w)
        if i is None:
            raise ValueError(f"no optimization profile takes an input of shape {x.shape}")
        ctx, bufs = self.contexts[i], self.buffers[i]
        ctx.set_input_shape(self.io["input"], (n, 1, h, w))
        out_shapes = {k: tuple(ctx.get_tensor_shape(self.io[k])) for k in ("probabilities", "embedding")}
        host_in, dev_in = bufs["input"]
        x = x.astype(self.dtypes["input"], copy=False)
        view_in = host_in[: x.nbytes].view(self.dtypes["input"]).reshape(x.shape)
        np.copyto(view_in, x)
        self.cuda.h2d(dev_in, host_in, x.nbytes, self.stream)
        for k, name in self.io.items():
            ctx.set_tensor_address(name, bufs[k][1])
        if not ctx.execute_async_v3(self._h):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outs = {}
        for k, shape in out_shapes.items():
            host, dev = bufs[k]
            nbytes = int(np.prod(shape)) * self.dtypes[k].itemsize
            self.cuda.d2h(host, dev, nbytes, self.stream)
            outs[k] = (host, shape, nbytes)
        self.cuda.synchronize(self.stream)
        probs, emb = (outs[k][0][: outs[k][2]].view(self.dtypes[k]).reshape(outs[k][1]).astype(np.float32)
                      for k in ("probabilities", "embedding"))  # astype copies out of the reused pinned buffer
        return probs, emb.reshape(n, -1)

    def close(self) -> None:
        self.contexts, self.buffers = [], []
        self.cuda.close()

    def describe(self) -> dict:
        return {**super().describe(), "plan": str(self.plan_path), "cuda": self.cuda.kind,
                "profiles": [p.max for p in self.profiles]}


def plan_key(card: ModelCard, precision: str, profiles: tuple[Profile, ...], cuda) -> PlanKey:
    trt = import_tensorrt()
    gpu, cc = cuda.device_info()
    return PlanKey(card.model_sha256, trt.__version__, gpu, cc, precision, tuple(profiles))


def load_tensorrt(card: ModelCard, folder: Path, *, state_dir: Path, precision: str = "fp16",
                  profiles: tuple[Profile, ...] | None = None, rebuild: bool = False, device: int = 0,
                  reference=None, frames=None, console=None) -> TensorRTEngine:
    """A verified TensorRT engine for ``card``: the cached plan, or a new build verified against ORT CPU.

    Raises ImportError/RuntimeError when TensorRT or CUDA is missing and :class:`EngineRefused` when the build's
    masks disagree with ONNX Runtime (mIoU < 0.99); callers fall back (``select.load_engine``).
    """
    from copilot.inference.ort_engine import OrtEngine
    from copilot.inference.verify import load_verified_build

    import_tensorrt()  # the clearer error first
    profiles = profiles or default_profiles(card.tiling.tile_px, card.tiling.multiple_of)
    cuda = cuda_backend(device)
    key = plan_key(card, precision, profiles, cuda)
    plan = key.plan_path(state_dir, card.name)
    engine, _ = load_verified_build(
        artifact=plan,
        record_path=key.record_path(state_dir, card.name),
        key=key.to_dict(),
        build=lambda: build_plan(card, folder, key, plan, key.timing_cache_path(state_dir), console=console),
        load=lambda path: TensorRTEngine(card, folder, path, profiles, device=device, cuda=cuda),
        reference=reference or (lambda: OrtEngine(card, folder, threads=2)),
        rebuild=rebuild,
        frames=frames,
    )
    return engine


def from_name(name_or_path: str | Path, **kwargs) -> TensorRTEngine:
    card, folder = load_card(name_or_path)
    return load_tensorrt(card, folder, **kwargs)
