"""Result documents → napari layer data (``(data, kwargs, kind)`` tuples): frame image, labels coloured by ECD, the
particle table as the labels layer's features. Plain numpy/pandas; napari is not imported here.

Layers are scaled in nm when the frame is calibrated (else in frame pixels), so a frame, a preview and labels on the
model's grid line up whatever their pixel counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps

from copilot.api import particle_table
from copilot.document.schema import ResultDocument

TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
LayerData = tuple[Any, dict[str, Any], str]


def frame_scale(doc: ResultDocument) -> float:
    """Length of one frame pixel in the layers' unit (nm, or frame pixels when uncalibrated)."""
    return doc.calibration.nm_per_px or 1.0


def ecd_colours(table: pd.DataFrame, cmap: str = "viridis") -> dict[int | None, tuple[float, ...]]:
    """A napari label colormap: each particle coloured by its ECD (small → dark), background transparent."""
    colours: dict[int | None, tuple[float, ...]] = {None: TRANSPARENT, 0: TRANSPARENT}
    if table.empty:
        return colours
    ecd = table["ecd_px"].to_numpy(float)
    lo, hi = np.nanmin(ecd), np.nanmax(ecd)
    span = hi - lo if hi > lo else 1.0
    cm = colormaps[cmap]
    for pid, e in zip(table["particle_id"].astype(int), ecd):
        colours[int(pid)] = tuple(float(c) for c in cm(0.15 + 0.85 * (e - lo) / span))
    return colours


def features(table: pd.DataFrame) -> pd.DataFrame:
    """The particle table as Labels features: ``index`` is the label value napari looks each row up by."""
    return table.assign(index=table["particle_id"].astype(int)).reset_index(drop=True)


def labels_layer(doc: ResultDocument, labels: np.ndarray, name: str | None = None) -> LayerData:
    """Instance labels (any grid covering the frame) with ECD colours and the particle table as features."""
    labels = np.asarray(labels)
    per_px = frame_scale(doc) * doc.image.height_px / labels.shape[0]
    table = particle_table([doc])
    kwargs: dict[str, Any] = {"name": name or f"{doc.frame_id} labels", "scale": (per_px, per_px), "opacity": 0.6,
                              "metadata": {"copilot.frame_id": doc.frame_id, "length_unit": doc.measurements.length_unit}}
    if doc.measurements.task == "particles":
        kwargs.update(features=features(table), colormap=ecd_colours(table))
    return labels, kwargs, "labels"


def image_layer(doc: ResultDocument, pixels: np.ndarray, name: str | None = None) -> LayerData:
    """The frame (or a preview of it: any size covering the frame) in the same units as its labels."""
    pixels = np.asarray(pixels)
    per_px = frame_scale(doc) * doc.image.height_px / pixels.shape[0]
    return pixels, {"name": name or doc.frame_id, "scale": (per_px, per_px),
                    "metadata": {"copilot.document": doc.model_dump(mode="json", by_alias=True)}}, "image"
