"""Arrival: the one type a source hands the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from copilot.frame import Frame


@dataclass(frozen=True)
class Arrival:
    """A complete file ready to read (``path``), or a frame already decoded from a socket (``frame``).

    ``arrived_at`` (``time.time()``) is when the source handed the frame on. ``completed_at`` is when the input was
    complete — a file's last write (its mtime, never before the watcher started), a socket message's receipt —
    and end-to-end latency is measured from it (from ``arrived_at`` where the source does not know).
    """

    origin: str
    path: Path | None = None
    frame: Frame | None = None
    arrived_at: float = field(default_factory=time.time)
    completed_at: float | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.frame is None):
            raise ValueError("an Arrival carries exactly one of path or frame")


Emit = Callable[[Arrival], None]


class Source(Protocol):
    """Starts delivering arrivals to ``emit`` (from its own thread) until ``stop``."""

    def start(self, emit: Emit) -> None: ...

    def stop(self) -> None: ...
