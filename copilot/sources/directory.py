"""DirectorySource: watch an acquisition folder and emit each new image file once, when it is complete.

How "complete" is decided
-------------------------
Filesystem events only *nominate* a file; one settle-tracker thread decides when it is complete.

* Nominations: created, modified, close-after-write (``FileClosedEvent``, Linux inotify), and the destination of a
  rename (``FileMovedEvent``). Opens, reads (close-no-write) and attribute changes nominate nothing, so the
  pipeline reading a file never re-triggers it.
* A nominated file is emitted once its ``(size, mtime_ns)`` has been unchanged, and no new event has arrived for
  it, for ``settle_s`` — also after a close event, because some writers close and reopen (TIFF writers that patch
  the header, DigitalMicrograph saving tags). Platforms without close events (Windows, macOS) and the
  ``PollingObserver`` (``poll=True``, for SMB/NFS shares where inotify sees nothing) rely on the same rule.
* A rename into place is the writer saying "done" atomically, so it is emitted as soon as the tracker has seen
  the file once (no settle wait); a later write to it brings the normal settle rule back.
* Empty files are never emitted (a writer that created the file but has not written yet); the next write nominates
  the file again.

Dedupe: the tracker remembers the ``(size, mtime_ns)`` it emitted per path, and never emits the same path with the
same signature twice. A file rewritten later with different content (new size or mtime) is emitted again.

Files present at start are emitted once in natural name order (``existing="process"``), minus those for which
``is_done(str(path))`` is true (the pipeline passes a store lookup), or recorded and ignored (``existing="skip"``).
At start-up a file whose mtime is already ``settle_s`` old is emitted without waiting; younger ones (a write in
progress while the daemon restarted) go through the settle tracker.

Read-only and hostile folders: the source only stats and lists; it never moves, renames or writes. Only regular
files are emitted (a FIFO, socket or device is ignored); a symbolic link only when it resolves to a regular file
inside the watched tree, and linked folders are never descended into (also by the polling observer, which uses
``lstat``), so neither a link out of the tree nor a link loop yields a frame. File names may hold any bytes:
``Arrival.origin`` is their UTF-8-safe text, ``Arrival.path`` the real name.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mode
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserverVFS

from copilot.readers.base import path_text
from copilot.sources.base import Arrival, Emit
from copilot.sources.files import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, iter_files, relative_accepts, resolves_inside

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # (st_size, st_mtime_ns)

_MIN_CHECK_GAP_S = 0.01


@dataclass
class _Candidate:
    first_seen: float  # monotonic
    last_event: float  # monotonic time of the latest nominating event
    settle_s: float
    sig: Signature | None = None
    stable_since: float = 0.0  # monotonic time the current signature was first seen


class _Handler(FileSystemEventHandler):
    def __init__(self, source: DirectorySource) -> None:
        super().__init__()
        self._source = source

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an odd event must never stop the observer thread
            log.exception("file event %r could not be handled", event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        src = self._source
        if kind in (EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_CLOSED):
            src._nominate(event.src_path, renamed=False)
        elif kind == EVENT_TYPE_MOVED:
            src._forget(event.src_path)
            src._nominate(event.dest_path, renamed=True)
        elif kind == EVENT_TYPE_DELETED:
            src._forget(event.src_path)
        # opened / closed_no_write / attrib: nothing was written


class DirectorySource:
    """Emit an :class:`Arrival` (``path``) for every complete new image file under ``root``.

    >>> import tempfile, queue
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.tif").write_bytes(b"x" * 10)
    >>> got = queue.Queue()
    >>> src = DirectorySource(root, settle_s=0.05)
    >>> src.start(got.put)
    >>> got.get(timeout=5).path.name
    'a.tif'
    >>> src.stop()
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        recursive: bool = False,
        poll: bool = False,
        poll_interval_s: float = 1.0,
        settle_s: float = 0.5,
        existing: Literal["process", "skip"] = "process",
        is_done: Callable[[str], bool] | None = None,
    ) -> None:
        if existing not in ("process", "skip"):
            raise ValueError(f"existing must be 'process' or 'skip', got {existing!r}")
        if settle_s < 0:
            raise ValueError(f"settle_s must be >= 0, got {settle_s}")
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self.root = Path(root).expanduser().absolute()
        self._root_real = os.path.realpath(self.root)
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.recursive = recursive
        self.poll = poll
        self.poll_interval_s = poll_interval_s
        self.settle_s = settle_s
        self.existing = existing
        self.is_done = is_done
        # How often the tracker re-stats pending files: a fraction of settle_s, bounded.
        self._tick_s = min(max(settle_s / 5.0, 0.01), 0.2)

        self._cond = threading.Condition()
        self._pending: dict[Path, _Candidate] = {}
        self._seen: dict[Path, Signature] = {}  # signature emitted (or deliberately skipped) per path
        # existing="skip": files the start-up scan skipped. The observer starts first, so a write event for one of
        # them means it was written after the start (the scan raced a new file) and it must be processed after all.
        self._skipped_existing: set[Path] = set()
        self._stopping = threading.Event()
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self.emitted = 0  # arrivals emitted so far

    # ------------------------------------------------------------------------------------------ Source protocol

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError("DirectorySource already started")
        if not self.root.is_dir():
            raise FileNotFoundError(f"watched folder does not exist or is not a folder: {self.root}")
        self._emit = emit
        self._watch_started = time.time()
        observer = (PollingObserverVFS(os.lstat, os.scandir, polling_interval=self.poll_interval_s) if self.poll
                    else Observer())
        observer.schedule(_Handler(self), str(self.root), recursive=self.recursive)
        # The observer starts before the start-up scan, so no file can fall between the two (a file seen by both is
        # deduplicated by its signature).
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(target=self._run, name=f"DirectorySource({self.root.name})", daemon=True)
        self._thread.start()
        log.info(
            "watching %s (%s, recursive=%s, settle %.2fs, existing=%s)",
            self.root,
            f"polling every {self.poll_interval_s}s" if self.poll else type(observer).__name__,
            self.recursive,
            self.settle_s,
            self.existing,
        )

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def pending(self) -> int:
        """Files nominated but not yet complete."""
        with self._cond:
            return len(self._pending)

    # ------------------------------------------------------------------------------------------ event side

    def _path(self, raw: bytes | str) -> Path | None:
        p = Path(os.fsdecode(raw))
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            return None
        if not relative_accepts(rel.parts, self.include, self.exclude, recursive=self.recursive):
            return None
        return p

    def _nominate(self, raw: bytes | str, *, renamed: bool) -> None:
        path = self._path(raw)
        if path is None:
            return
        now = time.monotonic()
        with self._cond:
            if path in self._skipped_existing:
                self._skipped_existing.discard(path)
                self._seen.pop(path, None)
            was_idle = not self._pending
            settle = 0.0 if renamed else self.settle_s
            cand = self._pending.get(path)
            if cand is None:
                self._pending[path] = _Candidate(first_seen=now, last_event=now, settle_s=settle)
            else:
                cand.last_event, cand.settle_s = now, settle
            if renamed or was_idle:
                self._cond.notify()

    def _forget(self, raw: bytes | str) -> None:
        path = Path(os.fsdecode(raw))
        with self._cond:
            self._pending.pop(path, None)

    # ------------------------------------------------------------------------------------------ tracker side

    def _run(self) -> None:
        try:
            self._scan_existing()
        except Exception:  # never let a start-up scan problem kill live watching
            log.exception("scanning existing files in %s failed", self.root)
        last_check = 0.0
        while True:
            with self._cond:
                # Woken early by a first candidate or a rename; otherwise re-stat pending files every tick.
                self._cond.wait(timeout=self._tick_s if self._pending else 1.0)
                if self._stopping.is_set():
                    return
                if not self._pending:
                    continue
            gap = time.monotonic() - last_check
            if gap < _MIN_CHECK_GAP_S:  # a burst of renames must not turn into a stat storm
                self._stopping.wait(_MIN_CHECK_GAP_S - gap)
            last_check = time.monotonic()
            try:
                for path in self._check_pending():
                    self._deliver(path)
            except Exception:  # the tracker must outlive any one file
                log.exception("checking pending files in %s failed", self.root)

    def _scan_existing(self) -> None:
        now_wall = time.time()
        for path in iter_files(self.root, self.include, self.exclude, recursive=self.recursive):
            if self._stopping.is_set():
                return
            try:
                st = os.stat(path)
            except OSError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            skip_existing = self.existing == "skip"
            skip = skip_existing or self._already_done(path)
            with self._cond:
                if self._seen.get(path) == sig:  # an event got there first
                    continue
                if skip_existing and path in self._pending:
                    continue  # written after the start: the settle tracker has it
                if skip:
                    self._seen[path] = sig  # later events with this signature must not emit it either
                    if skip_existing:
                        self._skipped_existing.add(path)
                    continue
                settled = st.st_size > 0 and now_wall - st.st_mtime >= self.settle_s and path not in self._pending
                if settled:
                    self._seen[path] = sig
                elif path not in self._pending:
                    now = time.monotonic()
                    self._pending[path] = _Candidate(now, now, self.settle_s, sig, now)
            if settled:
                self._deliver(path)

    def _already_done(self, path: Path) -> bool:
        if self.is_done is None:
            return False
        try:
            return bool(self.is_done(str(path)))
        except Exception:
            log.exception("is_done(%s) failed; processing the file", path)
            return False

    def _check_pending(self) -> list[Path]:
        """Stat every pending file once; return those that are complete, oldest nomination first."""
        with self._cond:
            items = list(self._pending.items())
        stats: list[tuple[Path, _Candidate, Signature | None, bool]] = []
        for path, cand in items:
            try:
                st = os.lstat(path)
                if not self._regular_inside(path, st):
                    stats.append((path, cand, None, True))  # a FIFO, device, folder or a link out of the tree
                    continue
                st = os.stat(path)
                stats.append((path, cand, (st.st_size, st.st_mtime_ns), False))
            except FileNotFoundError:
                stats.append((path, cand, None, True))
            except OSError as exc:  # e.g. a share briefly unreachable: try again next tick
                log.debug("stat %s failed: %s", path, exc)
        now = time.monotonic()
        ready: list[tuple[float, Path]] = []
        with self._cond:
            for path, cand, sig, gone in stats:
                if self._pending.get(path) is not cand:
                    continue  # forgotten or re-nominated meanwhile
                if gone:
                    del self._pending[path]
                    continue
                if sig != cand.sig:
                    cand.sig, cand.stable_since = sig, now
                quiet_since = max(cand.stable_since, cand.last_event)
                if now - quiet_since < cand.settle_s:
                    continue
                del self._pending[path]
                assert sig is not None
                if sig[0] == 0 or self._seen.get(path) == sig:
                    continue
                self._seen[path] = sig
                ready.append((cand.first_seen, path))
        return [p for _, p in sorted(ready)]

    def _regular_inside(self, path: Path, lst: os.stat_result) -> bool:
        if stat_mode.S_ISLNK(lst.st_mode):
            return resolves_inside(path, self._root_real)
        return stat_mode.S_ISREG(lst.st_mode)

    def _deliver(self, path: Path) -> None:
        if self._stopping.is_set() or self._emit is None:
            return
        now = time.time()
        try:  # complete at its last write; files already there when watching began count from then
            completed = min(now, max(os.stat(path).st_mtime, self._watch_started))
        except OSError:
            completed = now
        arrival = Arrival(origin=path_text(path), path=path, arrived_at=now, completed_at=completed)
        try:
            self._emit(arrival)
            self.emitted += 1
        except Exception:
            log.exception("emit failed for %s", path)
