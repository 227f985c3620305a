"""Domain shift: how unlike the training data a frame (and the recent stream) looks to the model.

Per frame: the RMS z-score of the pooled embedding against the training embeddings' mean and SD (a diagonal
Mahalanobis distance). Over a rolling window: the unbiased MMD² between the window's embeddings and a sample of the
training embeddings with an RBF kernel (median-heuristic bandwidth) — MMD/KID behave far better than FID on the
handful of frames a live window holds (seed 004). The reference's own kernel term is computed once, so a window
update costs a (window × reference) kernel only.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

import numpy as np

from copilot.inference.card import EmbeddingReference


def embedding_distance(embedding: np.ndarray, ref: EmbeddingReference) -> float:
    mu, sd = np.asarray(ref.mean), np.maximum(np.asarray(ref.std), 1e-6)
    z = (np.asarray(embedding, float).reshape(-1) - mu) / sd
    return float(np.sqrt(np.mean(z**2)))


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d2, 0))


def _self_term(x: np.ndarray, gamma: float) -> float:
    m = len(x)
    k = _rbf(x, x, gamma)
    return float((k.sum() - np.trace(k)) / (m * (m - 1)))


def mmd2(x: np.ndarray, y: np.ndarray, gamma: float, y_term: float | None = None) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d); ``y_term``: y's own kernel term, when known."""
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    yy = _self_term(y, gamma) if y_term is None else y_term
    return _self_term(x, gamma) + yy - 2 * float(_rbf(x, y, gamma).mean())


class ShiftReference:
    """The card's embedding reference, prepared once: standardization, bandwidth and the reference kernel term."""

    def __init__(self, ref: EmbeddingReference):
        self.ref = ref
        self.mean = np.asarray(ref.mean, float)
        self.sd = np.maximum(np.asarray(ref.std, float), 1e-6)
        self.samples_z: np.ndarray | None = None
        self.gamma = 1.0
        self._ref_term = 0.0
        if ref.samples:
            self.samples_z = self.standardize(np.asarray(ref.samples, float))
            sub = self.samples_z[:200]
            d2 = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
            med = np.median(d2[np.triu_indices(len(sub), 1)]) if len(sub) > 1 else 1.0
            self.gamma = 1.0 / max(med, 1e-9)
            if len(self.samples_z) > 1:
                self._ref_term = _self_term(self.samples_z, self.gamma)

    def standardize(self, e: np.ndarray) -> np.ndarray:
        return (np.asarray(e, float) - self.mean) / self.sd

    def distance(self, embedding: np.ndarray) -> float:
        z = self.standardize(np.asarray(embedding, float).reshape(-1))
        return float(np.sqrt(np.mean(z**2)))

    def window_mmd2(self, window_z: np.ndarray) -> float | None:
        if self.samples_z is None or len(self.samples_z) < 2 or len(window_z) < 2:
            return None
        return mmd2(window_z, self.samples_z, self.gamma, self._ref_term)


class ShiftWindow:
    """Accumulator (copilot.accumulator) of the recent embeddings per stream → rolling-window MMD².

    ``process(stream, embedding)`` folds one frame's pooled embedding in and returns the window's MMD² (None until
    ``min_frames`` frames, or without reference samples); ``rebuild`` restores a stream's window from the
    ``reliability.embedding`` of its recent result documents.
    """

    def __init__(self, ref: EmbeddingReference | ShiftReference | None, window: int = 10, min_frames: int = 3):
        self.ref = ShiftReference(ref) if isinstance(ref, EmbeddingReference) else ref
        self.window = window
        self.min_frames = min_frames
        self._recent: dict[str, deque] = {}

    def _deque(self, stream: str) -> deque:
        return self._recent.setdefault(stream, deque(maxlen=self.window))

    def process(self, stream: str, item: np.ndarray) -> float | None:
        if self.ref is None:
            return None
        self._deque(stream).append(self.ref.standardize(np.asarray(item, float).reshape(-1)))
        return self.results(stream)

    def results(self, stream: str) -> float | None:
        recent = self._recent.get(stream)
        if self.ref is None or not recent or len(recent) < self.min_frames:
            return None
        return self.ref.window_mmd2(np.stack(recent))

    def merge(self, other: "ShiftWindow") -> None:
        """Append ``other``'s frames (taken to be the later ones) to each stream's window."""
        if not isinstance(other, ShiftWindow):
            raise TypeError(f"cannot merge {type(other).__name__} into ShiftWindow")
        for stream, recent in other._recent.items():
            self._deque(stream).extend(recent)

    def rebuild(self, stream: str, documents: Iterable[dict]) -> None:
        self._recent.pop(stream, None)
        for doc in documents:
            emb = (doc.get("reliability") or {}).get("embedding")
            if emb and self.ref is not None and len(emb) == len(self.ref.mean):
                self._deque(stream).append(self.ref.standardize(np.asarray(emb, float)))
