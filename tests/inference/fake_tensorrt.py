"""A stand-in for TensorRT and CUDA on machines without a GPU, for testing TensorRTBackend's own logic.

``FakeCuda`` keeps "device" memory in numpy arrays addressed by integers; ``FakeCudaEngine`` describes a plan the
way ``ICudaEngine`` does (I/O tensor names and modes, profiles, activation memory) and its execution contexts run the
real ONNX model with ONNX Runtime on the CPU, reading and writing that memory at the addresses bound to them — so
a wrong binding, shape or buffer size in the backend gives wrong numbers here as it would on a GPU.
"""

from __future__ import annotations

import enum
import threading
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


FAKE_TRT = SimpleNamespace(
    TensorIOMode=TensorIOMode,
    ExecutionContextAllocationStrategy=SimpleNamespace(USER_MANAGED="user-managed", STATIC="static"),
    nptype=lambda dtype: dtype,
)


class FakeCuda:
    kind = "fake-cuda"

    def __init__(self, fail_at_alloc: int | None = None):
        self.mem: dict[int, np.ndarray] = {}
        self.streams: list = []
        self.device_threads: list[str] = []
        self.allocations = 0
        self.fail_at_alloc = fail_at_alloc
        self._next = 1 << 20

    def set_device(self) -> None:
        self.device_threads.append(threading.current_thread().name)

    def device_info(self):
        return "Fake GPU", "9.0"

    def driver_version(self) -> str:
        return "13.0"

    def stream(self):
        s = object()
        self.streams.append(s)
        return s

    @staticmethod
    def handle(stream) -> int:
        return id(stream)

    def _alloc(self, nbytes: int) -> int:
        self.allocations += 1
        if self.allocations == self.fail_at_alloc:
            raise RuntimeError("CUDA error: out of memory")
        ptr, self._next = self._next, self._next + nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def pinned(self, nbytes: int) -> np.ndarray:
        return self.mem[self._alloc(nbytes)]

    def device_buffer(self, nbytes: int) -> int:
        return self._alloc(nbytes)

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        self.mem[dst][:nbytes] = src[:nbytes]

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        dst[:nbytes] = self.mem[src][:nbytes]

    def synchronize(self, stream) -> None:
        pass

    def close(self) -> None:
        self.mem.clear()
        self.streams.clear()


class FakeContext:
    def __init__(self, cuda_engine: "FakeCudaEngine"):
        self.cuda_engine = cuda_engine
        self.profile = None
        self.memory = None
        self.shape = None
        self.addresses: dict[str, int] = {}
        self.runs: list[tuple[int, ...]] = []
        self.reject_shapes = False
        self.reject_addresses = False

    def set_device_memory(self, ptr: int, size: int) -> None:
        self.memory = (ptr, size)

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        p = self.cuda_engine.profiles[self.profile]
        if self.reject_shapes or name != self.cuda_engine.input or not p.fits(shape[0], shape[2], shape[3]):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str):
        n, _, h, w = self.shape
        plan = self.cuda_engine
        return (n, plan.n_classes, h, w) if name == plan.outputs[0] else (n, plan.dim)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        if self.reject_addresses or name not in self.cuda_engine.io:
            return False
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        mem = self.cuda_engine.cuda.mem
        count = int(np.prod(self.shape))
        x = mem[self.addresses[self.cuda_engine.input]].view(np.float32)[:count].reshape(self.shape)
        outs = self.cuda_engine.session.run(list(self.cuda_engine.outputs), {self.cuda_engine.input: x.copy()})
        for name, value in zip(self.cuda_engine.outputs, outs):
            flat = np.ascontiguousarray(value, np.float32).reshape(-1)
            mem[self.addresses[name]].view(np.float32)[: flat.size] = flat
        self.runs.append(self.shape)
        return True


class FakeCudaEngine:
    """What TensorRTBackend reads from an ICudaEngine, for the card's model run by ONNX Runtime."""

    def __init__(self, card, folder, profiles, cuda: FakeCuda, io: dict | None = None):
        out = card.outputs
        self.input, self.outputs = out.input, (out.probabilities, out.embedding)
        self.io = io or {out.input: TensorIOMode.INPUT, out.probabilities: TensorIOMode.OUTPUT,
                         out.embedding: TensorIOMode.OUTPUT}
        self.n_classes, self.dim = len(card.class_names), out.embedding_dim
        self.profiles = tuple(profiles)
        self.cuda = cuda
        self.session = ort.InferenceSession(str(card.model_path(folder)), providers=["CPUExecutionProvider"])
        self.contexts: list[FakeContext] = []
        self.num_io_tensors = len(self.io)
        self.num_optimization_profiles = len(self.profiles)

    def get_tensor_name(self, i: int) -> str:
        return list(self.io)[i]

    def get_tensor_mode(self, name: str):
        return self.io[name]

    def get_tensor_dtype(self, name: str):
        return np.float32

    def get_device_memory_size_for_profile_v2(self, index: int) -> int:
        return 1000 * (index + 1)

    def create_execution_context(self, strategy):
        assert strategy == "user-managed"
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class ReducingFakeCuda(FakeCuda):
    """FakeCuda that, like the torch.cuda binding, reduces the probabilities where they lie (torch on the CPU here)."""

    def reduce(self, ptr, shape, dtype, hw, stream):
        import torch

        from copilot.inference.torch_backend import reduce_on_device

        count = int(np.prod(shape))
        probs = torch.from_numpy(self.mem[ptr].view(dtype)[:count].reshape(shape)[0, :, :hw[0], :hw[1]].copy())
        return tuple(t.numpy() for t in reduce_on_device(probs))
