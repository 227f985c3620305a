"""SocketSource: frames pushed over ZeroMQ (PULL) by the instrument side, as ``[JSON header, raw pixels]``.

The wire format is defined in :mod:`copilot.sources.wire` and documented in ``adapters/WIRE.md``. A message that
fails validation is counted (``rejected``, with ``last_reject_reason``) and logged, never fatal. Good messages
become a :class:`Frame` (pixels are a read-only, zero-copy view of the received buffer) in ``Arrival(frame=...)``.

Size limits work at two levels. The header's declared size (``shape`` x itemsize) is checked against ``max_bytes``
and counted as a rejection. ``ZMQ_MAXMSGSIZE`` is set as well, so a *part* larger than ``max_bytes`` is never even
allocated: libzmq drops it and disconnects that peer (the pusher's socket reconnects by itself). Such drops happen
inside libzmq and cannot be counted here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from copilot.errors import InvalidMessage, RefusedFrame
from copilot.frame import Frame
from copilot.readers.limits import InputLimits, checked_pixels
from copilot.sources.base import Arrival, Emit
from copilot.sources.wire import MAX_HEADER_BYTES, decode_message

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5557"


class SocketSource:
    """Receive frames on a ZeroMQ PULL socket (bound to 127.0.0.1 by default).

    ``endpoint`` may use a wildcard port (``tcp://127.0.0.1:*``); after :meth:`start` the attribute ``endpoint``
    holds the address actually bound. ``bind=False`` connects instead (to a pusher that binds).
    ``rcvhwm`` bounds the frames queued in this process: when the pipeline is slower than the instrument, TCP
    flow control pushes back on the sender instead of this process buffering gigabytes.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        bind: bool = True,
        max_bytes: int = 512 * 2**20,
        stream_default: str = "socket",
        rcvhwm: int = 4,
        poll_timeout_s: float = 0.1,
        context: zmq.Context | None = None,
        security=None,
        limits: InputLimits | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.endpoint = endpoint
        self.bind = bind
        self.max_bytes = int(max_bytes)
        self.stream_default = stream_default
        self.rcvhwm = rcvhwm
        self.poll_timeout_s = poll_timeout_s
        self._context = context  # None: a private context, terminated by stop() so the port is free on return
        self._own_context: zmq.Context | None = None
        self.security = security  # copilot.security.ServerSecurity: CURVE, allow-listed pushers only
        self.limits = limits or InputLimits()
        self._socket: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._emit: Emit | None = None
        self._run_tag = time.strftime("%Y%m%dT%H%M%S")
        self._last_warning = 0.0
        self._suppressed = 0
        # counters (written by the receive thread only)
        self.received = 0
        self.accepted = 0
        self.rejected = 0
        self.last_reject_reason: str | None = None

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError("SocketSource already started")
        self._emit = emit
        if self._context is None:
            self._own_context = zmq.Context()
        ctx = self._context or self._own_context
        sock = ctx.socket(zmq.PULL)
        try:
            if self.security is not None:
                self.security.apply(sock)
            # Per-part limit; the header may need up to MAX_HEADER_BYTES even when max_bytes is tiny.
            sock.setsockopt(zmq.MAXMSGSIZE, max(self.max_bytes, MAX_HEADER_BYTES))
            sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
            sock.setsockopt(zmq.LINGER, 0)
            if self.bind:
                sock.bind(self.endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                sock.connect(self.endpoint)
        except Exception:
            sock.close(linger=0)
            self._release_context()
            raise
        self._socket = sock
        # The socket is handed to the receive thread here and used by that thread only from now on.
        self._thread = threading.Thread(target=self._run, name=f"SocketSource({self.endpoint})", daemon=True)
        self._thread.start()
        log.info("%s %s for frames (max %d bytes)", "listening on" if self.bind else "connected to",
                 self.endpoint, self.max_bytes)

    def stop(self) -> None:
        """Stop receiving; on return the bound port can be bound again (closing a ZeroMQ socket alone is
        asynchronous, terminating the context it lived in is not)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._release_context()

    def _release_context(self) -> None:
        ctx, self._own_context = self._own_context, None
        if ctx is None:
            return
        if self.security is not None:
            self.security.release(ctx)  # its ZAP handler holds a socket in ctx
        ctx.term()

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "last_reject_reason": self.last_reject_reason,
        }

    # ------------------------------------------------------------------------------------------ receive thread

    def _run(self) -> None:
        sock = self._socket
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        timeout_ms = max(1, int(self.poll_timeout_s * 1000))
        try:
            while not self._stopping.is_set():
                if not poller.poll(timeout_ms):
                    continue
                while not self._stopping.is_set():
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._handle(parts)
                    except Exception as exc:  # no message may stop the receive thread
                        log.exception("message on %s could not be handled", self.endpoint)
                        self._reject(f"{type(exc).__name__}: {exc}")
        except zmq.ContextTerminated:
            log.warning("ZeroMQ context terminated; %s stops", self.endpoint)
        finally:
            sock.close(linger=0)

    def _handle(self, parts: list[zmq.Frame]) -> None:
        self.received += 1
        arrived_at = time.time()
        try:
            header, pixels = decode_message([p.buffer for p in parts], max_bytes=self.max_bytes)
            stream = header.stream or self.stream_default
            frame_id = header.frame_id or f"{self._run_tag}-{self.received:06d}"
            pixels, notes = checked_pixels(pixels, f"{self.endpoint}/{stream}/{frame_id}", self.limits)
            extra: dict[str, Any] = {}
            if header.acquired_at is not None:
                extra["acquired_at"] = header.acquired_at
            frame = Frame(
                pixels=pixels,
                nm_per_px=header.nm_per_px,
                stream=stream,
                frame_id=frame_id,
                origin=f"{self.endpoint}/{stream}/{frame_id}",
                calibration_source="socket" if header.nm_per_px is not None else "none",
                meta={**header.meta, **notes},
                **extra,
            )
        except RefusedFrame as exc:
            self._reject(exc.reason)
            return
        except (InvalidMessage, ValueError) as exc:
            self._reject(str(exc))
            return
        self.accepted += 1
        assert self._emit is not None
        try:
            self._emit(Arrival(origin=frame.origin, frame=frame, arrived_at=arrived_at, completed_at=arrived_at))
        except Exception:
            log.exception("emit failed for %s", frame.origin)

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.last_reject_reason = reason
        now = time.monotonic()
        if now - self._last_warning >= 1.0:  # a flood of bad messages must not flood the log
            more = f" (+{self._suppressed} more since last report)" if self._suppressed else ""
            log.warning("rejected message on %s: %s%s", self.endpoint, reason, more)
            self._last_warning, self._suppressed = now, 0
        else:
            self._suppressed += 1
