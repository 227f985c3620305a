"""Client library: receive result documents (and their label masks) from a co-pilot daemon.

>>> from copilot.publish.subscriber import Subscriber
>>> sub = Subscriber("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")          # doctest: +SKIP
>>> for msg in sub.results(timeout_s=10):                                        # doctest: +SKIP
...     print(msg.stream, msg.doc.frame_id, msg.doc.verdict.level, msg.parts["labels"].max())

Late joiners: when ``snapshot_endpoint`` is given, the subscriber first connects its SUB socket, then asks the
daemon's snapshot socket for the last result of every stream; ``recv`` hands those out first (``from_snapshot``
is true), then live messages. A live result that the snapshot already covered — the same stream and frame id, or
an older one of that stream (``processed_at`` before the snapshot's), published while the snapshot was being
fetched — is dropped, so nobody sees a frame twice or out of order.

Reconnects: ZeroMQ reconnects by itself. If the daemon restarts (same endpoints), the SUB socket reconnects
within ``reconnect_ivl`` and live messages resume; nothing to do on the client side. Messages published while
the link was down are lost (PUB/SUB keeps no history): call :meth:`Subscriber.fetch_snapshot` again to catch up
on the last result per stream. A subscriber that falls behind loses messages beyond ``rcvhwm`` (the daemon
never waits for it).

Residual race: the snapshot is requested once the SUB connection's handshake is done, but the subscription
itself still travels to the publisher asynchronously; a result published in that sub-millisecond window can be
missing from both the snapshot and the live feed (the next frame of that stream repairs the state).
"""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import zmq
from pydantic import ValidationError
from zmq.utils.monitor import recv_monitor_message

from copilot.publish.publisher import COMPRESSED_DTYPES, SNAPSHOT_END, SNAPSHOT_REQUEST
from copilot.document.schema import ResultDocument

log = logging.getLogger(__name__)


class MessageError(ValueError):
    """A message that does not follow the wire format (bad JSON, parts that do not match their description)."""


@dataclass
class Message:
    """One received message. ``doc`` is a ResultDocument on ``result.*`` topics, a dict on the others.

    Arrays in ``parts`` are read-only views on the received buffer; ``.copy()`` one to modify it.
    """

    topic: str
    doc: ResultDocument | dict[str, Any]
    parts: dict[str, np.ndarray | bytes]
    from_snapshot: bool = False

    @property
    def kind(self) -> str:
        """``result``, ``preview``, ``alert`` or ``status``."""
        return self.topic.split(".", 1)[0]

    @property
    def stream(self) -> str | None:
        """The stream named by the topic (``None`` for ``status``)."""
        kind, sep, stream = self.topic.partition(".")
        return stream if sep else None


def decode_parts(descs: Sequence[Any], frames: Sequence[zmq.Frame | bytes]) -> dict[str, np.ndarray | bytes]:
    """Binary frames → arrays (raw dtypes) or bytes (``png``/``jpeg``/``bytes``), checked against descriptions."""
    if len(descs) != len(frames):
        raise MessageError(f"document describes {len(descs)} binary parts, message carries {len(frames)}")
    out: dict[str, np.ndarray | bytes] = {}
    for desc, frame in zip(descs, frames):
        if isinstance(desc, dict):
            name, dtype, shape = desc["name"], desc["dtype"], list(desc["shape"])
        else:
            name, dtype, shape = desc.name, desc.dtype, list(desc.shape)
        buf = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)
        if dtype in COMPRESSED_DTYPES:
            out[name] = bytes(buf)
            continue
        try:
            dt = np.dtype(dtype).newbyteorder("<")
        except TypeError as exc:
            raise MessageError(f"part {name!r}: unknown dtype {dtype!r}") from exc
        expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if buf.nbytes != expected:
            raise MessageError(f"part {name!r}: {buf.nbytes} bytes, {dtype}{shape} needs {expected}")
        arr = np.frombuffer(buf, dtype=dt).reshape(shape)
        # read-only: within one process (inproc) the buffer may be the publisher's own array, shared by reference
        arr.flags.writeable = False
        out[name] = arr
    return out


def decode_message(frames: Sequence[zmq.Frame | bytes], from_snapshot: bool = False) -> Message:
    """One multipart message ``[topic, JSON, *parts]`` → :class:`Message`. Raises :class:`MessageError`."""
    if len(frames) < 2:
        raise MessageError(f"expected [topic, document, *parts], got {len(frames)} frame(s)")
    raw = [f.bytes if isinstance(f, zmq.Frame) else bytes(f) for f in frames[:2]]
    topic = raw[0].decode(errors="replace")
    try:
        if topic.startswith("result."):
            doc: ResultDocument | dict = ResultDocument.from_json(raw[1])
            descs: Sequence[Any] = doc.parts
        else:
            doc = json.loads(raw[1])
            if not isinstance(doc, dict):
                raise MessageError(f"{topic}: document is not a JSON object")
            descs = doc.get("parts", [])
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, MessageError):
            raise
        raise MessageError(f"{topic}: invalid document: {exc}") from exc
    return Message(topic, doc, decode_parts(descs, frames[2:]), from_snapshot)


class Subscriber:
    """Subscribes to a co-pilot daemon's topics (prefixes: ``result.``, ``result.cam1``, ``status``, ...).

    ``recv`` returns the next :class:`Message` or ``None`` on timeout; malformed messages are logged, counted in
    ``invalid`` and skipped. With ``snapshot_endpoint`` the last result per stream is fetched once on connect
    (waiting at most ``snapshot_timeout_s``; ``snapshot_ok`` says whether it arrived).
    """

    def __init__(
        self,
        pub_endpoint: str = "tcp://127.0.0.1:5555",
        snapshot_endpoint: str | None = None,
        topics: Sequence[str] = ("result.",),
        *,
        rcvhwm: int = 1000,
        snapshot_timeout_s: float = 2.0,
        reconnect_ivl_ms: int = 100,
        context: zmq.Context | None = None,
    ):
        if isinstance(topics, str):
            topics = (topics,)
        self.pub_endpoint = pub_endpoint
        self.snapshot_endpoint = snapshot_endpoint
        self.topics = tuple(topics)
        self.invalid = 0
        self.duplicates = 0
        self.snapshot_ok: bool | None = None
        self._pending: collections.deque[Message] = collections.deque()
        self._snap_filter: dict[str, ResultDocument] = {}
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._closed = False

        self._sub = self._ctx.socket(zmq.SUB)
        try:
            self._connect(pub_endpoint, snapshot_endpoint, rcvhwm, reconnect_ivl_ms, snapshot_timeout_s)
        except BaseException:
            self.close()
            raise

    def _connect(self, pub_endpoint, snapshot_endpoint, rcvhwm, reconnect_ivl_ms, snapshot_timeout_s) -> None:
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sub.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)
        for t in self.topics:
            self._sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        deadline = time.monotonic() + snapshot_timeout_s
        monitor = None
        if snapshot_endpoint is not None and not pub_endpoint.startswith("inproc://"):
            monitor = self._sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self._sub.connect(pub_endpoint)
        except BaseException:
            if monitor is not None:
                self._sub.disable_monitor()
                monitor.close(0)
            raise
        if snapshot_endpoint is not None:
            if monitor is not None:
                self._wait_handshake(monitor, deadline)
            self.fetch_snapshot(max(0.05, deadline - time.monotonic()))

    # -- snapshot ------------------------------------------------------------------------------------------------
    def _wait_handshake(self, monitor: zmq.Socket, deadline: float) -> None:
        try:
            while (left := deadline - time.monotonic()) > 0:
                if monitor.poll(int(left * 1000)):
                    if recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                        return
        finally:
            self._sub.disable_monitor()
            monitor.close(0)

    def fetch_snapshot(self, timeout_s: float = 2.0, stream: str | None = None) -> bool:
        """Ask the snapshot socket for the last result per stream (or of ``stream``); queue them for ``recv``.

        Returns whether the snapshot arrived in time. Live results it covers are dropped afterwards.
        """
        if self.snapshot_endpoint is None:
            raise ValueError("no snapshot_endpoint given")
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        got: list[Message] = []
        ok = False
        try:
            dealer.connect(self.snapshot_endpoint)
            dealer.send_multipart([SNAPSHOT_REQUEST] + ([stream.encode()] if stream else []))
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                if not dealer.poll(int(left * 1000) + 1):
                    continue
                frames = dealer.recv_multipart(copy=False)
                if frames[0].bytes == SNAPSHOT_END:
                    ok = True
                    break
                try:
                    msg = decode_message(frames, from_snapshot=True)
                except MessageError as exc:
                    self.invalid += 1
                    log.warning("invalid snapshot message: %s", exc)
                    continue
                if msg.topic.startswith(self.topics):
                    got.append(msg)
        finally:
            dealer.close(0)
        for msg in got:  # the last preview and the last result of each stream
            if isinstance(msg.doc, ResultDocument):
                self._snap_filter[msg.doc.stream] = msg.doc
            self._pending.append(msg)
        if not ok:
            log.warning("no snapshot from %s within %.1f s; live messages only", self.snapshot_endpoint, timeout_s)
        self.snapshot_ok = ok
        return ok

    def _covered_by_snapshot(self, msg: Message) -> bool:
        doc = msg.doc
        if not isinstance(doc, ResultDocument):
            return False
        snap = self._snap_filter.get(doc.stream)
        if snap is None:
            return False
        if doc.frame_id == snap.frame_id:
            return True
        try:
            older = doc.processed_at < snap.processed_at
        except TypeError:  # naive vs aware datetimes: cannot tell, deliver
            older = False
        if older:
            return True
        del self._snap_filter[doc.stream]  # newer than the snapshot: this stream has caught up
        return False

    # -- receiving -----------------------------------------------------------------------------------------------
    def recv(self, timeout_s: float | None = 1.0) -> Message | None:
        """The next message (snapshot first), or ``None`` after ``timeout_s`` (``None``: wait forever)."""
        if self._pending:
            return self._pending.popleft()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if deadline is None:
                wait_ms = -1
            else:
                left = deadline - time.monotonic()
                wait_ms = max(0, int(left * 1000 + 0.999))
            if not self._sub.poll(wait_ms):
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            frames = self._sub.recv_multipart(copy=False)
            try:
                msg = decode_message(frames)
            except MessageError as exc:
                self.invalid += 1
                log.warning("skipped an invalid message: %s", exc)
                continue
            if self._snap_filter and self._covered_by_snapshot(msg):
                self.duplicates += 1
                continue
            return msg

    def messages(self, timeout_s: float | None = None) -> Iterator[Message]:
        """Every message, until none arrives for ``timeout_s`` (``None``: forever)."""
        while (msg := self.recv(timeout_s)) is not None:
            yield msg

    def results(self, timeout_s: float | None = None) -> Iterator[Message]:
        """Messages of ``result.*`` topics (``msg.doc`` is a ResultDocument), until none arrives for ``timeout_s``.

        Other topics this subscriber receives are skipped (use :meth:`messages` for those).
        """
        deadline_s = timeout_s
        while True:
            t0 = time.monotonic()
            msg = self.recv(deadline_s)
            if msg is None:
                return
            if isinstance(msg.doc, ResultDocument):
                deadline_s = timeout_s
                yield msg
            elif timeout_s is not None:  # a non-result message does not restart the silence timer
                deadline_s = max(0.0, deadline_s - (time.monotonic() - t0))

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sub.close(0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
