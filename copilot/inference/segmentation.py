"""Segmentation: the one type that leaves an engine and enters analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from copilot.frame import Frame


@dataclass(frozen=True)
class Segmentation:
    """Per-pixel class probabilities at the frame's own resolution, plus the model's pooled embedding.

    ``probabilities`` has shape (n_classes, H, W), float32, summing to 1 over axis 0.
    """

    frame: Frame
    probabilities: np.ndarray
    embedding: np.ndarray
    class_names: tuple[str, ...]
    model_name: str
    model_version: str
    engine: str

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
