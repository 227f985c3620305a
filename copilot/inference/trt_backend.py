"""TensorRT backend: a plan built from model.onnx for this GPU, cached, verified, run asynchronously on a CUDA stream.

``tensorrt`` is optional (``pip install tensorrt``; not a dependency of the package). CUDA memory and streams come
from ``torch.cuda`` where torch sees the GPU (then a whole frame's labels, confidence and entropy are computed on the
device too), else from cuda-bindings (``cuda.bindings.runtime``, the ``gpu`` extra).

Build (minutes, once per model × GPU × driver × TensorRT version × precision × profiles × recipe; ``trt_plan`` has
the key): the ONNX parser, one optimization profile per tile edge, a timing cache shared by all builds on this GPU
(written atomically; one TensorRT rejects is replaced), and a rich progress display fed by TensorRT's
``IProgressMonitor`` that cannot cancel the build. One strongly typed code path for every TensorRT version: weak
typing (``BuilderFlag.FP16``) is deprecated since 10.12 and removed in 11, so FP16 is a float16 graph with float32
I/O and float32 spatial means (``fp16_onnx``), and FP32 clears TF32 (true FP32).
INT8 is not offered: TensorRT 10 deprecates implicit (calibrator) INT8 in favour of explicit Q/DQ quantization,
and a per-pixel segmentation U-Net this small gains little from it (FP16 already fits its tiles in L2).

Run: one execution context per profile sharing one user-managed activation buffer, one set of pinned host and device
I/O buffers, ``set_input_shape`` + ``set_tensor_address`` per call (their results checked), host→device copy,
``execute_async_v3`` and device→host copy queued on one stream, one synchronize per batch. The plan's I/O tensor
names are checked against the card when it is loaded.

Every new plan is verified against ONNX Runtime on the CPU on every shape class (``verify.load_verified_build``)
before it is used, and a cached plan is re-checked on a few frames at each load.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import numpy as np

from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkBackend, wants_native_pass
from copilot.inference.segmentation import Segmentation
from copilot.inference.trt_plan import (BuildRecipe, PlanKey, Profile, RunPlan, atomic_write, choose_profile,
                                        default_profiles, plan_run, shape_classes)

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError("TensorRT is not installed (pip install tensorrt, with a CUDA 12/13 driver)") from exc
    return trt


# -- CUDA: the few calls the backend needs, from cuda-python or torch ----------------------------------------------
def native_handle(obj) -> int:
    """The address behind a cuda-bindings object (a stream). ``int(obj)`` is deprecated since cuda-bindings 12.9.1 /
    13.0 in favour of ``cuda.bindings.utils.get_cuda_native_handle``; older bindings only have ``int``."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


class PerThreadDevice:
    """CUDA's current device is per thread: call ``set_device`` once in every thread that runs inference (the
    pipeline's backend thread, not only the thread that loaded the backend)."""

    def __init__(self, set_device):
        self._set_device = set_device
        self._local = threading.local()

    def ensure(self) -> None:
        if not getattr(self._local, "done", False):
            self._set_device()
            self._local.done = True


class CudaPython:
    """cuda-python runtime bindings (``cuda.bindings.runtime``; cuda-bindings 13 removed the old ``cuda.cudart``)."""

    kind = "cuda-python"

    def __init__(self, device: int = 0):
        from cuda.bindings import runtime as cudart

        self.rt = cudart
        self.device = device
        self._host: list = []
        self._dev: list = []
        self._streams: list = []
        self.set_device()

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def set_device(self) -> None:
        self._check(self.rt.cudaSetDevice(self.device))

    def device_info(self) -> tuple[str, str]:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device))
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    def driver_version(self) -> str:
        v = int(self._check(self.rt.cudaDriverGetVersion()))
        return f"{v // 1000}.{(v % 1000) // 10}"

    def stream(self):
        s = self._check(self.rt.cudaStreamCreate())
        self._streams.append(s)
        return s

    @staticmethod
    def handle(stream) -> int:
        return native_handle(stream)

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
        """Destroy the streams and free every buffer (idempotent)."""
        for s in self._streams:
            self.rt.cudaStreamDestroy(s)
        for p in self._dev:
            self.rt.cudaFree(p)
        for p in self._host:
            self.rt.cudaFreeHost(p)
        self._streams, self._dev, self._host = [], [], []


class TorchCuda:
    """The same calls through torch.cuda: pinned and device uint8 tensors (addressed by pointer), a torch stream."""

    kind = "torch.cuda"

    def __init__(self, device: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch reports no CUDA device")
        self.torch = torch
        self.device = torch.device("cuda", device)
        self._tensors: dict[int, object] = {}  # data pointer → tensor (host pinned or device)
        self._host_maps: dict[tuple, object] = {}
        self._streams: list = []
        self.set_device()

    def set_device(self) -> None:
        self.torch.cuda.set_device(self.device)

    def device_info(self) -> tuple[str, str]:
        p = self.torch.cuda.get_device_properties(self.device)
        return p.name, f"{p.major}.{p.minor}"

    def driver_version(self) -> str:
        get = getattr(self.torch._C, "_cuda_getDriverVersion", None)
        if get is None:
            return "unknown"
        v = int(get())
        return f"{v // 1000}.{(v % 1000) // 10}"

    def stream(self):
        s = self.torch.cuda.Stream(self.device)
        self._streams.append(s)
        return s

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

    def reduce(self, ptr: int, shape: tuple, dtype, hw: tuple[int, int], stream) -> tuple[np.ndarray, ...]:
        """Arg-max labels, confidence and entropy of the first image of the probabilities at ``ptr`` (``shape``,
        ``dtype``), cropped to ``hw``, computed on the device; only those maps come back (pinned, reused)."""
        from copilot.inference.torch_backend import reduce_on_device

        torch = self.torch
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        tdtype = torch.float16 if np.dtype(dtype) == np.float16 else torch.float32
        with torch.cuda.stream(stream):
            probs = self._tensors[ptr][:nbytes].view(tdtype).reshape(shape)[0, :, :hw[0], :hw[1]].float()
            maps = reduce_on_device(probs)
            host = []
            for i, t in enumerate(maps):
                key = ("reduce", i, tuple(t.shape), t.dtype)
                if key not in self._host_maps:
                    self._host_maps[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                host.append(self._host_maps[key].copy_(t, non_blocking=True))
        stream.synchronize()
        return tuple(h.numpy().copy() for h in host)

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        with self.torch.cuda.stream(stream):
            self._tensors[dst][:nbytes].copy_(self._tensors[src.ctypes.data][:nbytes], non_blocking=True)

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        with self.torch.cuda.stream(stream):
            self._tensors[dst.ctypes.data][:nbytes].copy_(self._tensors[src][:nbytes], non_blocking=True)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def close(self) -> None:
        for s in self._streams:
            try:
                s.synchronize()  # nothing may still write into the buffers about to be released
            except Exception as exc:  # noqa: BLE001 — after a device fault; closing must not hide the first error
                log.warning("synchronizing a stream while closing failed: %s", exc)
        self._tensors.clear()
        self._host_maps.clear()
        self._streams = []


def cuda_binding(device: int = 0):
    """torch.cuda when torch sees a GPU (it can also reduce the output on the device: ``TorchCuda.reduce``), else
    cuda-python; raises with both reasons when neither works."""
    errors = []
    for cls in (TorchCuda, CudaPython):
        try:
            return cls(device)
        except Exception as exc:  # ImportError, no device, driver mismatch
            errors.append(f"{cls.kind}: {type(exc).__name__}: {exc}")
    raise RuntimeError("no usable CUDA runtime binding (" + "; ".join(errors) + ")")


# -- build ------------------------------------------------------------------------------------------------------
FP32_REDUCTIONS = ("ReduceMean", "GlobalAveragePool")  # spatial means: 4 M pixels summed in float16 lose the embedding


def fp16_onnx(onnx_path: Path) -> bytes:
    """model.onnx with float16 weights and arithmetic, float32 inputs/outputs (Casts at both ends).

    Strongly typed networks run in the precision the graph says (weak typing and ``BuilderFlag.FP16`` are deprecated
    since TensorRT 10.12 and gone in 11). NVIDIA's route is ModelOpt AutoCast; this graph (Conv, Relu, MaxPool,
    Resize, Add, reductions, Exp, Div) needs far less: every float initializer and constant becomes float16, except
    Resize's ``roi``/``scales`` inputs, which the operator requires in float32; spatial means (``FP32_REDUCTIONS``)
    run on a float32 copy of their input, so the pooled embedding is accumulated in float32. Needs ``onnx``.
    Changing what this writes must bump ``trt_plan.FP16_CONVERSION_VERSION``.
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
    float_outputs = {o.name for o in g.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    nodes, fp32_outputs = [], set()
    for node in g.node:  # spatial means in float32
        if node.op_type not in FP32_REDUCTIONS:
            nodes.append(node)
            continue
        src, out = node.input[0], node.output[0]
        nodes.append(helper.make_node("Cast", [src], [f"{src}__fp32"], to=TensorProto.FLOAT))
        node.input[0] = f"{src}__fp32"
        nodes.append(node)
        if out in float_outputs:
            fp32_outputs.add(out)
        else:
            node.output[0] = f"{out}__fp32"
            nodes.append(helper.make_node("Cast", [f"{out}__fp32"], [out], to=TensorProto.FLOAT16))
    del g.node[:]
    g.node.extend(nodes)
    casts_in = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        new = f"{inp.name}__fp16"
        for node in g.node:
            if node.op_type == "Cast" and node.output[0].endswith("__fp32"):
                continue  # a float32 reduction reading the input directly keeps reading float32
            node.input[:] = [new if x == inp.name else x for x in node.input]
        casts_in.append(helper.make_node("Cast", [inp.name], [new], to=TensorProto.FLOAT16))
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT or out.name in fp32_outputs:
            continue
        new = f"{out.name}__fp16"
        for node in g.node:
            node.output[:] = [new if x == out.name else x for x in node.output]
            node.input[:] = [new if x == out.name else x for x in node.input]
        g.node.append(helper.make_node("Cast", [new], [out.name], to=TensorProto.FLOAT))
    for i, c in enumerate(casts_in):
        g.node.insert(i, c)
    del g.value_info[:]
    return model.SerializeToString()


def network_bytes(card: ModelCard, folder: Path, precision: str) -> bytes:
    """The ONNX bytes a plan of ``precision`` is built from: one strongly typed route for every TensorRT version
    (the float16 graph for fp16, the file itself for fp32)."""
    if precision == "fp16":
        return fp16_onnx(card.model_path(folder))
    if precision == "fp32":
        return card.model_path(folder).read_bytes()
    raise NotImplementedError(f"{precision} plans are not built: use precision fp16 or fp32 (see trt_backend)")


class BuildProgress:
    """TensorRT's progress callbacks → a rich Progress. Never raises into TensorRT (a Python exception in a callback
    cancels the build with only "build failed"): the first error is kept, the display stops, the build goes on."""

    def __init__(self, progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.error: BaseException | None = None

    def _guard(self, fn, *args) -> None:
        if self.error is not None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 — see the class docstring
            self.error = exc
            log.warning("TensorRT progress display failed (%s: %s); the build goes on", type(exc).__name__, exc)

    def phase_start(self, phase_name, parent_phase, num_steps) -> None:
        def start():
            indent = "  " if parent_phase else ""
            self.tasks[phase_name] = self.progress.add_task(f"{indent}{phase_name}", total=max(int(num_steps), 1))
        self._guard(start)

    def step_complete(self, phase_name, step) -> bool:
        def step_done():
            if phase_name in self.tasks:
                self.progress.update(self.tasks[phase_name], completed=int(step) + 1)
        self._guard(step_done)
        return True  # False would cancel the build

    def phase_finish(self, phase_name) -> None:
        def finish():
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                self.progress.remove_task(task)
        self._guard(finish)


def _progress_monitor(trt, progress) -> tuple[object, BuildProgress]:
    """A TensorRT IProgressMonitor delegating to :class:`BuildProgress`."""
    display = BuildProgress(progress)

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            display.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return display.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            display.phase_finish(phase_name)

    return Monitor(), display


def checked(ok, what: str) -> None:
    """TensorRT reports many failures as a False return value, not an exception: make them errors."""
    if ok is False or ok is None:
        raise RuntimeError(f"TensorRT rejected {what}")


def _set_timing_cache(config, cache_bytes: bytes) -> None:
    """Use the stored timing cache; one TensorRT rejects (another version, corrupt) is replaced by an empty one."""
    if cache_bytes:
        if config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False):
            return
        log.warning("TensorRT rejected the stored timing cache (%d bytes); starting an empty one", len(cache_bytes))
    checked(config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False), "an empty timing cache")


def build_plan(card: ModelCard, folder: Path, key: PlanKey, plan_path: Path, timing_cache: Path, *,
               console=None) -> Path:
    """Parse model.onnx, build a serialized plan for ``key`` and write it (and the updated timing cache) atomically."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    trt = import_tensorrt()
    recipe = key.recipe or BuildRecipe.for_precision(key.precision)
    onnx_bytes = network_bytes(card, folder, key.precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if strongly is not None:  # required for the float16 graph on 10.x; accepted and ignored on 11.x
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {card.model_path(folder)}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_bytes)
    if not recipe.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # true FP32: TensorRT enables TF32 by default
    _set_timing_cache(config, timing_cache.read_bytes() if timing_cache.is_file() else b"")
    for p in key.profiles:
        prof = builder.create_optimization_profile()
        prof.set_shape(card.outputs.input, p.min, p.opt, p.max)
        checked(config.add_optimization_profile(prof) >= 0, f"optimization profile {p}")
    console = console or Console(stderr=True)
    display = None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        overall = progress.add_task(f"building TensorRT plan ({key.precision}, {len(key.profiles)} profiles)",
                                    total=None)
        if hasattr(trt, "IProgressMonitor"):
            monitor, display = _progress_monitor(trt, progress)
            config.progress_monitor = monitor  # must outlive the build
        serialized = builder.build_serialized_network(network, config)
        progress.remove_task(overall)
    if serialized is None:
        why = f"; the progress display had failed first: {display.error!r}" if display and display.error else ""
        raise RuntimeError(f"TensorRT build failed (see the TensorRT log above){why}")
    atomic_write(plan_path, bytes(serialized))
    atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    console.print(f"TensorRT plan written: {plan_path} ({plan_path.stat().st_size / 2**20:.1f} MiB)")
    return plan_path


# -- run --------------------------------------------------------------------------------------------------------
def check_io_tensors(cuda_engine, card: ModelCard, trt) -> None:
    """The plan's I/O tensors must be exactly the card's input (INPUT) and its two outputs (OUTPUT); otherwise
    buffers would be bound by the wrong names and TensorRT would read or write garbage."""
    found = {}
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        found[name] = cuda_engine.get_tensor_mode(name)
    out = card.outputs
    expected = {out.input: trt.TensorIOMode.INPUT, out.probabilities: trt.TensorIOMode.OUTPUT,
                out.embedding: trt.TensorIOMode.OUTPUT}
    problems = [f"{n!r} missing" for n in expected if n not in found]
    problems += [f"{n!r} is {found[n]}, expected {m}" for n, m in expected.items() if n in found and found[n] != m]
    problems += [f"unexpected {n!r}" for n in found if n not in expected]
    if problems:
        raise ValueError(f"the plan's I/O tensors {sorted(found)} do not match card.json's outputs "
                         f"({', '.join(problems)})")


def _profile_memory(cuda_engine, index: int) -> int:
    """Activation memory one execution context needs for profile ``index`` (TensorRT ≥ 10.1 names, then older)."""
    for name in ("get_device_memory_size_for_profile_v2", "get_device_memory_size_for_profile"):
        fn = getattr(cuda_engine, name, None)
        if fn is not None:
            return int(fn(index))
    return int(getattr(cuda_engine, "device_memory_size_v2", None) or cuda_engine.device_memory_size)


def _set_device_memory(ctx, ptr: int, size: int) -> None:
    setter = getattr(ctx, "set_device_memory", None)
    if setter is not None:
        checked(setter(ptr, size) is not False, "the shared activation memory")
    else:
        ctx.device_memory = ptr


class TensorRTBackend(NetworkBackend):
    """Runs a serialized plan. Use :func:`load_tensorrt` (cache, build, verification) rather than this directly.

    One execution context per profile, all sharing one activation buffer (user-managed memory: they run one at a
    time on one stream) and one set of pinned/device I/O buffers sized for the largest profile. The CUDA device is
    set in whichever thread runs inference. A failure part-way through initialisation frees everything allocated
    so far. ``trt`` and ``cuda_engine`` (a deserialized ``ICudaEngine``) can be given, which tests use.
    """

    name = "tensorrt"

    def __init__(self, card: ModelCard, folder: Path, plan_path: Path, profiles: tuple[Profile, ...], *,
                 device: int = 0, cuda=None, trt=None, cuda_engine=None):
        super().__init__(card, folder, max_whole_px=max(p.tile_px for p in profiles),
                         tile_px=max(p.tile_px for p in profiles), tile_batch=1)
        self.trt = trt or import_tensorrt()
        self.profiles = tuple(profiles)
        self.plan_path = Path(plan_path)
        self.contexts: list = []
        self.buffers: dict = {}
        self.cuda_engine = None
        self._lock = threading.Lock()
        self.cuda = cuda or cuda_binding(device)
        try:
            self._init(cuda_engine)
        except BaseException:
            self.close()
            raise

    def _init(self, cuda_engine) -> None:
        trt, card = self.trt, self.card
        self._device = PerThreadDevice(self.cuda.set_device)
        if cuda_engine is None:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self.runtime = trt.Runtime(self._logger)
            cuda_engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if cuda_engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {self.plan_path}")
        self.cuda_engine = cuda_engine
        check_io_tensors(cuda_engine, card, trt)
        if cuda_engine.num_optimization_profiles != len(self.profiles):
            raise ValueError(f"{self.plan_path} has {cuda_engine.num_optimization_profiles} optimization profiles, "
                             f"expected {len(self.profiles)}")
        self.stream = self.cuda.stream()
        self._h = self.cuda.handle(self.stream)
        out = card.outputs
        self.io = {"input": out.input, "probabilities": out.probabilities, "embedding": out.embedding}
        self.dtypes = {k: np.dtype(trt.nptype(cuda_engine.get_tensor_dtype(v))) for k, v in self.io.items()}
        scratch = max(_profile_memory(cuda_engine, i) for i in range(len(self.profiles)))
        self._scratch = self.cuda.device_buffer(scratch) if scratch else 0
        user_managed = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        for i in range(len(self.profiles)):
            ctx = cuda_engine.create_execution_context(user_managed)
            if ctx is None:
                raise RuntimeError(f"TensorRT could not create an execution context for profile {i}")
            self.contexts.append(ctx)
            _set_device_memory(ctx, self._scratch, scratch)
            checked(ctx.set_optimization_profile_async(i, self._h), f"optimization profile {i}")
        n_cls, dim = len(card.class_names), out.embedding_dim
        px = max(p.max[0] * p.max[2] * p.max[3] for p in self.profiles)
        n = max(p.max[0] for p in self.profiles)
        for k, count in (("input", px), ("probabilities", px * n_cls), ("embedding", n * dim)):
            nbytes = count * self.dtypes[k].itemsize
            self.buffers[k] = (self.cuda.pinned(nbytes), self.cuda.device_buffer(nbytes))
        self.cuda.synchronize(self.stream)

    def run_path(self, h: int, w: int) -> tuple[str, int, int]:
        """("whole", profile edge, 1) or ("tiled", tile edge, tiles per call) for an h × w working-grid image."""
        plan: RunPlan = plan_run(self.profiles, h, w, self.card.tiling.multiple_of)
        return plan.mode, plan.tile_px, plan.batch

    def verification_sizes(self) -> list[int]:
        """One square working-grid edge per shape class: whole on every profile, and tiled."""
        return list(shape_classes(self.profiles, self.card.tiling.multiple_of).values())

    def infer(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mode, tile, batch = self.run_path(*img.shape)
        if mode == "whole":
            return self.run_network(img)
        return self.run_tiled(img, tile, batch)

    def segment(self, frame):
        """With a CUDA binding that can reduce on the device (torch.cuda), a frame that runs whole gets its labels,
        confidence and entropy computed on the GPU from the output still there; otherwise the shared path."""
        reduce = getattr(self.cuda, "reduce", None)
        if reduce is None:
            return super().segment(frame)
        from copilot.inference.tiling import pad_to_multiple
        from copilot.inference.torch_backend import device_segmentation

        img, scale = self.prepare(frame)
        if wants_native_pass(self.card, frame, scale):
            return super().segment(frame)
        h, w = img.shape
        card = self.card
        common = dict(frame=frame, class_names=tuple(card.class_names), model_name=card.name,
                      model_version=card.version, backend=self.name, frame_px_per_px=scale, task=card.task)
        mode, tile, batch = self.run_path(h, w)
        if mode != "whole":
            probs, emb = self.run_tiled(img, tile, batch)
            return Segmentation(probabilities=probs, embedding=emb, **common)
        padded, _ = pad_to_multiple(img, card.tiling.multiple_of)
        x = np.ascontiguousarray(padded[None, None], dtype=np.float32)
        i = choose_profile(self.profiles, 1, *x.shape[2:])
        self._device.ensure()
        with self._lock:
            probs, emb = self._run(self.contexts[i], x)
            labels, conf, entropy = reduce(self.buffers["probabilities"][1], probs.shape,
                                           self.dtypes["probabilities"], (h, w), self.stream)
        return device_segmentation(probabilities=probs[0, :, :h, :w], embedding=emb.reshape(-1), labels=labels,
                                   confidence=conf, entropy=entropy, **common)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, _, h, w = x.shape
        i = choose_profile(self.profiles, n, h, w)
        if i is None:
            raise ValueError(f"no optimization profile takes an input of shape {x.shape}")
        self._device.ensure()
        with self._lock:
            return self._run(self.contexts[i], x)

    def _run(self, ctx, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        name_in = self.io["input"]
        checked(ctx.set_input_shape(name_in, tuple(x.shape)), f"input shape {tuple(x.shape)} for {name_in!r}")
        out_shapes = {k: tuple(ctx.get_tensor_shape(self.io[k])) for k in ("probabilities", "embedding")}
        host_in, dev_in = self.buffers["input"]
        x = x.astype(self.dtypes["input"], copy=False)
        np.copyto(host_in[: x.nbytes].view(self.dtypes["input"]).reshape(x.shape), x)
        self.cuda.h2d(dev_in, host_in, x.nbytes, self.stream)
        for k, name in self.io.items():
            checked(ctx.set_tensor_address(name, self.buffers[k][1]), f"the address of {name!r}")
        checked(ctx.execute_async_v3(self._h), "execute_async_v3")
        sizes = {}
        for k, shape in out_shapes.items():
            host, dev = self.buffers[k]
            sizes[k] = int(np.prod(shape)) * self.dtypes[k].itemsize
            self.cuda.d2h(host, dev, sizes[k], self.stream)
        self.cuda.synchronize(self.stream)
        probs, emb = (self.buffers[k][0][: sizes[k]].view(self.dtypes[k]).reshape(out_shapes[k]).astype(np.float32)
                      for k in ("probabilities", "embedding"))  # astype copies out of the reused pinned buffer
        return probs, emb.reshape(n, -1)

    def close(self) -> None:
        """Free the contexts, buffers and stream (idempotent; also after a failed initialisation)."""
        self.contexts, self.buffers, self.cuda_engine = [], {}, None
        if self.cuda is not None:
            self.cuda.close()

    def describe(self) -> dict:
        return {**super().describe(), "plan": str(self.plan_path), "cuda": self.cuda.kind,
                "profiles": [p.max for p in self.profiles]}


def plan_key(card: ModelCard, precision: str, profiles: tuple[Profile, ...], cuda, *,
             workspace_bytes: int = 2 << 30) -> PlanKey:
    trt = import_tensorrt()
    gpu, cc = cuda.device_info()
    return PlanKey(card.model_sha256, trt.__version__, gpu, cc, precision, tuple(profiles),
                   driver_version=cuda.driver_version(),
                   recipe=BuildRecipe.for_precision(precision, workspace_bytes))


def load_tensorrt(card: ModelCard, folder: Path, *, state_dir: Path, precision: str = "fp16",
                  profiles: tuple[Profile, ...] | None = None, rebuild: bool = False, device: int = 0,
                  tile_batch: int = 1, reference=None, frames=None, console=None) -> TensorRTBackend:
    """A verified TensorRT backend for ``card``: the cached plan (re-checked on a few frames), or a new build
    verified against ORT CPU on every shape class.

    Raises ImportError/RuntimeError when TensorRT or CUDA is missing or keeps failing, and :class:`BackendRefused`
    when the plan's output disagrees with ONNX Runtime; callers fall back (``select.load_backend``).
    """
    from copilot.inference.ort_backend import OrtBackend
    from copilot.inference.verify import load_verified_build, validation_frames

    import_tensorrt()  # the clearer error first
    profiles = profiles or default_profiles(card.tiling.tile_px, card.tiling.multiple_of, tile_batch=tile_batch)
    cuda = cuda_binding(device)
    key = plan_key(card, precision, profiles, cuda)
    plan = key.plan_path(state_dir, card.name)
    classes = shape_classes(profiles, card.tiling.multiple_of)
    if frames is None:
        frames, _ = validation_frames(card, sizes=[card.tiling.tile_px] * 8 + list(classes.values()))
    recheck, _ = validation_frames(card, sizes=[card.tiling.tile_px] * 2 + sorted(classes.values())[1:2])

    def load(path):
        return TensorRTBackend(card, folder, path, profiles, device=device, cuda=cuda)

    backend, _ = load_verified_build(
        artifact=plan,
        record_path=key.record_path(state_dir, card.name),
        key=key.to_dict(),
        build=lambda: build_plan(card, folder, key, plan, key.timing_cache_path(state_dir), console=console),
        load=load,
        reference=reference or (lambda: OrtBackend(card, folder, threads=2)),
        rebuild=rebuild,
        frames=frames,
        recheck_frames=recheck,
    )
    return backend


def from_name(name_or_path: str | Path, **kwargs) -> TensorRTBackend:
    card, folder = load_card(name_or_path)
    return load_tensorrt(card, folder, **kwargs)
