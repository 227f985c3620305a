"""Segmentation: the one type that leaves a backend and enters analysis, and the Backend protocol behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from copilot.compiled import compiled
from copilot.frame import Frame

if TYPE_CHECKING:
    from copilot.inference.card import ModelCard

_EPS = 1e-7


@dataclass(frozen=True)
class OutputMaps:
    """What every consumer reads from the class probabilities, computed in one pass over them.

    ``labels``: arg-max class (uint8); ``confidence``: max class probability; ``entropy``: predictive entropy
    normalized to [0, 1] by log(n_classes); ``foreground``: 1 − P(class 0). All (h, w) on the working grid.
    """

    labels: np.ndarray
    confidence: np.ndarray
    entropy: np.ndarray
    foreground: np.ndarray


def output_maps(probabilities: np.ndarray) -> OutputMaps:
    """Arg-max, max, normalized entropy and foreground of (C, h, w) probabilities, one class plane at a time (or,
    with numba, numpy's logarithms of all planes then one compiled pass, ``reduce_classes``: the same values).

    >>> m = output_maps(np.array([[[0.9]], [[0.1]]], np.float32))
    >>> int(m.labels[0, 0]), round(float(m.confidence[0, 0]), 2), round(float(m.entropy[0, 0]), 3)
    (0, 0.9, 0.469)
    """
    probs = np.asarray(probabilities, np.float32)
    c = probs.shape[0]
    scale = np.float32(1.0 / np.log(c)) if c > 1 else np.float32(0.0)
    fast = compiled("reduce_classes", globals()) if probs.ndim == 3 and c < 256 else None
    if fast is not None:
        probs = np.ascontiguousarray(probs)
        logs = np.maximum(probs, _EPS)
        np.log(logs, out=logs)
        labels = np.empty(probs.shape[1:], np.uint8)
        confidence, entropy = np.empty(probs.shape[1:], np.float32), np.empty(probs.shape[1:], np.float32)
        fast(probs, logs, scale, labels, confidence, entropy)
        return OutputMaps(labels, confidence, entropy, 1.0 - probs[0])
    labels = np.zeros(probs.shape[1:], np.uint8)
    confidence = probs[0].copy()
    entropy = np.zeros(probs.shape[1:], np.float32)
    tmp = np.empty(probs.shape[1:], np.float32)
    for k in range(c):
        p = probs[k]
        if k:  # a strided argmax over axis 0 costs twice this whole function
            better = np.greater(p, confidence).view(np.uint8)
            labels += better * (np.uint8(k) - labels)  # uint8 arithmetic: labels = k where better
            np.maximum(confidence, p, out=confidence)
        np.maximum(p, _EPS, out=tmp)
        np.log(tmp, out=tmp)
        tmp *= p
        entropy -= tmp
    entropy *= scale
    np.clip(entropy, 0.0, 1.0, out=entropy)
    return OutputMaps(labels, confidence, entropy, 1.0 - probs[0])


def reduce_classes(probs, logs, scale, labels, confidence, entropy):
    # pragma: no cover - compiled by numba; its output is tested
    """Per pixel, over the classes in order: the first arg-max, the max, and −Σ p·log p (float32, subtracted class
    by class from 0, then × ``scale`` and clipped to [0, 1]) — ``output_maps``' numpy passes, fused row by row."""
    c, h, w = probs.shape
    zero, one = np.float32(0.0), np.float32(1.0)
    for y in range(h):
        best, label, e = confidence[y], labels[y], entropy[y]
        p0, l0 = probs[0, y], logs[0, y]
        for x in range(w):
            best[x] = p0[x]
            label[x] = 0
            e[x] = zero - p0[x] * l0[x]
        for k in range(1, c):
            pk, lk = probs[k, y], logs[k, y]
            kk = np.uint8(k)
            for x in range(w):
                better = pk[x] > best[x]
                label[x] = kk if better else label[x]
                best[x] = pk[x] if better else best[x]
                e[x] = e[x] - pk[x] * lk[x]
        for x in range(w):
            v = e[x] * scale
            e[x] = min(max(v, zero), one)


@dataclass(frozen=True)
class Segmentation:
    """Per-pixel class probabilities on the model's working grid, plus the model's pooled embedding.

    ``probabilities`` has shape (n_classes, h, w), float32, summing to 1 over axis 0. The working grid is the frame
    resampled to the card's nm/px: one segmentation pixel spans ``frame_px_per_px`` frame pixels in each direction
    and ``nm_per_px`` nanometres (``None`` for an uncalibrated frame, which is segmented at its own scale).
    ``network_input`` is the normalized image the network saw (working grid); reliability measures image quality on
    it. ``maps`` (labels, confidence, entropy) is computed once, on first use; a backend that reduces the
    probabilities on its device passes it in ready-made. ``particle_px``: the particles' median ECD on the working
    grid as the scale choice measured it on these probabilities (``copilot.inference.scale``; NaN: too few to tell),
    None where it was not measured.
    """

    frame: Frame
    probabilities: np.ndarray
    embedding: np.ndarray
    class_names: tuple[str, ...]
    model_name: str
    model_version: str
    backend: str
    frame_px_per_px: float = 1.0
    task: str = "particles"
    network_input: np.ndarray | None = None
    precomputed_maps: OutputMaps | None = field(default=None, repr=False)
    particle_px: float | None = None

    @property
    def nm_per_px(self) -> float | None:
        return None if self.frame.nm_per_px is None else self.frame.nm_per_px * self.frame_px_per_px

    @cached_property
    def maps(self) -> OutputMaps:
        return self.precomputed_maps if self.precomputed_maps is not None else output_maps(self.probabilities)

    @property
    def labels(self) -> np.ndarray:
        """Arg-max class per pixel (uint8)."""
        return self.maps.labels

    @property
    def confidence(self) -> np.ndarray:
        """Max class probability per pixel."""
        return self.maps.confidence


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a Frame into a Segmentation: what the pipeline reads from an inference backend.

    ``card``: the model card (classes, working scale, embedding reference, reliability regressor); ``folder``: where
    the card's files are (None for a backend without one); ``selection``: ``(candidate, outcome)`` pairs saying why
    this backend was chosen (may be empty); ``close`` releases sessions and device memory.
    """

    name: str
    card: "ModelCard"
    folder: Path | None
    selection: list[tuple[str, str]]

    def segment(self, frame: Frame) -> Segmentation: ...

    def close(self) -> None: ...
