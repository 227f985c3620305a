"""Seed 002's output features, adapted to segmentation: what the model's own output says about its reliability.

Objects are the measured instances (particles) or the connected regions of non-background classes (phases). An
object's confidence is its mean foreground probability; its fractional size is its area over the frame's area.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.measurements import FrameMeasurements

CONFIDENCE_BINS = [round(0.1 * i, 1) for i in range(1, 10)]  # counts_0.1 … counts_0.9: [b, b + 0.1)
OUTPUT_FEATURES = (
    [f"counts_{b}" for b in CONFIDENCE_BINS]
    + ["n_objects", "mean_confidence", "std_confidence", "mean_fractional_size", "std_fractional_size",
       "area_ratio", "image_confidence", "mean_entropy", "p95_entropy", "uncertain_fraction"]
)


def entropy_map(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel predictive entropy normalized to [0, 1] by log(n_classes)."""
    p = np.clip(probabilities, 1e-7, 1.0)
    return (-(p * np.log(p)).sum(axis=0) / np.log(p.shape[0])).astype(np.float32)


def object_labels(fm: FrameMeasurements) -> tuple[np.ndarray, int]:
    if fm.summary.particles is not None:
        return fm.instances, int(fm.instances.max(initial=0))
    labels, n = ndi.label(fm.segmentation.labels > 0)
    return labels, int(n)


def output_features(fm: FrameMeasurements, entropy: np.ndarray | None = None) -> dict[str, float]:
    seg = fm.segmentation
    probs = seg.probabilities
    foreground = 1.0 - probs[0]
    labels, n = object_labels(fm)
    index = np.arange(1, n + 1)
    conf = np.asarray(ndi.mean(foreground, labels, index)) if n else np.zeros(0)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] / labels.size if n else np.zeros(0)
    counts, _ = np.histogram(conf, bins=CONFIDENCE_BINS + [1.0 + 1e-9])
    ent = entropy_map(probs) if entropy is None else entropy
    f = {f"counts_{b}": float(c) for b, c in zip(CONFIDENCE_BINS, counts)}
    f.update(
        n_objects=float(n),
        mean_confidence=float(conf.mean()) if n else 0.0,
        std_confidence=float(conf.std()) if n else 0.0,
        mean_fractional_size=float(sizes.mean()) if n else 0.0,
        std_fractional_size=float(sizes.std()) if n else 0.0,
        area_ratio=float((labels > 0).mean()),
        image_confidence=float(probs.max(axis=0).mean()),
        mean_entropy=float(ent.mean()),
        p95_entropy=float(np.percentile(ent[:: max(1, ent.shape[0] // 256), :: max(1, ent.shape[1] // 256)], 95)),
        uncertain_fraction=float((ent > 0.5).mean()),
    )
    return f
