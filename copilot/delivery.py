"""Delivered, not just published: results go to durable consumers (publish, exports) strictly after the store has
journaled them, and each consumer's progress is a cursor in the store.

    sink thread:  store.journal(doc)  ─►  publish  ─►  export  ─►  store.advance(cursors)

A kill anywhere in that line loses nothing: at the next start :meth:`Delivery.catch_up` hands every consumer what
lies between its cursor and the end of the journal (publication again — consumers drop duplicates by
``(stream, seq)`` — and the exports truncated back to the recorded offsets, then written again, so each frame is
in every file exactly once). A consumer that raised is retried from the store before its next frame.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from copilot.exports import ResultWriter
from copilot.result import Result
from copilot.store import ResultStore

log = logging.getLogger(__name__)


def new_epoch() -> str:
    """A session epoch: this daemon run, unique and sortable (``20250101T120000Z-3fa9``)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


class DurableSink(Protocol):
    """A consumer with a cursor: ``deliver`` returns its state to keep beside the cursor (JSON) or None."""

    name: str

    def deliver(self, result: Result) -> str | None: ...


class PublishSink:
    """Publishes a result (document + binary parts, its alerts, a preview) — the ``publish`` consumer."""

    name = "publish"

    def __init__(self, publisher):
        self.publisher = publisher

    def deliver(self, result: Result) -> None:
        doc = result.doc
        self.publisher.publish_result(doc, result.parts)
        if doc.series is not None:
            for alert in doc.series.alerts:
                self.publisher.publish_alert(doc.stream, {"frame_id": doc.frame_id, "seq": doc.seq, **alert.model_dump(mode="json")})
        if result.frame is not None:  # preview.<stream>: subscribers need no access to the files
            from copilot.publish.preview import make_preview

            self.publisher.publish_preview(doc.stream, *make_preview(result.frame))
        return None


@dataclass
class DeliveryStats:
    delivered: int = 0
    replayed: int = 0  # re-delivered from the store (after a restart, or after a consumer failed)
    failed: int = 0  # deliveries that raised (retried from the store)
    too_old: int = 0  # documents a consumer never got because they were pruned from the store


class Delivery:
    """The pipeline's sink for durable consumers; call :meth:`catch_up` once at start (before new frames)."""

    def __init__(self, store: ResultStore, sinks: list[DurableSink]):
        self.store = store
        self.sinks = list(sinks)
        self.stats = DeliveryStats()
        self._lock = threading.Lock()
        store.register_sinks([s.name for s in self.sinks])
        self._cursor = {s.name: store.cursors(s.name) for s in self.sinks}

    def catch_up(self) -> int:
        """Deliver whatever was journaled but not yet delivered, to every consumer; returns how many deliveries."""
        n = 0
        with self._lock:
            for stream, last in self.store.last_seqs().items():
                for sink in self.sinks:
                    n += self._fill(sink, stream, last)
        return n

    def __call__(self, result: Result) -> None:
        doc = result.doc
        if doc.seq is None:
            raise ValueError("deliver only journaled results (store.journal gives them a seq)")
        with self._lock:
            states: dict[str, str | None] = {}
            for sink in self.sinks:
                if self._cursor[sink.name].get(doc.stream, doc.seq - 1) < doc.seq - 1:
                    self._fill(sink, doc.stream, doc.seq - 1)  # retry what it missed, in order
                    if self._cursor[sink.name].get(doc.stream, 0) < doc.seq - 1:
                        continue  # still failing: stays behind, retried with the next frame
                try:
                    states[sink.name] = sink.deliver(result)
                except Exception:
                    self.stats.failed += 1
                    log.exception("%s failed for %s seq %s (retried from the store)", sink.name, doc.stream, doc.seq)
            if states:
                self.store.advance(doc.stream, doc.seq, states)
                for name in states:
                    self._cursor[name][doc.stream] = doc.seq
            self.stats.delivered += 1

    def _fill(self, sink: DurableSink, stream: str, upto: int) -> int:
        n = 0
        cursor = self._cursor[sink.name].get(stream, upto)
        while cursor < upto:
            docs = self.store.after(stream, cursor, limit=min(256, upto - cursor))
            if not docs:
                break
            if docs[0].seq > cursor + 1:  # pruned from the store: gone for this consumer, say so
                self.stats.too_old += docs[0].seq - cursor - 1
                log.warning("%s: %s seq %d..%d no longer in the store", sink.name, stream, cursor + 1, docs[0].seq - 1)
            for doc in docs:
                if doc.seq > upto:
                    break
                try:
                    state = sink.deliver(Result(doc=doc))
                except Exception:
                    self.stats.failed += 1
                    log.exception("%s failed again for %s seq %s", sink.name, stream, doc.seq)
                    return n
                self.store.advance(stream, doc.seq, {sink.name: state})
                cursor = self._cursor[sink.name][stream] = doc.seq
                self.stats.replayed += 1
                n += 1
        return n


def open_session_exports(store: ResultStore, sessions_dir: Path, stream: str, *, gap_min: float = 60.0,
                         new_session: bool = False) -> "_Stamped":
    """The export writer of this stream's session: the one a previous run left (continued: truncated to what the
    store knows was exported, summary rebuilt from the store) unless it is older than ``gap_min`` minutes, broken
    on disk, or ``new_session`` — then the old one is completed from the store and closed, and a new folder
    ``<stream>-<UTC start>`` begins."""
    raw = store.sink_state(ResultWriter.name)
    state = json.loads(raw) if raw else None
    if state is not None:
        folder = Path(state["dir"])
        offsets = state.get("offsets", {})
        intact = ResultWriter.can_resume(folder, offsets)
        age = datetime.now(timezone.utc) - datetime.fromisoformat(state["updated_at"])
        if not intact:
            log.warning("export session %s is incomplete on disk; starting a new session", folder)
        else:
            old = _Stamped(ResultWriter(folder, resume=offsets), store, state)
            cursors = store.cursors(ResultWriter.name)
            ranges = [(s, first, cursors.get(s, first)) for s, first in state.get("start", {}).items()]
            if not new_session and age <= timedelta(minutes=gap_min):
                log.info("continuing export session %s", folder)
                old.rebuild_in_background(ranges)  # a long session's summary must not delay the start
                return old
            old.writer.rebuild(d for s, first, done in ranges for d in _documents(store, s, first, done))
            for s, last in store.last_seqs().items():  # finish the old session with what it still lacks
                done = cursors.get(s, last)
                for doc in _documents(store, s, done, last):
                    store.advance(s, doc.seq, {old.name: old.deliver(Result(doc=doc))})
            old.close()
    name = f"{stream}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    folder, n = sessions_dir / name, 1
    while folder.exists():
        n += 1
        folder = sessions_dir / f"{name}-{n}"
    state = {"dir": str(folder), "start": store.last_seqs(), "offsets": {},
             "updated_at": datetime.now(timezone.utc).isoformat()}
    store.reset_sink(ResultWriter.name, json.dumps(state))
    return _Stamped(ResultWriter(folder), store, state)


def _documents(store: ResultStore, stream: str, after: int, upto: int):
    """Documents of ``stream`` with ``after < seq <= upto``, streamed from the store in batches."""
    seq = after
    while seq < upto:
        docs = [d for d in store.after(stream, seq, limit=min(256, upto - seq)) if d.seq <= upto]
        if not docs:
            return
        yield from docs
        seq = docs[-1].seq


class _Stamped:
    """A session's ResultWriter whose delivered state also names its folder, start and time (for continuation)."""

    name = ResultWriter.name

    def __init__(self, writer: ResultWriter, store: ResultStore, state: dict):
        self.writer, self.store = writer, store
        self.state = dict(state)
        self.out_dir = writer.out_dir

    def deliver(self, result: Result) -> str:
        offsets = json.loads(self.writer.deliver(result))
        self.state["start"].setdefault(result.doc.stream, result.doc.seq - 1)
        self.state.update(offsets=offsets, updated_at=datetime.now(timezone.utc).isoformat())
        return json.dumps(self.state)

    @property
    def count(self) -> int:
        return self.writer.count

    def rebuild_in_background(self, ranges: list[tuple[str, int, int]]) -> None:
        """Fold the session's documents from before this run into its summary on a thread (``close`` waits)."""
        docs = (d for s, first, done in ranges for d in _documents(self.store, s, first, done))
        self._rebuild = threading.Thread(target=self.writer.rebuild, args=(docs,), name="exports-rebuild", daemon=True)
        self._rebuild.start()

    def close(self) -> dict:
        if getattr(self, "_rebuild", None) is not None:
            self._rebuild.join()
        return self.writer.close()
