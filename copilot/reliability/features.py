"""Seed 002's output features, adapted to segmentation: what the model's own output says about its reliability.

Objects are the measured instances (particles) or the connected regions of non-background classes (phases). An
object's confidence is its mean foreground probability; its fractional size is its area over the frame's area.
Everything is read from the segmentation's output maps (arg-max, confidence, entropy), computed once per frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.measurements import FrameMeasurements
from copilot.inference.segmentation import OutputMaps, output_maps
from copilot.reliability.quality import percentiles

CONFIDENCE_BINS = [round(0.1 * i, 1) for i in range(1, 10)]  # counts_0.1 … counts_0.9: [b, b + 0.1)
OUTPUT_FEATURES = (
    [f"counts_{b}" for b in CONFIDENCE_BINS]
    + ["n_objects", "mean_confidence", "std_confidence", "mean_fractional_size", "std_fractional_size",
       "area_ratio", "image_confidence", "mean_entropy", "p95_entropy", "uncertain_fraction"]
)
_ENTROPY_SAMPLE = 256  # p95 of the entropy from at most about this many rows and columns


def entropy_map(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel predictive entropy normalized to [0, 1] by log(n_classes)."""
    return output_maps(probabilities).entropy


def object_labels(fm: FrameMeasurements) -> tuple[np.ndarray, int]:
    if fm.summary.particles is not None:
        return fm.instances, int(fm.instances.max(initial=0))
    labels, n = ndi.label(fm.segmentation.maps.labels > 0)
    return labels, int(n)


def output_features(fm: FrameMeasurements, maps: OutputMaps | None = None) -> dict[str, float]:
    """The OUTPUT_FEATURES of one frame (``maps``: the segmentation's own unless given)."""
    maps = fm.segmentation.maps if maps is None else maps
    labels, n = object_labels(fm)
    at = np.flatnonzero(labels)  # the objects' pixels: sums over them in the same order as over the whole frame
    flat = labels.ravel()[at]
    area = np.bincount(flat, minlength=n + 1)
    area[0] = labels.size - at.size
    objects = area[1:] > 0
    conf = (np.bincount(flat, maps.foreground.ravel()[at], minlength=n + 1)[1:][objects] / area[1:][objects]
            if n else np.zeros(0))
    sizes = area[1:][objects] / labels.size if n else np.zeros(0)
    counts, _ = np.histogram(conf, bins=CONFIDENCE_BINS + [1.0 + 1e-9])
    ent = maps.entropy
    step_r, step_c = max(1, ent.shape[0] // _ENTROPY_SAMPLE), max(1, ent.shape[1] // _ENTROPY_SAMPLE)
    f = {f"counts_{b}": float(c) for b, c in zip(CONFIDENCE_BINS, counts)}
    f.update(
        n_objects=float(n),
        mean_confidence=float(conf.mean()) if conf.size else 0.0,
        std_confidence=float(conf.std()) if conf.size else 0.0,
        mean_fractional_size=float(sizes.mean()) if sizes.size else 0.0,
        std_fractional_size=float(sizes.std()) if sizes.size else 0.0,
        area_ratio=float(1.0 - area[0] / labels.size),
        image_confidence=float(maps.confidence.mean(dtype=np.float64)),
        mean_entropy=float(ent.mean(dtype=np.float64)),
        p95_entropy=float(percentiles(ent[::step_r, ::step_c], 95)),
        uncertain_fraction=float(np.count_nonzero(ent > 0.5) / ent.size),
    )
    return f
