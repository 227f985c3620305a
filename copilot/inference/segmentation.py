"""Segmentation: the one type that leaves an engine and enters analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from copilot.frame import Frame


@dataclass(frozen=True)
class Segmentation:
    """Per-pixel class probabilities on the model's working grid, plus the model's pooled embedding.

    ``probabilities`` has shape (n_classes, h, w), float32, summing to 1 over axis 0. The working grid is the frame
    resampled to the card's nm/px: one segmentation pixel spans ``frame_px_per_px`` frame pixels in each direction
    and ``nm_per_px`` nanometres (``None`` for an uncalibrated frame, which is segmented at its own scale).
    Measuring on this grid is what keeps a 2048² frame fast; it cannot resolve finer than the model does anyway.
    """

    frame: Frame
    probabilities: np.ndarray
    embedding: np.ndarray
    class_names: tuple[str, ...]
    model_name: str
    model_version: str
    engine: str
    frame_px_per_px: float = 1.0
    task: str = "particles"
    network_input: np.ndarray | None = None  # the normalized image the network saw (working grid), for quality checks

    @property
    def nm_per_px(self) -> float | None:
        return None if self.frame.nm_per_px is None else self.frame.nm_per_px * self.frame_px_per_px

    @property
    def labels(self) -> np.ndarray:
        """Arg-max class per pixel (uint8)."""
        return np.argmax(self.probabilities, axis=0).astype(np.uint8)

    @property
    def confidence(self) -> np.ndarray:
        """Max class probability per pixel."""
        return self.probabilities.max(axis=0)


class Engine(Protocol):
    """Anything that turns a Frame into a Segmentation."""

    name: str

    def segment(self, frame: Frame) -> Segmentation: ...
