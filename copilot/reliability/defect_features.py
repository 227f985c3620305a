"""Seed 002's output features per defect class (cavity, loop): the features the paper built on this very task,
read from the defects model's own output, so the regressor can predict each class's F1, precision and recall.

Per class ``{c}_``: object counts per confidence bin (an object's confidence = mean probability of its own class
over its pixels), number of objects, mean/std confidence, mean/std fractional size (object area / frame area),
area ratio (class pixels / frame), and the mean diameter in working pixels.
"""

from __future__ import annotations

import numpy as np

from copilot.analysis.defect_instances import DEFECT_CLASSES
from copilot.analysis.measurements import FrameMeasurements
from copilot.reliability.features import CONFIDENCE_BINS


def defect_features(fm: FrameMeasurements) -> dict[str, float]:
    """Per-class features of a defects frame; empty for any other task."""
    d = fm.summary.defects
    if d is None:
        return {}
    seg = fm.segmentation
    names = tuple(seg.class_names)
    inst = fm.instances
    n = int(d.instance_classes.size)
    flat = inst.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:].astype(float)
    out: dict[str, float] = {}
    for name in DEFECT_CLASSES:
        if name not in names:
            continue
        c = names.index(name)
        sel = (d.instance_classes == c) & (area > 0)
        conf_all = np.bincount(flat, seg.probabilities[c].ravel(), minlength=n + 1)[1:] / np.maximum(area, 1)
        conf, sizes = conf_all[sel], area[sel] / inst.size
        counts, _ = np.histogram(conf, bins=CONFIDENCE_BINS + [1.0 + 1e-9])
        out.update({f"{name}_counts_{b}": float(k) for b, k in zip(CONFIDENCE_BINS, counts)})
        diam = 2 * np.sqrt(area[sel] / np.pi)
        out.update({
            f"{name}_n_objects": float(sel.sum()),
            f"{name}_mean_confidence": float(conf.mean()) if conf.size else 0.0,
            f"{name}_std_confidence": float(conf.std()) if conf.size else 0.0,
            f"{name}_mean_fractional_size": float(sizes.mean()) if sizes.size else 0.0,
            f"{name}_std_fractional_size": float(sizes.std()) if sizes.size else 0.0,
            f"{name}_area_ratio": float(np.count_nonzero(seg.labels == c) / inst.size),
            f"{name}_mean_diameter_px": float(diam.mean()) if diam.size else 0.0,
        })
    return out
