"""An MLServer runtime that serves an ONNX file with ONNX Runtime over the Open Inference Protocol (KServe v2).

Stand-alone (needs mlserver, onnxruntime and numpy, not the co-pilot), so it can run on any inference host. It
exists because Triton's server cannot be installed everywhere: the co-pilot's ``triton`` backend speaks the same
protocol to Triton in production and to MLServer with this runtime in tests and small labs.

``model-settings.json`` (``copilot engines export-triton REPO --mlserver`` writes it)::

    {"name": "particles-stem", "implementation": "copilot_mlserver_onnx.OnnxRuntimeModel",
     "parameters": {"uri": "./2000/model.onnx", "version": "2000", "extra": {"threads": 2}},
     "max_batch_size": 8, "max_batch_time": 0.005}

``max_batch_size`` > 1 turns on MLServer's adaptive batching (its counterpart of Triton's dynamic batching):
concurrent requests of the same shape are concatenated along axis 0, run once, and split again.

Start it with this folder on the Python path::

    PYTHONPATH=adapters/mlserver_onnx mlserver start REPO
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters
from mlserver.utils import get_model_uri

_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                 "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8}


class OnnxRuntimeModel(MLModel):
    """Loads ``parameters.uri`` (an .onnx file) once; every request runs all (or the requested) outputs."""

    async def load(self) -> bool:
        path = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(extra.get("threads", 1))
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in extra.get("providers", ["CPUExecutionProvider"]) if p in ort.get_available_providers()]
        self._session = ort.InferenceSession(path, sess_options=opts, providers=providers or ["CPUExecutionProvider"])
        self._inputs = {i.name: i for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    def _feed(self, payload: InferenceRequest) -> dict[str, np.ndarray]:
        feeds = {}
        for given in payload.inputs:
            meta = self._inputs.get(given.name)
            if meta is None:
                raise InferenceError(f"model {self.name} has no input {given.name!r} (inputs: {', '.join(self._inputs)})")
            want = _ORT_TO_NUMPY.get(meta.type)
            arr = NumpyCodec.decode_input(given)
            if want is not None and arr.dtype != want:
                raise InferenceError(f"input {given.name!r}: datatype {given.datatype}, the model takes {meta.type}")
            if len(arr.shape) != len(meta.shape) or any(
                    isinstance(d, int) and d != s for d, s in zip(meta.shape, arr.shape)):
                raise InferenceError(f"input {given.name!r}: shape {list(arr.shape)}, the model takes {meta.shape}")
            feeds[given.name] = np.ascontiguousarray(arr)
        missing = set(self._inputs) - set(feeds)
        if missing:
            raise InferenceError(f"missing input(s): {', '.join(sorted(missing))}")
        return feeds

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = self._feed(payload)
        wanted = [o.name for o in payload.outputs] if payload.outputs else self._outputs
        unknown = [w for w in wanted if w not in self._outputs]
        if unknown:
            raise InferenceError(f"model {self.name} has no output(s) {unknown} (outputs: {', '.join(self._outputs)})")
        # off the event loop, so requests keep arriving (and batching) while the network runs
        t0 = time.perf_counter()
        results = await asyncio.to_thread(self._session.run, wanted, feeds)
        compute_us = int((time.perf_counter() - t0) * 1e6)  # an integer: V2 parameters carry no floats in MLServer
        batch = int(next(iter(feeds.values())).shape[0]) if feeds else 0
        return InferenceResponse(
            model_name=self.name, model_version=self.version,
            # the batch this run saw after adaptive batching, and the network's own time (clients can tell the server's
            # compute from the protocol's and the server's overhead)
            parameters=Parameters(batch_size=batch, compute_us=compute_us),
            outputs=[NumpyCodec.encode_output(name, np.ascontiguousarray(r)) for name, r in zip(wanted, results)],
        )
