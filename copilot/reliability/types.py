"""What reliability hands on: plain, numpy-backed types (result.py turns them into the document)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FrameReliability:
    """One frame's reliability: the regressor's predictions, its inputs, and the per-pixel uncertainty.

    ``predicted_*`` are in [0, 1] (None without a regressor); ``shift_score`` is the RMS z-score of the embedding
    against the training embeddings; ``shift_window_mmd2`` is filled in by the stream's rolling window, in frame
    order; ``embedding`` is the model's pooled embedding (what the window holds, and what rebuilds it after a restart);
    ``uncertainty`` is the normalized predictive entropy on the working grid (float32, 0 … 1).
    """

    predicted_f1: float | None
    predicted_precision: float | None
    predicted_recall: float | None
    image_confidence: float
    shift_score: float | None
    quality: dict[str, float]
    features: dict[str, float]
    uncertainty: np.ndarray = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    shift_window_mmd2: float | None = None
    predicted_per_class: dict[str, float] = field(default_factory=dict)  # defects: cavity_f1, loop_recall, ...


@dataclass(frozen=True)
class Verdict:
    """``level`` is ok | warn | fail; ``reasons`` are sentences a microscopist understands, worst first."""

    level: str
    reasons: tuple[str, ...] = ()
