"""Which inputs were being processed when the process died, so a restart skips one that keeps killing it.

The pipeline journals an input before the risky work (decoding hostile bytes, a huge inference), notes which stage is
working on it (``""`` while it waits in a queue) and clears it when its outcome is recorded. Rows left at start-up
belong to inputs in flight when the process ended abnormally (segfault in a decoder, out-of-memory kill, kill -9, a
wedged stage restarted by the watchdog); only those a stage was working on count a death. One death may be bad luck
(a kill at a random moment), so the input is tried again; an input at ``max_deaths`` deaths is given back by
:meth:`InflightLog.recover` to be recorded as quarantined with the reason, and is skipped.

Own SQLite file (WAL, ``synchronous=NORMAL``: a commit survives the process dying, which is all this needs).

>>> log = InflightLog(":memory:", max_deaths=2)
>>> log.begin("/data/a.tif", "10:1", "read")
>>> log.begin("/data/b.tif", "20:1", "read"); log.stage("/data/b.tif", "20:1", "")  # waiting in a queue
>>> log.recover()  # the first death: a.tif is tried again
[]
>>> log.begin("/data/a.tif", "10:1", "read")  # the restarted daemon reads it again, and dies again
>>> log.recover()
[('/data/a.tif', '10:1', 2)]
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

_DDL = """
CREATE TABLE IF NOT EXISTS inflight (
    origin      TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    deaths      INTEGER NOT NULL DEFAULT 0,
    stage       TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    PRIMARY KEY (origin, fingerprint)
)
"""


class InflightLog:
    """Inputs in flight, durable across a crash of this process; thread-safe."""

    def __init__(self, path: str | os.PathLike, *, max_deaths: int = 3):
        self.max_deaths = max_deaths
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_DDL)

    def begin(self, origin: str, fingerprint: str | None, stage: str) -> None:
        """``origin`` enters ``stage`` (a row kept from an earlier death keeps its count)."""
        with self._lock:
            self._conn.execute("INSERT INTO inflight (origin, fingerprint, stage, started_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (origin, fingerprint) DO UPDATE SET stage = excluded.stage",
                               (origin, fingerprint or "", stage, datetime.now(timezone.utc).isoformat()))

    def stage(self, origin: str, fingerprint: str | None, stage: str) -> None:
        """The stage now working on ``origin`` (``""``: waiting in a queue)."""
        with self._lock:
            self._conn.execute("UPDATE inflight SET stage = ? WHERE origin = ? AND fingerprint = ?",
                               (stage, origin, fingerprint or ""))

    def end(self, origin: str, fingerprint: str | None) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM inflight WHERE origin = ? AND fingerprint = ?", (origin, fingerprint or ""))

    def recover(self) -> list[tuple[str, str, int]]:
        """At start-up: count one more death for every input a stage was working on; return (and forget) those at
        ``max_deaths``; the others stay and are retried."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("UPDATE inflight SET deaths = deaths + 1 WHERE stage != ''")
                self._conn.execute("UPDATE inflight SET stage = ''")
                poison = self._conn.execute("SELECT origin, fingerprint, deaths FROM inflight WHERE deaths >= ? "
                                            "ORDER BY started_at", (self.max_deaths,)).fetchall()
                self._conn.execute("DELETE FROM inflight WHERE deaths >= ?", (self.max_deaths,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return [(o, f, n) for o, f, n in poison]

    def pending(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM inflight").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
