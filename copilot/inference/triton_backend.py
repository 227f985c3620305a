"""The ``triton`` backend: the network runs on a shared server that speaks the Open Inference Protocol (KServe v2).

Everything but the network stays here (``NetworkBackend``: resampling, normalization, padding, tiling and blending),
so a frame segmented remotely differs from a local one only by the server's arithmetic. The client is
``tritonclient`` (gRPC by default, HTTP as option); the server is Triton in production (``copilot engines
export-triton`` writes its model repository) or any other V2 server (MLServer with ``adapters/mlserver_onnx``).

When the server is down or slow a request is retried with exponential backoff. Without a fallback the frame waits
(up to ``max_wait_s``, then it fails with a clear error and the pipeline records it); with ``fallback = "local"``
it runs on ONNX Runtime CPU after ``retries`` attempts, and the result's ``model.backend`` says
``onnxruntime-cpu (fallback: triton unavailable)``. ``status()`` says how the server is doing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from copilot.errors import CopilotError
from copilot.frame import Frame
from copilot.inference.card import ModelCard
from copilot.inference.network import NetworkBackend
from copilot.inference.segmentation import Backend, Segmentation
from copilot.inference.triton_repo import triton_version
from copilot.inference.triton_settings import TritonSettings

log = logging.getLogger(__name__)

# gRPC status codes (and HTTP codes) that mean "the server is not there or not keeping up": worth another try
_RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "ABORTED", "502", "503", "504")


class RemoteUnavailable(CopilotError):
    """The inference server did not answer (down, unreachable or too slow) within the configured patience."""


class RemoteModelError(CopilotError):
    """The server answers but cannot run this model: unknown name or version, wrong inputs or outputs."""


def _read(path: Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _retryable(exc: Exception) -> bool:
    from tritonclient.utils import InferenceServerException

    if not isinstance(exc, InferenceServerException):
        return isinstance(exc, (OSError, TimeoutError)) or type(exc).__module__.startswith(("gevent", "geventhttp"))
    status = str(exc.status() or "")
    text = str(exc.message() or "")
    return any(code in status for code in _RETRYABLE) or "failed to connect" in text.lower() \
        or ("timeout" in text.lower() or "deadline" in text.lower())


class TritonBackend(NetworkBackend):
    """Segments frames with a model served over the Open Inference Protocol.

    ``local``: a factory for the fallback backend (ONNX Runtime CPU), used only when ``settings.fallback ==
    "local"``. The model's presence, inputs and outputs are checked against the card on start when the server is
    up (``RemoteModelError`` if they do not fit); a server that is down on start is checked on its first answer.
    """

    name = "triton"

    def __init__(self, card: ModelCard, folder: Path | None, settings: TritonSettings | None = None, *,
                 max_whole_px: int = 2048, local: Callable[[], Backend] | None = None):
        s = settings or TritonSettings()
        super().__init__(card, folder, max_whole_px=max_whole_px, tile_px=card.tiling.tile_px, tile_batch=s.tile_batch)
        self.settings = s
        self.model_name = s.model_name or card.name
        self.model_version = triton_version(card.version) if s.model_version is None else s.model_version
        self._local_factory = local if s.fallback == "local" else None
        self._local: Backend | None = None
        self._lock = threading.Lock()
        self._checked = False
        self._down_since: float | None = None
        self._skip_until = 0.0
        self.requests = 0
        self.retries = 0
        self.fallbacks = 0
        self.batched_with_others = 0  # requests the server ran together with other clients' requests
        self.largest_server_batch = 0
        self.last_server_compute_ms: float | None = None  # the network's time on the server, where it says
        self.last_error: str | None = None
        self.client = self._connect()
        self._headers = dict(s.headers)
        if s.token_env:
            token = os.environ.get(s.token_env)
            if not token:
                raise RemoteModelError(f"triton.token_env: environment variable {s.token_env} is not set")
            self._headers["Authorization"] = f"Bearer {token}"
        try:
            self.check_model()
        except RemoteModelError:
            self.close()  # no channel left reconnecting behind a refused backend
            raise
        except RemoteUnavailable as exc:
            self._mark_down(exc)
            log.warning("triton: %s; frames will %s", exc,
                        "run locally until it is back" if self._local_factory else "wait for it")

    # -- connection ------------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.settings.protocol}://{self.settings.url} model {self.model_name!r} version " \
               f"{self.model_version or 'latest'!r}"

    def _connect(self):
        s = self.settings
        if s.protocol == "grpc":
            import tritonclient.grpc as tc

            channel = [
                ("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30),
                ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                # a restarted server is found within a second, not after gRPC's default backoff (up to 2 min)
                ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ]
            return tc.InferenceServerClient(
                s.url, ssl=s.ssl, root_certificates=str(s.root_certificates) if s.root_certificates else None,
                private_key=str(s.private_key) if s.private_key else None,
                certificate_chain=str(s.certificate_chain) if s.certificate_chain else None, channel_args=channel)
        import tritonclient.http as tc

        ssl_options = {}
        if s.root_certificates:
            ssl_options["ca_certs"] = str(s.root_certificates)
        if s.private_key:
            ssl_options["keyfile"] = str(s.private_key)
        if s.certificate_chain:
            ssl_options["certfile"] = str(s.certificate_chain)
        return tc.InferenceServerClient(s.url, ssl=s.ssl, ssl_options=ssl_options or None,
                                        connection_timeout=s.connect_timeout_s, network_timeout=s.timeout_s)

    def _call(self, fn, *args, **kwargs):
        """One client call; connection problems become RemoteUnavailable, anything else RemoteModelError."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # tritonclient raises its own exception, gRPC/gevent/socket errors
            if _retryable(exc):
                raise RemoteUnavailable(f"{self.where}: {_describe(exc)}") from exc
            raise RemoteModelError(f"{self.where}: {_describe(exc)}") from exc

    def check_model(self) -> None:
        """The server has this model (and version), with the card's input and outputs."""
        kw = {"headers": self._headers or None}
        if self.settings.protocol == "grpc":
            kw["client_timeout"] = self.settings.connect_timeout_s
        live = self._call(self.client.is_server_live, **kw)
        if not live:
            raise RemoteUnavailable(f"{self.where}: server is not live")
        try:
            ready = self._call(self.client.is_model_ready, self.model_name, self.model_version, **kw)
        except RemoteModelError:  # some servers answer "not found" with an error instead of False
            ready = False
        if not ready:
            names = self._model_names(kw)
            raise RemoteModelError(f"{self.where}: the server has no ready model {self.model_name!r} version "
                                   f"{self.model_version or 'latest'!r} (it serves: {', '.join(names) or 'nothing'})")
        md = self._call(self.client.get_model_metadata, self.model_name, self.model_version, **kw)
        if not isinstance(md, dict):
            from google.protobuf.json_format import MessageToDict

            md = MessageToDict(md, preserving_proto_field_name=True)
        self._check_metadata(md)
        self._checked = True

    def _model_names(self, kw) -> list[str]:
        try:
            index = self.client.get_model_repository_index(**kw)
        except Exception:
            return []
        if not isinstance(index, list):
            index = [{"name": m.name} for m in index.models]
        return sorted({m.get("name", "?") for m in index})

    def _check_metadata(self, md: dict) -> None:
        """Compare the tensors the server declares (servers may declare none) with the card's."""
        o = self.card.outputs
        inputs = {t["name"]: t for t in md.get("inputs", [])}
        outputs = {t["name"]: t for t in md.get("outputs", [])}
        if inputs:
            t = inputs.get(o.input)
            if t is None:
                raise RemoteModelError(f"{self.where}: model input is {sorted(inputs)}, the card says {o.input!r}")
            shape = [int(d) for d in t.get("shape", [])]
            if t.get("datatype", "FP32") != "FP32" or (shape and (len(shape) != 4 or shape[1] not in (1, -1))):
                raise RemoteModelError(f"{self.where}: input {o.input!r} is {t.get('datatype')} {shape}; "
                                       "the card's network takes FP32 [batch, 1, height, width]")
        if outputs:
            missing = [n for n in (o.probabilities, o.embedding) if n not in outputs]
            if missing:
                raise RemoteModelError(f"{self.where}: model has no output {missing} (outputs: {sorted(outputs)})")
            shape = [int(d) for d in outputs[o.probabilities].get("shape", [])]
            if len(shape) == 4 and shape[1] not in (-1, len(self.card.class_names)):
                raise RemoteModelError(f"{self.where}: output {o.probabilities!r} has {shape[1]} classes, the card "
                                       f"{len(self.card.class_names)}")

    # -- the network -----------------------------------------------------------------------------------------
    def _infer_once(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        o = self.card.outputs
        if s.protocol == "grpc":
            import tritonclient.grpc as tc

            inp = tc.InferInput(o.input, list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            outs = [tc.InferRequestedOutput(o.probabilities), tc.InferRequestedOutput(o.embedding)]
            r = self._call(self.client.infer, self.model_name, [inp], model_version=self.model_version, outputs=outs,
                           client_timeout=s.timeout_s, headers=self._headers or None)
        else:
            import tritonclient.http as tc

            inp = tc.InferInput(o.input, list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=s.http_binary)
            outs = [tc.InferRequestedOutput(o.probabilities, binary_data=s.http_binary),
                    tc.InferRequestedOutput(o.embedding, binary_data=s.http_binary)]
            r = self._call(self.client.infer, self.model_name, [inp], model_version=self.model_version, outputs=outs,
                           headers=self._headers or None)
        self._note_server_batch(r, len(x))
        probs = r.as_numpy(o.probabilities)
        emb = r.as_numpy(o.embedding)
        n, _, h, w = x.shape
        want = (n, len(self.card.class_names), h, w)
        if probs is None or emb is None or tuple(probs.shape) != want:
            got = None if probs is None else list(probs.shape)
            raise RemoteModelError(f"{self.where}: answered probabilities of shape {got}, expected {list(want)}")
        return np.asarray(probs, np.float32), np.asarray(emb, np.float32).reshape(n, -1)

    def _note_server_batch(self, result, sent: int) -> None:
        """Servers that report the batch a request ran in (the MLServer adapter does; Triton reports it in its
        statistics instead) let ``status()`` show dynamic batching at work."""
        try:
            resp = result.get_response()
            if isinstance(resp, dict):
                params = resp.get("parameters") or {}
                batch, compute_us = int(params.get("batch_size", 0)), params.get("compute_us")
            else:
                p, c = resp.parameters.get("batch_size"), resp.parameters.get("compute_us")
                batch = int(p.int64_param) if p is not None else 0
                compute_us = c.int64_param if c is not None else None
        except (AttributeError, TypeError, ValueError):
            return
        self.last_server_compute_ms = compute_us / 1e3 if compute_us is not None else None
        if batch > sent:
            self.batched_with_others += 1
        self.largest_server_batch = max(self.largest_server_batch, batch)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send one batch; retry with backoff while the server is unavailable (see the module docstring)."""
        s = self.settings
        if self._local_factory is not None and time.monotonic() < self._skip_until:
            raise RemoteUnavailable(f"{self.where}: still down ({self.last_error})")
        deadline = time.monotonic() + s.max_wait_s
        delay, attempt = s.backoff_s, 0
        while True:
            try:
                if not self._checked:
                    self.check_model()
                self.requests += 1
                out = self._infer_once(x)
                self._mark_up()
                return out
            except RemoteUnavailable as exc:
                self._mark_down(exc)
                attempt += 1
                give_up = (self._local_factory is not None and attempt > s.retries) or \
                    time.monotonic() + delay > deadline
                if give_up:
                    if self._local_factory is not None:
                        self._skip_until = time.monotonic() + s.recheck_s
                    raise RemoteUnavailable(f"{exc} (after {attempt} attempt(s))") from exc
                self.retries += 1
                log.warning("triton: %s; retry %d in %.1f s", exc, attempt, delay)
                time.sleep(delay)
                delay = min(2 * delay, s.backoff_max_s)

    def segment(self, frame: Frame) -> Segmentation:
        try:
            return super().segment(frame)
        except RemoteUnavailable:
            if self._local_factory is None:
                raise
        with self._lock:
            if self._local is None:
                self._local = self._local_factory()
        self.fallbacks += 1
        seg = self._local.segment(frame)
        return dataclasses.replace(seg, backend=f"{self._local.name} (fallback: triton unavailable)")

    def forget_scale(self, stream: str, frame_id: str) -> None:
        super().forget_scale(stream, frame_id)
        getattr(self._local, "forget_scale", lambda *_: None)(stream, frame_id)

    # -- state -----------------------------------------------------------------------------------------------
    def _mark_down(self, exc: Exception) -> None:
        self.last_error = str(exc)
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("triton: server unavailable: %s", exc)

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning("triton: server back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
            self._skip_until = 0.0

    def status(self) -> dict:
        """For the daemon's status heartbeat: ``state`` is ``ok``, ``down`` (frames wait) or ``fallback``."""
        down = self._down_since is not None
        return {
            "backend": self.name, "server": self.where, "state": ("fallback" if self._local_factory else "down")
            if down else "ok", "down_for_s": round(time.monotonic() - self._down_since, 1) if down else 0.0,
            "requests": self.requests, "retries": self.retries, "fallbacks": self.fallbacks,
            "batched_with_others": self.batched_with_others, "largest_server_batch": self.largest_server_batch,
            "last_error": self.last_error,
        }

    def describe(self) -> dict:
        return {**super().describe(), "server": self.where}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client whose server is gone may raise; nothing to release then
            pass
        if self._local is not None:
            getattr(self._local, "close", lambda: None)()


def triton_candidate(card: ModelCard, folder: Path, settings: TritonSettings | None, *, threads: int = 2,
                     max_whole_px: int = 2048):
    """The ``triton`` entry of ``select.candidates``: probe (is tritonclient installed), build, verify, fallback."""
    import importlib.util

    from copilot.inference.ort_backend import OrtBackend
    from copilot.inference.select import Candidate

    s = settings or TritonSettings()

    def probe() -> str | None:
        if importlib.util.find_spec("tritonclient") is None:
            return "tritonclient is not installed (pip install 'microscope-copilot[triton]')"
        return None

    def build() -> TritonBackend:
        backend = TritonBackend(card, folder, s, max_whole_px=max_whole_px,
                                local=lambda: OrtBackend(card, folder, threads=threads, max_whole_px=max_whole_px))
        if backend.status()["state"] != "ok":  # unreachable at start: nothing to verify against yet
            log.warning("triton: server unreachable at start; its answers are not verified this session")
            cand.verify = False
        return backend

    cand = Candidate("triton", probe, build, verify=s.verify, fallback=s.fallback == "local")
    return cand


def _describe(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    text = msg() if callable(msg) else str(exc)
    return f"{type(exc).__name__}: {text}"
