"""Publish result documents over ZeroMQ, with a snapshot socket for late joiners.

Wire format (every message is one ZeroMQ multipart message)::

    [topic, JSON document, binary part 0, binary part 1, ...]

``topic`` is ``result.<stream>``, ``preview.<stream>``, ``alert.<stream>`` or ``status`` (UTF-8). The JSON
document describes the binary parts that follow it, in order, in its ``parts`` list (name, dtype, shape):

- a numpy array travels as its raw bytes, C order, little-endian; ``dtype`` is the numpy name (``uint16``,
  ``float32``, ...) and ``shape`` its shape. Decode with ``np.frombuffer(buf, np.dtype(dtype).newbyteorder("<"))
  .reshape(shape)``.
- already-compressed bytes travel as they are; ``dtype`` is ``png`` or ``jpeg`` (sniffed from the magic bytes) or
  ``bytes`` for anything else, and ``shape`` is ``[n_bytes]``.

Two sockets:

- **PUB** (``pub_endpoint``): every message, live. ``SNDHWM`` bounds the queue per subscriber; when a subscriber
  does not keep up its messages are *dropped*, so a slow subscriber never slows the pipeline. ``publish_*`` never
  block.
- **ROUTER** (``snapshot_endpoint``): the zguide "clone" pattern, simplified. A client (a DEALER) sends
  ``[b"SNAPSHOT"]`` or ``[b"SNAPSHOT", b"<stream>"]`` and gets back, as separate multipart messages, the last
  ``preview.<stream>`` and ``result.<stream>`` messages of every stream (or of that stream), byte for byte as they
  were published, followed by
  ``[b"SNAPSHOT_END", b'{"count": n}']``. A background thread owns the ROUTER (ZeroMQ sockets are not thread-safe);
  it only reads the last-message table, which the publishing thread swaps under a lock.

  Replay (with a ``history``, the daemon's store): ``[b"SINCE", b"<stream>", b"<seq>"]`` answers every journaled
  result of that stream after ``seq``, in seq order, as ``[b"result.<stream>", JSON]`` messages (documents only,
  no binary parts), at most ``REPLAY_BATCH`` per request, then ``[b"SNAPSHOT_END", {"count", "stream", "after",
  "last_seq", "first_seq", "more", "too_old"}]``: ``more`` — ask again from the last seq received; ``too_old`` —
  the store no longer holds seqs ``after+1 … first_seq-1`` (pruned): they are lost for good, and said so.
  ``[b"LAST_SEQ"]`` answers ``[b"SNAPSHOT_END", {"session_epoch", "last_seq": {stream: seq}}]``.

Limits: the ROUTER accepts requests of at most ``MAX_REQUEST_BYTES`` (larger ones are dropped by ZeroMQ before
they are read); a subscriber's SUB socket takes messages of at most its ``max_message_bytes``.

Arrays are sent zero-copy and kept (by reference) for the snapshot: **do not modify an array after publishing it**
(hand the publisher a fresh array per frame, as :func:`copilot.result.build_result` does).

>>> import numpy as np
>>> pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")   # "*": any free port
>>> pub.pub_endpoint.startswith("tcp://127.0.0.1:")
True
>>> pub.publish_status({"state": "running", "queue_depths": [0, 0, 0, 0]})
>>> pub.close()
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zmq

from copilot.document.schema import BinaryPart, ResultDocument

log = logging.getLogger(__name__)

SNAPSHOT_REQUEST = b"SNAPSHOT"
SINCE_REQUEST = b"SINCE"
LAST_SEQ_REQUEST = b"LAST_SEQ"
SNAPSHOT_END = b"SNAPSHOT_END"
REPLAY_BATCH = 256
MAX_REQUEST_BYTES = 4096
STATUS_TOPIC = "status"
COMPRESSED_DTYPES = ("png", "jpeg", "bytes")

_LITTLE = np.little_endian

Part = np.ndarray | bytes | bytearray | memoryview


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for the values status/alert dicts carry (datetimes, numpy scalars, models, paths)."""
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):  # pydantic models
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, default=json_default, separators=(",", ":")).encode()


def sniff_compressed(data: bytes | bytearray | memoryview) -> str:
    """``png`` / ``jpeg`` from the magic bytes, else ``bytes``."""
    head = bytes(data[:8])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return "bytes"


def encode_part(name: str, value: Part) -> tuple[BinaryPart, Any]:
    """One binary part: its description for ``doc.parts`` and the buffer to send (no copy when avoidable)."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.fields is not None:
            raise TypeError(f"part {name!r}: dtype {value.dtype} cannot travel as raw bytes")
        arr = value
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _LITTLE):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        arr = np.ascontiguousarray(arr)  # copies only if it was not C-contiguous
        return BinaryPart(name=name, dtype=arr.dtype.name, shape=list(arr.shape)), arr
    if isinstance(value, (bytes, bytearray, memoryview)):
        buf = memoryview(value).cast("B") if isinstance(value, memoryview) else value
        return BinaryPart(name=name, dtype=sniff_compressed(buf), shape=[len(buf)]), buf
    raise TypeError(f"part {name!r}: expected a numpy array or bytes, got {type(value).__name__}")


class Publisher:
    """ZeroMQ publisher of result documents, previews, alerts and status, with a snapshot server.

    Endpoints may use a ``*`` port (``tcp://127.0.0.1:*``) to bind any free port; ``pub_endpoint`` and
    ``snapshot_endpoint`` then hold the ports actually bound. Binding anything wider than 127.0.0.1 is the caller's
    explicit choice. The ``publish_*`` methods may be called from any thread (a lock serializes the PUB socket).
    """

    def __init__(
        self,
        pub_endpoint: str = "tcp://127.0.0.1:5555",
        snapshot_endpoint: str | None = "tcp://127.0.0.1:5556",
        hwm: int = 100,
        *,
        linger_ms: int = 100,
        context: zmq.Context | None = None,
        history=None,
        security=None,
    ):
        self.history = history  # a ResultStore (after_json, first_seq, last_seqs, epoch): SINCE / LAST_SEQ requests
        self.security = security  # copilot.security.ServerSecurity: CURVE on both sockets (None: plain, loopback)
        self.dropped = 0  # messages the PUB socket refused (send queue full)
        self.replayed = 0  # documents served from the history by SINCE requests
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._linger_ms = linger_ms
        self._send_lock = threading.Lock()
        self._last_lock = threading.Lock()
        self._last: dict[str, list[Any]] = {}  # stream -> full multipart result message
        self._last_preview: dict[str, list[Any]] = {}  # stream -> full multipart preview message
        self._closed = False
        self.sent = 0  # messages handed to ZeroMQ (PUB may still drop them for a slow subscriber)

        self._pub = self._ctx.socket(zmq.PUB)
        try:
            if security is not None:
                security.apply(self._pub)
            self._pub.setsockopt(zmq.SNDHWM, hwm)
            self._pub.setsockopt(zmq.LINGER, linger_ms)
            self._pub.bind(pub_endpoint)
            self.pub_endpoint: str = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        except Exception:
            self._pub.close(0)
            if self._own_ctx:
                self._ctx.term()
            raise

        self.snapshot_endpoint: str | None = None
        self._thread: threading.Thread | None = None
        if snapshot_endpoint is not None:
            self._start_snapshot_server(snapshot_endpoint)
        log.info("publishing on %s (snapshot %s)", self.pub_endpoint, self.snapshot_endpoint)

    # -- publishing ----------------------------------------------------------------------------------------------
    def publish_result(self, doc: ResultDocument, parts: Mapping[str, Part] | None = None) -> None:
        """Publish ``doc`` on ``result.<stream>`` with ``parts`` as binary frames; fills ``doc.parts`` in order.

        The message is also kept as the stream's snapshot for late joiners.
        """
        descs, bufs = [], []
        for name, value in (parts or {}).items():
            desc, buf = encode_part(name, value)
            descs.append(desc)
            bufs.append(buf)
        doc.parts = descs
        msg = [f"result.{doc.stream}".encode(), doc.to_json().encode(), *bufs]
        self._send(msg)
        with self._last_lock:
            self._last[doc.stream] = msg

    def keep_last(self, doc: ResultDocument) -> None:
        """Serve ``doc`` (JSON only) as its stream's last result without publishing it: a restarted daemon seeds
        the snapshot from its store, so late joiners see the last result before the next frame arrives."""
        with self._last_lock:
            self._last.setdefault(doc.stream, [f"result.{doc.stream}".encode(), doc.to_json().encode()])

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Publish a JSON status dict (daemon state, queue depths, rates, ...) on ``status``."""
        self._send([STATUS_TOPIC.encode(), dumps(status)])

    def publish_alert(self, stream: str, alert: Mapping[str, Any]) -> None:
        """Publish a JSON alert dict (verdict changes, drift, quarantines, ...) on ``alert.<stream>``."""
        self._send([f"alert.{stream}".encode(), dumps(alert)])

    def publish_preview(self, stream: str, header: Mapping[str, Any], jpeg: bytes | bytearray | memoryview) -> None:
        """Publish a compressed preview image on ``preview.<stream>``; ``header`` gains ``parts`` describing it."""
        desc, buf = encode_part("preview", jpeg)
        doc = dict(header)
        doc["parts"] = [desc.model_dump()]
        msg = [f"preview.{stream}".encode(), dumps(doc), buf]
        self._send(msg)
        with self._last_lock:
            self._last_preview[stream] = msg

    def last_results(self) -> dict[str, bytes]:
        """The JSON document of the last result per stream (what the snapshot serves), for inspection."""
        with self._last_lock:
            return {stream: msg[1] for stream, msg in self._last.items()}

    def _send(self, frames: list[Any]) -> None:
        if self._closed:
            raise RuntimeError("Publisher is closed")
        with self._send_lock:
            try:
                # PUB never blocks: beyond SNDHWM a subscriber's messages are dropped. NOBLOCK makes sure of it.
                self._pub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.dropped += 1
                log.debug("dropped a %s message (send queue full)", frames[0])
                return
            self.sent += 1

    def stats(self) -> dict[str, int]:
        """Counts for status heartbeats: sent, dropped (send queue full), replayed (SINCE answers)."""
        return {"sent": self.sent, "dropped": self.dropped, "replayed": self.replayed}

    # -- snapshot server ---------------------------------------------------------------------------------------
    def _start_snapshot_server(self, endpoint: str) -> None:
        ctrl_addr = f"inproc://copilot-snapshot-ctrl-{id(self):x}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.setsockopt(zmq.LINGER, 0)
        self._ctrl.bind(ctrl_addr)
        ready = threading.Event()
        result: dict[str, Any] = {}
        self._thread = threading.Thread(
            target=self._serve_snapshots, args=(endpoint, ctrl_addr, ready, result), name="copilot-snapshot", daemon=True
        )
        self._thread.start()
        ready.wait()
        if "error" in result:
            self._thread.join()
            self._thread = None
            self._ctrl.close(0)
            self._pub.close(0)
            if self._own_ctx:
                self._ctx.term()
            raise result["error"]
        self.snapshot_endpoint = result["endpoint"]

    def _serve_snapshots(self, endpoint: str, ctrl_addr: str, ready: threading.Event, result: dict) -> None:
        """Runs on the snapshot thread, which alone owns the ROUTER socket."""
        router = self._ctx.socket(zmq.ROUTER)
        ctrl = self._ctx.socket(zmq.PAIR)
        try:
            if self.security is not None:
                self.security.apply(router)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            ctrl.setsockopt(zmq.LINGER, 0)
            router.bind(endpoint)
            ctrl.connect(ctrl_addr)
            result["endpoint"] = router.getsockopt_string(zmq.LAST_ENDPOINT)
        except Exception as exc:
            result["error"] = exc
            router.close(0)
            ctrl.close(0)
            ready.set()
            return
        ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(ctrl, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if ctrl in events:
                    break
                if router in events:
                    request = router.recv_multipart()
                    try:
                        self._answer(router, request)
                    except Exception:  # a bad request must never stop the server
                        log.exception("snapshot request failed")
        finally:
            router.close(0)
            ctrl.close(0)

    def _answer(self, router: zmq.Socket, request: list[bytes]) -> None:
        ident, body = request[0], request[1:]
        if body and body[0] in (SINCE_REQUEST, LAST_SEQ_REQUEST):
            end = self._replay_end(router, ident, body)
            router.send_multipart([ident, SNAPSHOT_END, dumps(end)], flags=zmq.NOBLOCK)
            return
        if not body or body[0] != SNAPSHOT_REQUEST or len(body) > 2:
            end = {"count": 0, "error": "expected [SNAPSHOT], [SNAPSHOT, stream], [SINCE, stream, seq] or [LAST_SEQ]"}
            router.send_multipart([ident, SNAPSHOT_END, dumps(end)], flags=zmq.NOBLOCK)
            return
        with self._last_lock:
            streams = [body[1].decode(errors="replace")] if len(body) == 2 else sorted(self._last)
            # per stream: the last preview (so a late joiner has a picture at once), then the last result
            messages = [table[s] for s in streams for table in (self._last_preview, self._last) if s in table]
        sent = 0
        for msg in messages:
            try:
                # ROUTER drops (never blocks) when the client's queue is full; the client then times out.
                router.send_multipart([ident, *msg], flags=zmq.NOBLOCK, copy=False)
                sent += 1
            except zmq.Again:
                pass
        router.send_multipart([ident, SNAPSHOT_END, dumps({"count": sent})], flags=zmq.NOBLOCK)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def _replay_end(self, router: zmq.Socket, ident: bytes, body: list[bytes]) -> dict:
        """Answer SINCE (documents from the history, then this end message) or LAST_SEQ (only the end message)."""
        h = self.history
        if h is None:
            return {"count": 0, "error": "this publisher keeps no history"}
        if body[0] == LAST_SEQ_REQUEST:
            return {"count": 0, "session_epoch": getattr(h, "epoch", None), "last_seq": h.last_seqs()}
        try:
            stream, after = body[1].decode(), int(body[2])
        except (IndexError, ValueError, UnicodeDecodeError):
            return {"count": 0, "error": "expected [SINCE, stream, seq]"}
        last = h.last_seqs().get(stream, 0)
        first = h.first_seq(stream)
        rows = h.after_json(stream, after, REPLAY_BATCH)
        topic = f"result.{stream}".encode()
        sent = 0
        for _, text in rows:
            try:
                router.send_multipart([ident, topic, text.encode()], flags=zmq.NOBLOCK)
                sent += 1
            except zmq.Again:  # the client's queue is full: it asks again from what it got
                break
        self.replayed += sent
        got = rows[sent - 1][0] if sent else after
        return {"count": sent, "stream": stream, "after": after, "last_seq": last, "first_seq": first,
                "more": bool(rows) and got < last, "too_old": first is not None and after + 1 < first,
                "session_epoch": getattr(h, "epoch", None)}

    def close(self) -> None:
        """Stop the snapshot thread and close the sockets (messages still queued get ``linger_ms`` to leave)."""
        if self._closed:
            return
        with self._send_lock:
            self._closed = True
        if self._thread is not None:
            self._ctrl.send(b"STOP")
            self._thread.join()
            self._ctrl.close(0)
            self._thread = None
        self._pub.close(self._linger_ms)
        if self.security is not None:
            self.security.release(self._ctx)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
