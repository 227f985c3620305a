"""Domain shift: how unlike the training data a frame (and the recent stream) looks to the model.

Per frame: the RMS z-score of the pooled embedding against the training embeddings' mean and SD (a diagonal
Mahalanobis distance). Over a rolling window: the unbiased MMD² between the window's embeddings and a sample of the
training embeddings with an RBF kernel (median-heuristic bandwidth) — MMD/KID behave far better than FID on the
handful of frames a live window holds (seed 004).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from copilot.inference.card import EmbeddingReference


def embedding_distance(embedding: np.ndarray, ref: EmbeddingReference) -> float:
    mu, sd = np.asarray(ref.mean), np.maximum(np.asarray(ref.std), 1e-6)
    z = (np.asarray(embedding, float).reshape(-1) - mu) / sd
    return float(np.sqrt(np.mean(z**2)))


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d2, 0))


def mmd2(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return float("nan")
    kxx, kyy, kxy = _rbf(x, x, gamma), _rbf(y, y, gamma), _rbf(x, y, gamma)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


class ShiftMonitor:
    """Per-frame distance and rolling-window MMD² against the card's embedding reference, per stream."""

    def __init__(self, ref: EmbeddingReference | None, window: int = 10):
        self.ref = ref
        self.window = window
        self._recent: dict[str, deque] = {}
        self._ref_z = None
        self.gamma = 1.0
        if ref is not None and ref.samples:
            self._ref_z = self._standardize(np.asarray(ref.samples, float))
            sub = self._ref_z[:200]
            d2 = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
            med = np.median(d2[np.triu_indices(len(sub), 1)]) if len(sub) > 1 else 1.0
            self.gamma = 1.0 / max(med, 1e-9)

    def _standardize(self, e: np.ndarray) -> np.ndarray:
        return (e - np.asarray(self.ref.mean)) / np.maximum(np.asarray(self.ref.std), 1e-6)

    def update(self, stream: str, embedding: np.ndarray) -> tuple[float | None, float | None]:
        """(per-frame distance, window MMD²) — None where the card has no reference."""
        if self.ref is None:
            return None, None
        e = np.asarray(embedding, float).reshape(-1)
        recent = self._recent.setdefault(stream, deque(maxlen=self.window))
        recent.append(self._standardize(e))
        window_mmd = None
        if self._ref_z is not None and len(recent) >= 3:
            window_mmd = mmd2(np.stack(recent), self._ref_z, self.gamma)
        return embedding_distance(e, self.ref), window_mmd

    # Accumulator protocol (copilot.accumulator): the rolling window survives a restart
    def rebuild(self, stream: str, documents) -> None:
        """Refill ``stream``'s window from its recent result documents (JSON dicts, oldest first)."""
        if self.ref is None:
            return
        recent = self._recent.setdefault(stream, deque(maxlen=self.window))
        recent.clear()
        for d in documents:
            e = (d.get("reliability") or {}).get("embedding")
            if e is not None and len(e) == len(self.ref.mean):
                recent.append(self._standardize(np.asarray(e, float)))
