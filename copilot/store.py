"""Durable results journal: one SQLite row per processed frame.

A restarted daemon asks :meth:`ResultStore.is_done` before reading a file, so it neither redoes a frame it
finished nor skips one it never finished (a row is written only after the frame's outcome is known).

Write-ahead journal for delivery: :meth:`ResultStore.journal` gives each result document the next sequence number
of its stream (1, 2, 3 … without gaps, continuing across restarts) and the daemon's session epoch, and commits it
*before* anything is published or exported. Each durable consumer (``publish``, ``exports``) keeps a cursor per
stream here — the last seq it has delivered — advanced after delivery; on restart whatever lies past a cursor is
delivered again (:mod:`copilot.delivery`). The same frame journaled twice (a socket frame id sent again) is
recognised and not given a second seq.

Key: ``(origin, fingerprint)``. For a file the origin is its path and the fingerprint its size + mtime
(:func:`file_fingerprint`), so a file rewritten under the same name is processed again. For a frame from a socket
the origin names the frame itself (stream + frame id) and the fingerprint may be ``None``.

Durability: WAL journal with ``synchronous=FULL`` (the default here): every commit is fsync'ed before
``record_*`` returns, so a row survives a power cut or kernel crash, not only a daemon crash (``NORMAL`` in WAL
mode survives an application crash but may lose the last commits on power loss). One fsync per frame costs
~0.1–10 ms, small beside a frame's inference at a microscope's few frames per second; pass ``synchronous="NORMAL"``
for bulk offline runs where redoing a few frames after a power cut is acceptable.

>>> store = ResultStore(":memory:")
>>> store.record_failure("/data/a.tif", "123:456", "quarantined", "truncated TIFF")
>>> store.is_done("/data/a.tif", "123:456"), store.is_done("/data/a.tif", "124:999"), store.count()
(True, False, 1)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

from copilot.document.schema import ResultDocument

Status = Literal["ok", "quarantined", "failed"]
STATUSES = ("ok", "quarantined", "failed")
SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS frames (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    origin       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL DEFAULT '',
    stream       TEXT,
    frame_id     TEXT,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'quarantined', 'failed')),
    reason       TEXT,
    document     TEXT,
    processed_at TEXT NOT NULL,
    UNIQUE (origin, fingerprint)
);
CREATE INDEX IF NOT EXISTS frames_by_stream ON frames (stream, id);
CREATE TABLE IF NOT EXISTS cursors (
    sink   TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (sink, stream)
);
CREATE TABLE IF NOT EXISTS sink_state (
    sink  TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
"""

# version 1 → 2: sequence numbers (backfilled per stream in journal order) and the epoch that journaled each row
_MIGRATE_1_TO_2 = """
ALTER TABLE frames ADD COLUMN seq INTEGER;
ALTER TABLE frames ADD COLUMN session_epoch TEXT;
UPDATE frames SET seq = (SELECT COUNT(*) FROM frames f2 WHERE f2.stream = frames.stream
                         AND f2.document IS NOT NULL AND f2.id <= frames.id) WHERE document IS NOT NULL;
"""
_INDEX_SEQ = "CREATE UNIQUE INDEX IF NOT EXISTS frames_by_seq ON frames (stream, seq) WHERE seq IS NOT NULL"



def _json_seq(text: str) -> int | None:
    """The seq written inside a journaled document (None for documents journaled before seq existed)."""
    i = text.find('"seq":')
    if i < 0:
        return None
    j = i + 6
    while j < len(text) and (text[j].isdigit() or text[j] == "-"):
        j += 1
    return int(text[i + 6:j]) if j > i + 6 else None


def _with_seq(text: str, seq: int, epoch: str | None) -> str:
    doc = ResultDocument.from_json(text)
    doc.seq, doc.session_epoch = seq, doc.session_epoch or epoch
    return doc.to_json()


def file_fingerprint(path: str | os.PathLike) -> str:
    """``"<size>:<mtime_ns>"``: changes when a file is rewritten, stable while it sits untouched."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


class ResultStore:
    """SQLite journal of processed frames; safe to share between threads (one connection behind a lock).

    Several processes may open the same file (WAL lets readers run beside the writer; writers wait up to
    ``busy_timeout_s`` for each other).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 10.0,
    ):
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise RuntimeError(f"{self.path}: store schema {version} is newer than this co-pilot ({SCHEMA_VERSION})")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                existing = self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'frames'").fetchone()
                for stmt in filter(str.strip, _DDL.split(";")):
                    self._conn.execute(stmt)
                if existing and version < 2:
                    for stmt in filter(str.strip, _MIGRATE_1_TO_2.split(";")):
                        self._conn.execute(stmt)
                elif not existing:
                    self._conn.execute("ALTER TABLE frames ADD COLUMN seq INTEGER")
                    self._conn.execute("ALTER TABLE frames ADD COLUMN session_epoch TEXT")
                self._conn.execute(_INDEX_SEQ)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._conn.close()
                raise
            self._conn.execute("COMMIT")
            self._last_seq: dict[str, int] = dict(
                self._conn.execute("SELECT stream, MAX(seq) FROM frames WHERE seq IS NOT NULL GROUP BY stream")
            )
        self.epoch: str | None = None  # the daemon run journaling now; set by the daemon at start
        self._sinks: tuple[str, ...] = ()
        self.duplicates = 0  # frames journaled a second time and recognised

    # -- delivery journal --------------------------------------------------------------------------------------
    def journal(self, doc: ResultDocument, fingerprint: str | None = None) -> ResultDocument | None:
        """Give ``doc`` its stream's next seq and the session epoch, and commit it; ``None`` if this frame
        (origin + fingerprint) already has a result (a duplicate: nothing to publish or export again)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT status FROM frames WHERE origin = ? AND fingerprint = ?", (str(doc.origin), fingerprint or "")
                ).fetchone()
                if row is not None and row[0] == "ok":
                    self._conn.execute("ROLLBACK")
                    self.duplicates += 1
                    return None
                seq = self._last_seq.get(doc.stream, 0) + 1
                doc.seq, doc.session_epoch = seq, self.epoch
                self._conn.execute(
                    "INSERT OR REPLACE INTO frames (origin, fingerprint, stream, frame_id, status, reason, document,"
                    " processed_at, seq, session_epoch) VALUES (?, ?, ?, ?, 'ok', NULL, ?, ?, ?, ?)",
                    (str(doc.origin), fingerprint or "", doc.stream, doc.frame_id, doc.to_json(),
                     doc.processed_at.isoformat(), seq, self.epoch),
                )
                # a sink that has never seen this stream starts just before its first document
                self._conn.executemany("INSERT OR IGNORE INTO cursors (sink, stream, seq) VALUES (?, ?, ?)",
                                       [(sink, doc.stream, seq - 1) for sink in self._sinks])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._last_seq[doc.stream] = seq
            return doc

    def register_sinks(self, names: tuple[str, ...] | list[str]) -> None:
        """Durable consumers that keep a cursor; one registered now starts at the current end of every stream."""
        with self._lock:
            self._sinks = tuple(names)
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR IGNORE INTO cursors (sink, stream, seq) VALUES (?, ?, ?)",
                                   [(sink, stream, seq) for sink in self._sinks for stream, seq in self._last_seq.items()])
            self._conn.execute("COMMIT")

    def cursors(self, sink: str) -> dict[str, int]:
        """``{stream: last seq delivered}`` of one consumer."""
        with self._lock:
            return dict(self._conn.execute("SELECT stream, seq FROM cursors WHERE sink = ?", (sink,)))

    def advance(self, stream: str, seq: int, sinks: dict[str, str | None]) -> None:
        """Record that every consumer in ``sinks`` has delivered ``stream`` up to ``seq`` (one commit); a non-None
        value is that consumer's state to keep with it (e.g. export file offsets)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sink, state in sinks.items():
                    self._conn.execute("INSERT OR REPLACE INTO cursors (sink, stream, seq) VALUES (?, ?, ?)",
                                       (sink, stream, seq))
                    if state is not None:
                        self._conn.execute("INSERT OR REPLACE INTO sink_state (sink, state) VALUES (?, ?)", (sink, state))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def reset_sink(self, sink: str, state: str | None = None) -> None:
        """Start a consumer afresh at the current end of every stream (a new export session)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM cursors WHERE sink = ?", (sink,))
            self._conn.executemany("INSERT INTO cursors (sink, stream, seq) VALUES (?, ?, ?)",
                                   [(sink, stream, seq) for stream, seq in self._last_seq.items()])
            self._conn.execute("DELETE FROM sink_state WHERE sink = ?", (sink,))
            if state is not None:
                self._conn.execute("INSERT INTO sink_state (sink, state) VALUES (?, ?)", (sink, state))
            self._conn.execute("COMMIT")

    def sink_state(self, sink: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT state FROM sink_state WHERE sink = ?", (sink,)).fetchone()
        return None if row is None else row[0]

    def last_seqs(self) -> dict[str, int]:
        """``{stream: last seq journaled}`` (what status heartbeats carry)."""
        with self._lock:
            return dict(self._last_seq)

    def first_seq(self, stream: str) -> int | None:
        """The oldest seq of ``stream`` whose document is still kept (older ones were pruned)."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(seq) FROM frames WHERE stream = ? AND document IS NOT NULL",
                                     (stream,)).fetchone()
        return row[0]

    def after(self, stream: str, seq: int, limit: int = 256) -> list[ResultDocument]:
        """Documents of ``stream`` with a seq above ``seq``, in seq order, at most ``limit``."""
        return [ResultDocument.from_json(text) for _, text in self.after_json(stream, seq, limit)]

    def after_json(self, stream: str, seq: int, limit: int = 256) -> list[tuple[int, str]]:
        """Like :meth:`after`, as ``(seq, JSON text)`` without parsing (what the snapshot server replays)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, document, session_epoch FROM frames WHERE stream = ? AND seq > ? AND document IS NOT NULL"
                " ORDER BY seq LIMIT ?", (stream, int(seq), int(limit))).fetchall()
        return [(n, text if n == _json_seq(text) else _with_seq(text, n, epoch)) for n, text, epoch in rows]

    def recent(self, stream: str, n: int) -> list[dict]:
        """The last ``n`` result documents of ``stream`` as JSON dicts, oldest first (to rebuild per-stream state)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT document FROM frames WHERE stream = ? AND document IS NOT NULL ORDER BY id DESC LIMIT ?",
                (stream, int(n))).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def prune_documents(self, before: datetime) -> int:
        """Drop the documents of results processed before ``before`` (rows stay, so files are not redone);
        replay then answers "too old" for them. Returns how many were dropped."""
        with self._lock:
            cur = self._conn.execute("UPDATE frames SET document = NULL WHERE document IS NOT NULL AND processed_at < ?",
                                     (before.isoformat(),))
            return cur.rowcount

    # -- writes ----------------------------------------------------------------------------------------------
    def record_result(
        self,
        doc: ResultDocument,
        fingerprint: str | None = None,
        *,
        status: Status = "ok",
        reason: str | None = None,
    ) -> ResultDocument | None:
        """Journal a processed frame and its document (:meth:`journal`; a frame already recorded with a result is
        not recorded again, a failure of it is replaced)."""
        if status != "ok" or reason is not None:
            self._write(doc.origin, fingerprint, doc.stream, doc.frame_id, status, reason, doc.to_json(),
                        doc.processed_at.isoformat())
            return doc
        return self.journal(doc, fingerprint)

    def record_failure(
        self,
        origin: str,
        fingerprint: str | None,
        status: Status = "failed",
        reason: str = "",
        *,
        stream: str | None = None,
        frame_id: str | None = None,
    ) -> None:
        """Journal a frame that produced no result: ``quarantined`` (unreadable input) or ``failed`` (a stage raised)."""
        self._write(origin, fingerprint, stream, frame_id, status, reason, None,
                    datetime.now(timezone.utc).isoformat())

    def _write(self, origin, fingerprint, stream, frame_id, status, reason, document, processed_at) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._lock:
            # INSERT OR REPLACE deletes the old row and appends a new one, so `last` and `results` follow the
            # order frames were (re)processed in.
            # a failure never replaces a result (its seq must stay); a newer outcome replaces a failure, moving it
            # to the end so `last` and `results` follow the order frames were (re)processed in
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT status FROM frames WHERE origin = ? AND fingerprint = ?",
                                         (str(origin), fingerprint or "")).fetchone()
                if row is None or row[0] != "ok":
                    self._conn.execute(
                        "INSERT OR REPLACE INTO frames"
                        " (origin, fingerprint, stream, frame_id, status, reason, document, processed_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (str(origin), fingerprint or "", stream, frame_id, status, reason, document, processed_at),
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- reads -----------------------------------------------------------------------------------------------
    def is_done(self, origin: str, fingerprint: str | None = None) -> bool:
        """Whether this frame already has an outcome (ok, quarantined or failed).

        With ``fingerprint=None`` any record of ``origin`` counts; with a fingerprint only that version of it.
        """
        if fingerprint is None:
            sql, args = "SELECT 1 FROM frames WHERE origin = ? LIMIT 1", (str(origin),)
        else:
            sql, args = "SELECT 1 FROM frames WHERE origin = ? AND fingerprint = ? LIMIT 1", (str(origin), fingerprint)
        with self._lock:
            return self._conn.execute(sql, args).fetchone() is not None

    def status(self, origin: str, fingerprint: str | None = None) -> tuple[str, str | None] | None:
        """``(status, reason)`` of the latest record of this frame, or ``None``."""
        sql = "SELECT status, reason FROM frames WHERE origin = ?"
        args: tuple = (str(origin),)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            args += (fingerprint,)
        with self._lock:
            row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return None if row is None else (row[0], row[1])

    def results(self, stream: str | None = None, *, batch: int = 256) -> Iterator[ResultDocument]:
        """Result documents in processing order (of one stream, or all); frames without a document are skipped.

        Reads in batches, so other threads keep writing while a caller iterates.
        """
        last_id = 0
        where = "document IS NOT NULL AND id > ?" + (" AND stream = ?" if stream is not None else "")
        while True:
            args = (last_id, stream) if stream is not None else (last_id,)
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT id, document FROM frames WHERE {where} ORDER BY id LIMIT {int(batch)}", args
                ).fetchall()
            for row_id, document in rows:
                last_id = row_id
                yield ResultDocument.from_json(document)
            if len(rows) < batch:
                return

    def last(self, stream: str) -> ResultDocument | None:
        """The most recently recorded result document of ``stream``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT document FROM frames WHERE stream = ? AND document IS NOT NULL ORDER BY id DESC LIMIT 1",
                (stream,),
            ).fetchone()
        return None if row is None else ResultDocument.from_json(row[0])

    def count(self, status: Status | None = None) -> int:
        """Rows journaled (of one status, or all)."""
        with self._lock:
            if status is None:
                return self._conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM frames WHERE status = ?", (status,)).fetchone()[0]

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
