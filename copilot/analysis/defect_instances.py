"""Defect instances from a defects model's class probabilities: each connected region of one defect class is one
defect, when the model is sure enough of it on average (``MIN_CONFIDENCE``: the irregular blobs it paints on noise
and bend contours have a mean probability of 0.57-0.86, real defects 0.88-0.98: 10th-90th percentiles, in-domain);
its size comes from the probability mass around it (sub-pixel), not from its pixel count.

Shared by the measurements (``copilot.analysis.defects``), the held-out metrics and the reliability recipe.

>>> p = np.zeros((3, 16, 16), np.float32); p[0] = 1; p[:, 2:6, 2:6] = [[[0]], [[1]], [[0]]]
>>> p[:, 9:14, 8:15] = [[[0]], [[0]], [[1]]]
>>> lab, cls = defect_instances(p, ("background", "cavity", "loop"))
>>> int(lab.max()), cls.tolist()
(2, [1, 2])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

DEFECT_CLASSES = ("cavity", "loop")
MIN_CONFIDENCE = 0.7  # AnalysisSettings.defect_min_confidence


def defect_instances(probabilities: np.ndarray, class_names: tuple[str, ...], min_area_px: int = 3,
                     labels: np.ndarray | None = None, min_confidence: float = MIN_CONFIDENCE
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(instance labels int32 on the probability grid, class index of each instance: ``classes[label - 1]``).

    Components of the arg-max of each defect class (8-connected) with at least ``min_area_px`` pixels and a mean
    probability of their class of at least ``min_confidence``."""
    labels = np.argmax(probabilities, axis=0) if labels is None else labels
    out = np.zeros(labels.shape, np.int32)
    classes: list[int] = []
    eight = np.ones((3, 3), bool)
    for name in DEFECT_CLASSES:
        if name not in class_names:
            continue
        c = class_names.index(name)
        comp, n = ndi.label(labels == c, structure=eight)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        mass = np.bincount(comp.ravel(), weights=probabilities[c].ravel(), minlength=n + 1)
        keep = np.nonzero((sizes >= min_area_px) & (mass >= min_confidence * sizes))[0]
        keep = keep[keep > 0]
        lut = np.zeros(n + 1, np.int32)
        lut[keep] = np.arange(len(classes) + 1, len(classes) + 1 + keep.size)
        sel = lut[comp]
        out[sel > 0] = sel[sel > 0]
        classes += [c] * int(keep.size)
    return out, np.asarray(classes, np.int32)


def soft_areas_px(probabilities: np.ndarray, instances: np.ndarray, classes: np.ndarray, grow_px: int = 1) -> np.ndarray:
    """Each instance's area in grid pixels as the sum of its class probability over its region grown by
    ``grow_px`` (pixels of other instances excluded): the model's 0.5 iso-line area to a fraction of a pixel."""
    n = classes.size
    if n == 0:
        return np.zeros(0)
    grown = ndi.grey_dilation(instances, size=2 * grow_px + 1)
    region = np.where(instances > 0, instances, grown)
    out = np.zeros(n)
    for c in np.unique(classes):
        vals = np.bincount(region.ravel(), weights=probabilities[c].ravel(), minlength=n + 1)[1:n + 1]
        out[classes == c] = vals[classes == c]
    return out
