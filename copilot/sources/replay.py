"""ReplaySource: emit existing image files at a steady rate, for demos and benchmarks.

Folders are expanded (not recursively) to their image files in natural name order (``f9`` before ``f10``),
filtered by the same globs as :class:`~copilot.sources.directory.DirectorySource`; explicit files are kept in the
order given. ``interval_s`` is the period between arrivals (the first is immediate); a slow ``emit`` (backpressure)
delays later arrivals instead of causing a burst afterwards. ``loop=True`` replays forever until :meth:`stop`.

>>> import tempfile, queue
>>> d = Path(tempfile.mkdtemp())
>>> for n in ("f10.tif", "f9.tif", "notes.txt"):
...     _ = (d / n).write_bytes(b"x")
>>> got = queue.Queue()
>>> src = ReplaySource(d)
>>> src.start(got.put)
>>> src.wait(5)
True
>>> [got.get().path.name for _ in range(got.qsize())]
['f9.tif', 'f10.tif']
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from copilot.sources.base import Arrival, Emit
from copilot.sources.files import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, iter_files

log = logging.getLogger(__name__)


class ReplaySource:
    def __init__(
        self,
        paths_or_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        interval_s: float = 0.0,
        loop: bool = False,
        *,
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        if isinstance(paths_or_dir, (str, os.PathLike)):
            paths_or_dir = [paths_or_dir]
        self.inputs = [Path(p) for p in paths_or_dir]
        self.interval_s = interval_s
        self.loop = loop
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.emitted = 0
        self.finished = threading.Event()  # set when a non-looping replay has emitted everything (or stopped)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def files(self) -> list[Path]:
        """The files one pass emits, in order (folders listed now)."""
        out: list[Path] = []
        for p in self.inputs:
            if p.is_dir():
                out.extend(iter_files(p, self.include, self.exclude))
            elif p.exists():
                out.append(p)
            else:
                raise FileNotFoundError(f"replay input does not exist: {p}")
        return out

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError("ReplaySource already started")
        files = self.files()
        if not files:
            log.warning("replay: no image files in %s", ", ".join(map(str, self.inputs)))
        self._thread = threading.Thread(target=self._run, args=(emit, files), name="ReplaySource", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a non-looping replay is done; True if it finished."""
        return self.finished.wait(timeout)

    def _run(self, emit: Emit, files: list[Path]) -> None:
        next_t = time.monotonic()
        try:
            while files and not self._stopping.is_set():
                for path in files:
                    if self._stopping.wait(max(0.0, next_t - time.monotonic())):
                        return
                    try:
                        emit(Arrival(origin=str(path), path=path, arrived_at=time.time()))
                        self.emitted += 1
                    except Exception:
                        log.exception("emit failed for %s", path)
                    next_t = max(next_t + self.interval_s, time.monotonic()) if self.interval_s else next_t
                if not self.loop:
                    return
        finally:
            self.finished.set()
