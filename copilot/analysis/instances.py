"""Watershed where it has work to do: only the connected regions that hold more than one marker are flooded.

A region with one marker becomes that marker's label as it is, a region with none stays background — what a
watershed over the whole image gives too (flooding never crosses from one connected region of the mask to
another). The regions with several markers (touching particles) are cut out by their bounding boxes and packed side
by side into one small canvas (``geometry.pack``), flooded there in one call, and written back: the cost follows the
touching particles, not the frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from copilot.analysis.geometry import pack
from copilot.analysis.kernels import kernel


def watershed_touching(elevation: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``watershed(elevation, markers, mask=mask)`` (4-connected), flooding only the regions of ``mask`` with two
    or more markers. ``markers``: labels 1..k inside ``mask``, 0 elsewhere."""
    regions, n = label(mask)
    k = int(markers.max(initial=0))
    region_of = np.zeros(k + 1, np.intp)  # every marker lies in one region (it is inside the mask)
    compiled = kernel("marker_regions") if markers.ndim == 2 else None
    if compiled is not None:
        compiled(np.ascontiguousarray(markers), np.ascontiguousarray(regions), region_of)
    else:
        at = np.flatnonzero(markers)
        region_of[markers.ravel()[at]] = regions.ravel()[at]
    count = np.bincount(region_of[1:], minlength=n + 1)
    lut = np.zeros(n + 1, markers.dtype)
    ones = np.flatnonzero(count[region_of] == 1)
    lut[region_of[ones]] = ones
    lut[0] = 0
    busy = np.flatnonzero(count[1:] > 1) + 1
    fused = kernel("take_and_boxes") if busy.size and regions.ndim == 2 else None
    if fused is not None:  # the lookup and the busy regions' boxes (find_objects') in one pass
        out = np.empty(regions.shape, lut.dtype)
        wanted = np.zeros(n + 1, bool)
        wanted[busy] = True
        found = np.zeros((n, 4), np.int64)
        fused(lut, np.ascontiguousarray(regions), out, wanted, found)
        boxes = [(slice(a, b), slice(c, d)) for a, b, c, d in found[busy - 1].tolist()]
    else:
        out = take(lut, regions)
        if not busy.size:
            return out
        slices = find_objects(regions, n)
        boxes = [slices[r - 1] for r in busy]
    tiles = [regions[box] == r for box, r in zip(boxes, busy)]
    # a canvas about square (the watershed's cost follows the canvas; each tile floods alone, whatever the layout)
    canvas, offsets = pack(tiles, width=int(2 * np.sqrt(sum(t.size for t in tiles))) + 2)
    height, width = canvas.shape
    elev = np.zeros((height, width), elevation.dtype)
    seeds = np.zeros((height, width), markers.dtype)
    for tile, box, (oy, ox) in zip(tiles, boxes, offsets):
        view = (slice(oy, oy + tile.shape[0]), slice(ox, ox + tile.shape[1]))
        elev[view][tile] = elevation[box][tile]
        seeds[view][tile] = markers[box][tile]
    flooded = watershed(elev, seeds, mask=canvas > 0)
    for tile, box, (oy, ox) in zip(tiles, boxes, offsets):
        out[box][tile] = flooded[oy:oy + tile.shape[0], ox:ox + tile.shape[1]][tile]
    return out


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndi.label(mask)`` of a 2-d mask (4-connected, int32, numbered in the raster order of each component's
    first pixel), from its runs in one compiled pass (``kernels.label_runs``) when numba is there."""
    fast = kernel("label_runs") if mask.ndim == 2 and mask.size else None
    if fast is None:
        return ndi.label(mask)
    mask = np.ascontiguousarray(mask, dtype=bool)
    out = np.zeros(mask.shape, np.int32)
    n = fast(mask, np.count_nonzero(mask), out)
    return out, int(n)


def find_objects(labels: np.ndarray, max_label: int | None = None) -> list[tuple[slice, slice] | None]:
    """``ndi.find_objects(labels, max_label)`` of a 2-d label image, from one compiled pass (``kernels.label_boxes``)
    when numba is there."""
    compiled = kernel("label_boxes") if labels.ndim == 2 else None
    n = int(labels.max(initial=0)) if max_label is None else int(max_label)
    if compiled is None or n <= 0:
        return ndi.find_objects(labels, max_label=n)
    boxes = np.zeros((n, 4), np.int64)
    compiled(np.ascontiguousarray(labels), boxes)
    return [(slice(a, b), slice(c, d)) if b else None for a, b, c, d in boxes.tolist()]


def take(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``lut[labels]`` (one compiled pass when numba is there)."""
    compiled = kernel("take_labels") if labels.ndim == 2 else None
    if compiled is None:
        return np.take(lut, labels)
    out = np.empty(labels.shape, lut.dtype)
    compiled(lut, np.ascontiguousarray(labels), out)
    return out


def drop_small(instances: np.ndarray, min_area_px: float) -> np.ndarray:
    """Labels smaller than ``min_area_px`` pixels removed and the rest renumbered 1..k in their order (what zeroing
    them and ``relabel_sequential`` give), int32, in one lookup (or one compiled pass, ``kernels.relabel_large``)."""
    compiled = kernel("relabel_large") if instances.ndim == 2 and instances.size else None
    if compiled is not None and instances.min() >= 0:
        out = np.empty(instances.shape, np.int32)
        compiled(np.ascontiguousarray(instances), float(min_area_px), out)
        return out
    sizes = np.bincount(instances.ravel())
    keep = (sizes >= min_area_px) & (sizes > 0)  # a label without pixels (a marker joined to another) goes too
    keep[0] = False
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return lut[instances]
