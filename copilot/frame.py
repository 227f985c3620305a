"""Frame: the one type that leaves a reader or a socket and enters the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A 2-D image with its calibration and provenance.

    ``nm_per_px`` is ``None`` when the file carried no usable calibration; downstream stages then report pixel
    units and say so instead of inventing nanometres. ``pixels`` never contains a burned-in data bar: readers crop it
    and record how many rows they removed in ``meta["data_bar_rows"]``.

    >>> f = Frame(np.zeros((4, 4), np.uint16), nm_per_px=0.5, stream="s", frame_id="f1", origin="mem")
    >>> f.shape, f.calibrated
    ((4, 4), True)
    """

    pixels: np.ndarray
    nm_per_px: float | None
    stream: str
    frame_id: str
    origin: str
    acquired_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    calibration_source: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2:
            raise ValueError(f"Frame.pixels must be 2-D, got shape {self.pixels.shape}")
        if self.nm_per_px is not None and not (np.isfinite(self.nm_per_px) and self.nm_per_px > 0):
            raise ValueError(f"Frame.nm_per_px must be positive and finite or None, got {self.nm_per_px!r}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]

    @property
    def calibrated(self) -> bool:
        return self.nm_per_px is not None
