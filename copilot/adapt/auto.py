"""Automatic mode (``[adapt] auto = true``): when a stream's rolling shift window stays past the warn threshold for
``after_frames`` frames in a row, adapt in a background thread from the stream's recent frames; the outcome (and
progress while it runs) is in :meth:`AutoAdapt.status`, which the daemon publishes on the ``status`` topic.

A promoted model reaches the pipeline by the hot swap, like one promoted by hand. Frames that came over the socket
(no file to read again) are not used; one adaptation at a time, at most one per ``cooldown_min``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from copilot.adapt.settings import AdaptSettings

log = logging.getLogger(__name__)


class AutoAdapt:
    """A result sink. ``threshold()``: the current model's window warn level (MMD², None when unknown)."""

    def __init__(self, settings: AdaptSettings, model: str, threshold: Callable[[], float | None],
                 clock: Callable[[], float] = time.monotonic, run: Callable | None = None):
        self.settings = settings
        self.model = model
        self.threshold = threshold
        self.clock = clock
        self._run = run or self._adapt
        self._origins: deque[str] = deque(maxlen=settings.frames)
        self._past = 0
        self._last_start: float | None = None
        self._thread: threading.Thread | None = None
        self._state: dict = {"state": "idle", "enabled": settings.auto}

    def status(self) -> dict:
        return dict(self._state, frames_past_warn=self._past)

    def __call__(self, result) -> None:
        doc = result.doc
        if Path(doc.origin).is_file():  # a file processed again counts once
            if doc.origin in self._origins:
                self._origins.remove(doc.origin)
            self._origins.append(doc.origin)
        mmd, limit = doc.reliability.shift_window_mmd2, self.threshold()
        self._past = self._past + 1 if (mmd is not None and limit and mmd > limit) else 0
        if not self.settings.auto or self._past < self.settings.after_frames or self.running:
            return
        now = self.clock()
        if self._last_start is not None and now - self._last_start < self.settings.cooldown_min * 60:
            return
        self._last_start = now
        origins = list(self._origins)
        self._state = {"state": "running", "enabled": True, "stage": "prepare", "done": 0, "total": 1,
                       "method": self.settings.method, "frames": len(origins), "stream": doc.stream,
                       "started_at": time.time()}
        self._thread = threading.Thread(target=self._guarded, args=(origins, doc.stream), name="adapt", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _guarded(self, origins: list[str], stream: str) -> None:
        try:
            outcome = self._run(origins, stream)
            self._state = {"state": "promoted" if outcome.promoted else "kept aside", "enabled": True,
                           "version": outcome.version, "folder": str(outcome.folder),
                           "reasons": outcome.decision.get("reasons", []), "seconds": outcome.seconds,
                           "finished_at": time.time()}
            log.info("automatic adaptation: %s %s", self._state["state"], outcome.version)
        except Exception as exc:  # the daemon keeps running on its current model
            self._state = {"state": "failed", "enabled": True, "error": str(exc), "finished_at": time.time()}
            log.warning("automatic adaptation failed: %s", exc)

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._state.update(stage=stage, done=done, total=total)

    def _adapt(self, origins: list[str], stream: str):
        from copilot.adapt.run import AdaptOptions, adapt_engine
        from copilot.readers import read_frame

        frames = []
        for o in origins:
            try:
                frames.append(read_frame(Path(o), stream=stream))
            except Exception:
                continue
        if len(frames) < 2:
            raise RuntimeError(f"only {len(frames)} of the stream's recent frames can be read again")
        s = self.settings
        opts = AdaptOptions(method=s.method, steps=s.steps, threads=s.threads)
        return adapt_engine(self.model, frames, None, f"stream {stream} (automatic)", opts,
                            command=f"daemon [adapt] auto: {s.method}", progress=self._progress,
                            log=lambda *a: log.info(" ".join(map(str, a))))
