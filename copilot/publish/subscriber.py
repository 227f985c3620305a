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

Lossless (``lossless=True``): every result document carries its stream's ``seq`` (1, 2, 3 … without gaps, across
daemon restarts). The subscriber remembers the last seq per stream, drops a repeat (``duplicates``), and when a
seq jumps — or a status heartbeat's ``last_seq`` says it is behind — asks the snapshot socket for what it missed
(``SINCE``) and hands those out first, in order (``msg.replayed``), so a consumer sees each result exactly once
even across daemon kills. Replayed documents carry no binary parts. What the daemon's store no longer holds is
counted in ``lost`` (never silently). ``from_seq`` starts a stream there instead of at the first live message.

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

from copilot.publish.publisher import (
    COMPRESSED_DTYPES,
    LAST_SEQ_REQUEST,
    SINCE_REQUEST,
    SNAPSHOT_END,
    SNAPSHOT_REQUEST,
    STATUS_TOPIC,
)
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
    replayed: bool = False  # filled in from the daemon's store after a gap (document only, no binary parts)

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
        lossless: bool = False,
        from_seq: int | dict[str, int] | None = None,
        max_message_bytes: int = 256 * 2**20,
        security=None,
    ):
        if isinstance(topics, str):
            topics = (topics,)
        if lossless and snapshot_endpoint is None:
            raise ValueError("lossless needs the snapshot endpoint (to replay what it missed)")
        self.pub_endpoint = pub_endpoint
        self.snapshot_endpoint = snapshot_endpoint
        self.topics = tuple(topics)
        self.lossless = lossless
        self.security = security  # copilot.security.ClientSecurity: CURVE toward a daemon bound beyond loopback
        self.last_seq: dict[str, int] = {}
        self._from_seq = from_seq
        self._wanted: dict[str, int] = {}  # stream -> a seq known to exist that has not been delivered yet
        self._held: dict[str, list["Message"]] = collections.defaultdict(list)  # live results waiting for a replay
        self.invalid = 0
        self.duplicates = 0
        self.replayed = 0
        self.lost = 0  # results the daemon's store no longer held when asked (pruned)
        self.snapshot_ok: bool | None = None
        self._pending: collections.deque[Message] = collections.deque()
        self._snap_filter: dict[str, ResultDocument] = {}
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._closed = False

        self._max_message_bytes = max_message_bytes
        self._sub = self._ctx.socket(zmq.SUB)
        try:
            self._connect(pub_endpoint, snapshot_endpoint, rcvhwm, reconnect_ivl_ms, snapshot_timeout_s)
        except BaseException:
            self.close()
            raise

    def _connect(self, pub_endpoint, snapshot_endpoint, rcvhwm, reconnect_ivl_ms, snapshot_timeout_s) -> None:
        if self.security is not None:
            self.security.apply(self._sub)
        self._sub.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sub.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)
        for t in self.topics:
            self._sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        if self.lossless and not any(STATUS_TOPIC.startswith(t) for t in self.topics):
            self._sub.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC.encode())  # heartbeats' last_seq reveal a missed tail
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
            if self.lossless and self._from_seq is not None:
                self._start_from_seq(max(0.05, deadline - time.monotonic()))
            else:
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
        got: list[Message] = []
        end = self._request([SNAPSHOT_REQUEST] + ([stream.encode()] if stream else []), timeout_s, into=got,
                            from_snapshot=True, keep=lambda m: m.topic.startswith(self.topics))
        ok = end is not None
        for msg in got:  # the last preview and the last result of each stream
            if isinstance(msg.doc, ResultDocument):
                if self.lossless and msg.doc.seq is not None:
                    if msg.doc.seq <= self.last_seq.get(msg.doc.stream, 0):
                        continue
                    self.last_seq[msg.doc.stream] = msg.doc.seq
                else:
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
        """The next message (snapshot and replays first), or ``None`` after ``timeout_s`` (``None``: wait forever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._wanted:
                self._fill_wanted()
            if self._pending:
                return self._pending.popleft()
            if deadline is None:
                wait_ms = 1000 if self._wanted else -1
            else:
                left = deadline - time.monotonic()
                wait_ms = max(0, int(left * 1000 + 0.999))
                if self._wanted:
                    wait_ms = min(wait_ms, 1000)  # a replay still owed: retry it at least every second
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
            if self.lossless:
                msg = self._sequence(msg)
                if msg is None:
                    continue
            elif self._snap_filter and self._covered_by_snapshot(msg):
                self.duplicates += 1
                continue
            return msg

    @property
    def backlog(self) -> int:
        """Messages received (snapshot, replays) but not yet handed out by ``recv``."""
        return len(self._pending)

    # -- lossless ------------------------------------------------------------------------------------------------
    def _wants_stream(self, stream: str) -> bool:
        return f"result.{stream}".startswith(self.topics) or any(t.startswith(f"result.{stream}") for t in self.topics)

    def _sequence(self, msg: Message) -> Message | None:
        """Lossless bookkeeping for one live message: drop repeats, hold results behind a gap, note heartbeats."""
        doc = msg.doc
        if msg.topic == STATUS_TOPIC and isinstance(doc, dict):
            for stream, last in (doc.get("last_seq") or {}).items():
                if self._wants_stream(stream) and isinstance(last, int):
                    if stream not in self.last_seq and not self._starts_known(stream):
                        continue  # a stream this subscriber has not started: begins with its next live result
                    if last > self.last_seq.get(stream, 0):
                        self._wanted[stream] = max(self._wanted.get(stream, 0), last)
            return msg if msg.topic.startswith(self.topics) else None
        if not isinstance(doc, ResultDocument) or doc.seq is None:
            return msg
        stream, seq = doc.stream, doc.seq
        if stream not in self.last_seq:
            start = self._start_seq(stream)
            self.last_seq[stream] = start if start is not None else seq - 1
        last = self.last_seq[stream]
        if seq <= last:
            self.duplicates += 1
            return None
        if seq == last + 1 and not self._held.get(stream):
            self.last_seq[stream] = seq
            return msg
        self._held[stream].append(msg)  # after a gap: wait for the replay of what lies before it
        self._wanted[stream] = max(self._wanted.get(stream, 0), seq - 1)
        return None

    def _starts_known(self, stream: str) -> bool:
        return self._start_seq(stream) is not None

    def _start_seq(self, stream: str) -> int | None:
        if isinstance(self._from_seq, dict):
            return self._from_seq.get(stream)
        return self._from_seq

    def _start_from_seq(self, timeout_s: float) -> None:
        """``from_seq``: learn the daemon's streams (LAST_SEQ) and owe each one its results after that seq."""
        end = self._request([LAST_SEQ_REQUEST], timeout_s)
        self.snapshot_ok = end is not None
        for stream, last in ((end or {}).get("last_seq") or {}).items():
            start = self._start_seq(stream)
            if self._wants_stream(stream) and start is not None:
                self.last_seq.setdefault(stream, start)
                if last > self.last_seq[stream]:
                    self._wanted[stream] = last

    def _fill_wanted(self, timeout_s: float = 2.0) -> None:
        """Replay every owed range from the snapshot socket; release held live results that now follow in order."""
        for stream, upto in list(self._wanted.items()):
            while self.last_seq.get(stream, 0) < upto:
                got = self._since(stream, self.last_seq.get(stream, 0), upto, timeout_s)
                if got is None:
                    return  # daemon unreachable: retried on the next recv
                if got == 0:
                    break
            held = sorted(self._held.pop(stream, []), key=lambda m: m.doc.seq)
            for msg in held:
                last = self.last_seq.get(stream, 0)
                if msg.doc.seq <= last:
                    self.duplicates += 1
                elif msg.doc.seq == last + 1:
                    self.last_seq[stream] = msg.doc.seq
                    self._pending.append(msg)
                else:  # a later gap: owe it again
                    self._held[stream].append(msg)
                    self._wanted[stream] = msg.doc.seq - 1
            if self.last_seq.get(stream, 0) >= self._wanted.get(stream, 0) and not self._held.get(stream):
                self._wanted.pop(stream, None)

    def _since(self, stream: str, after: int, upto: int, timeout_s: float) -> int | None:
        """One SINCE request: queue the documents after ``after`` (up to ``upto``); how many, None on timeout."""
        docs: list[Message] = []
        end = self._request([SINCE_REQUEST, stream.encode(), str(after).encode()], timeout_s, docs)
        if end is None:
            return None
        if end.get("too_old") and end.get("first_seq") is not None:
            first = int(end["first_seq"])
            self.lost += first - after - 1
            log.warning("%s: results %d..%d are no longer in the daemon's store (lost)", stream, after + 1, first - 1)
            self.last_seq[stream] = after = first - 1
        n = 0
        for msg in docs:
            seq = msg.doc.seq
            if seq is None or seq <= self.last_seq.get(stream, 0) or seq > upto:
                continue
            if seq != self.last_seq.get(stream, 0) + 1:
                break  # not contiguous (should not happen): ask again from here
            msg.replayed = True
            self.last_seq[stream] = seq
            self._pending.append(msg)
            self.replayed += 1
            n += 1
        if n == 0 and not end.get("more") and self.last_seq.get(stream, 0) < upto:
            # the daemon's store has nothing for the owed range: count it lost rather than ask forever
            last = self.last_seq.get(stream, 0)
            self.lost += upto - last
            log.warning("%s: results %d..%d are not in the daemon's store (lost)", stream, last + 1, upto)
            self.last_seq[stream] = upto
            return 0
        return n

    def _request(self, request: list[bytes], timeout_s: float, into: list[Message] | None = None, *,
                 from_snapshot: bool = False, keep=lambda m: isinstance(m.doc, ResultDocument)) -> dict | None:
        """Send one request to the snapshot socket (with this subscriber's keys and size limit); collect the messages
        ``keep`` accepts into ``into``; the end message's dict (None: no end within ``timeout_s``)."""
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if self.security is not None:
            self.security.apply(dealer)
        dealer.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        try:
            dealer.connect(self.snapshot_endpoint)
            dealer.send_multipart(request)
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                if not dealer.poll(int(left * 1000) + 1):
                    continue
                frames = dealer.recv_multipart(copy=False)
                if frames[0].bytes == SNAPSHOT_END:
                    try:
                        end = json.loads(frames[1].bytes)
                    except (IndexError, ValueError):
                        end = {}
                    return end if isinstance(end, dict) else {}
                try:
                    msg = decode_message(frames, from_snapshot=from_snapshot)
                except MessageError as exc:
                    self.invalid += 1
                    log.warning("invalid snapshot/replay message: %s", exc)
                    continue
                if into is not None and keep(msg):
                    into.append(msg)
            return None
        finally:
            dealer.close(0)

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
