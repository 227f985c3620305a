"""Per-object geometry for every label of an instance image at once, fast enough for ~1000 particles per frame.

Moments (area, centroid, ellipse axes) come from label-wise sums over the whole image in one pass (numpy
bincount), with regionprops' own definitions: ``axis_major_length = 4·√λ₁`` of the inertia tensor, ECD
``√(4·area/π)``. The perimeter is scikit-image's ``measure.perimeter`` (4-neighbourhood) algorithm, what regionprops
reports, applied to all labels in one pass. Feret diameters and the convex area come from the support function of
the hull skimage's convex_hull_image builds (see hull_measures), so solidity equals regionprops'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class ShapeTable:
    """Arrays indexed by label - 1, lengths and areas in pixels of the labelled grid."""

    label: np.ndarray
    area: np.ndarray
    centroid_row: np.ndarray
    centroid_col: np.ndarray
    axis_major: np.ndarray
    axis_minor: np.ndarray
    perimeter: np.ndarray
    feret_max: np.ndarray
    feret_min: np.ndarray
    area_convex: np.ndarray
    touches_edge: np.ndarray

    @property
    def ecd(self) -> np.ndarray:
        return np.sqrt(4 * self.area / np.pi)

    @property
    def solidity(self) -> np.ndarray:
        return self.area / np.maximum(self.area_convex, self.area)

    @property
    def circularity(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            c = 4 * np.pi * self.area / self.perimeter**2
        return np.where(self.perimeter > 0, np.minimum(c, 1.0), 1.0)

    @property
    def aspect_ratio(self) -> np.ndarray:
        """Major / minor ellipse axis; for a one-pixel-thin object (minor axis 0) Feret max / Feret min instead."""
        ellipse = self.axis_major / np.maximum(self.axis_minor, 1e-12)
        return np.where(self.axis_minor > 1e-9, ellipse, self.feret_max / np.maximum(self.feret_min, 1.0))


def moments(instances: np.ndarray, n: int):
    """Area, centroid (row, col) and the two ellipse axis lengths per label 1..n."""
    flat = instances.ravel()
    idx = np.flatnonzero(flat)
    lab = flat[idx]
    rows, cols = np.divmod(idx, instances.shape[1])
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)

    def total(w=None):
        return np.bincount(lab, weights=w, minlength=n + 1)[1:]

    area = total()
    safe = np.maximum(area, 1)
    cr, cc = total(rows) / safe, total(cols) / safe
    # central second moments / area, per label (centred first, for numerical stability)
    dr, dc = rows - cr[lab - 1], cols - cc[lab - 1]
    mrr, mcc, mrc = total(dr * dr) / safe, total(dc * dc) / safe, total(dr * dc) / safe
    half_trace, root = (mrr + mcc) / 2, np.sqrt(((mrr - mcc) / 2) ** 2 + mrc**2)
    major = 4 * np.sqrt(np.maximum(half_trace + root, 0))
    minor = 4 * np.sqrt(np.maximum(half_trace - root, 0))
    return area, cr, cc, major, minor


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


def perimeters(instances: np.ndarray, n: int) -> np.ndarray:
    """skimage.measure.perimeter(mask, 4) of every label at once (same border codes and weights).

    A pixel is on the border when a 4-neighbour is not of its label; its code is 1 + 2·(border 4-neighbours of the
    same label) + 10·(border diagonal neighbours of the same label), exactly the convolution skimage applies.
    """
    lab = np.pad(instances, 1)
    core = lab[1:-1, 1:-1]
    h, w = core.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return lab[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    cross = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    interior = core > 0
    for dy, dx in cross:
        interior &= shifted(dy, dx) == core
    border = np.pad((core > 0) & ~interior, 1)
    code = border[1:-1, 1:-1].astype(np.int32)
    for (dy, dx), weight in [*((c, 2) for c in cross), *(((a, b), 10) for a in (-1, 1) for b in (-1, 1))]:
        code += weight * (border[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] & (shifted(dy, dx) == core))
    on = border[1:-1, 1:-1]
    return np.bincount(core[on], weights=_PERIMETER_WEIGHTS[np.minimum(code[on], 49)], minlength=n + 1)[1:]


def hull_measures(instances: np.ndarray, n: int, n_dir: int = 90, chunk: int = 45):
    """Feret max, Feret min and convex area (pixels) of labels 1..n at once, from their support function.

    The hull is skimage's: the pixel-edge midpoints of each row's end pixels. Its extent is projected on ``n_dir``
    directions over 180° (Feret max within 0.01 px, Feret min within 0.25 px, exact on the axes); the convex area
    counts, row by row, the pixel centres inside the intersection of those 2·n_dir half-planes — what
    convex_hull_image + sum gives. No per-particle Python loop: ~45 ms for 700 particles instead of ~170 ms.
    """
    H, W = instances.shape
    flat = instances.ravel()
    idx = np.flatnonzero(flat)
    lab = flat[idx].astype(np.int64)
    row, col = np.divmod(idx, W)
    key = lab * H + row
    order = np.argsort(key, kind="stable")
    key, col = key[order], col[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    first = np.minimum.reduceat(col, starts).astype(np.float64)
    last = np.maximum.reduceat(col, starts).astype(np.float64)
    g_lab, g_row = np.divmod(key[starts], H)
    g_row = g_row.astype(np.float64)
    ys = np.concatenate([g_row - 0.5, g_row + 0.5, g_row, g_row - 0.5, g_row + 0.5, g_row])
    xs = np.concatenate([first, first, first - 0.5, last, last, last + 0.5])
    p_lab = np.tile(g_lab, 6)
    o = np.argsort(p_lab, kind="stable")
    ys, xs, p_lab = ys[o], xs[o], p_lab[o]
    pstarts = np.flatnonzero(np.r_[True, p_lab[1:] != p_lab[:-1]])
    theta = np.arange(n_dir) * np.pi / n_dir
    c, s = np.cos(theta), np.sin(theta)
    hmax = np.empty((n, n_dir)); hmin = np.empty((n, n_dir))
    present = p_lab[pstarts] - 1
    for k in range(0, n_dir, chunk):
        proj = np.outer(c[k:k + chunk], xs) + np.outer(s[k:k + chunk], ys)
        hmax[present, k:k + chunk] = np.maximum.reduceat(proj, pstarts, axis=1).T
        hmin[present, k:k + chunk] = np.minimum.reduceat(proj, pstarts, axis=1).T
    width = hmax - hmin
    # convex area: pixel centres of each occupied row inside all 2·n_dir half-planes
    use = np.abs(c) > 1e-9
    cu, su = c[use], s[use]
    gi = g_lab - 1
    a = (hmax[gi][:, use] - g_row[:, None] * su) / cu
    b = (hmin[gi][:, use] - g_row[:, None] * su) / cu
    upper = np.where(cu > 0, a, b).min(axis=1)
    lower = np.where(cu > 0, b, a).max(axis=1)
    count = np.maximum(np.floor(upper + 1e-9) - np.ceil(lower - 1e-9) + 1, 0)
    area_convex = np.bincount(g_lab, weights=count, minlength=n + 1)[1:]
    return width.max(axis=1), width.min(axis=1), area_convex

def shape_table(instances: np.ndarray) -> ShapeTable:
    """Geometry of labels 1..max(instances) (labels must be sequential, as relabel_sequential leaves them)."""
    n = int(instances.max(initial=0))
    area, cr, cc, major, minor = moments(instances, n)
    perim = perimeters(instances, n)
    fmax, fmin, convex = hull_measures(instances, n) if n else (np.zeros(0),) * 3
    h, w = instances.shape
    edge = np.array([sl is not None and (sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w)
                     for sl in ndi.find_objects(instances, max_label=n)], bool).reshape(n)
    return ShapeTable(np.arange(1, n + 1), area, cr, cc, major, minor, perim, fmax, fmin, convex, edge)
