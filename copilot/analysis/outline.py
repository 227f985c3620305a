"""One particle's sub-pixel outline: the 0.5 iso-line of its refined probability field (marching squares), its
convex hull, the Feret diameters of that hull (rotating calipers) and its concavities (the pockets between the
outline and the hull, where touching particles meet).

Coordinates are (row, col) in the field's pixels, pixel centres at integers, so a pixel's edges are at ± 0.5: the
iso-line of a hard 0/1 mask runs along the pixel edges, and a rectangle of h × w pixels has Feret min min(h, w) (its corners cut by half a pixel).

>>> field = np.zeros((9, 12), np.float32); field[2:6, 3:10] = 1
>>> [round(float(x), 3) for x in feret(outline_points(field))]
[7.616, 4.0]
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours


def outline_points(field: np.ndarray) -> np.ndarray:
    """Every point of the field's 0.5 iso-lines, (n, 2); (0, 2) when the field never reaches 0.5."""
    lines = find_contours(np.pad(field, 1), 0.5) if field.size else []
    return np.concatenate(lines) - 1.0 if lines else np.zeros((0, 2))


def longest_outline(field: np.ndarray) -> np.ndarray:
    """The longest closed 0.5 iso-line (the particle's outer boundary), without its repeated end point."""
    lines = [c for c in find_contours(np.pad(field, 1), 0.5) if len(c) > 3] if field.size else []
    return max(lines, key=len)[:-1] - 1.0 if lines else np.zeros((0, 2))


def hull_indices(points: np.ndarray) -> np.ndarray | None:
    """Indices of the convex hull's vertices (counter-clockwise), None for fewer than 3 non-collinear points."""
    if len(points) < 3:
        return None
    try:
        return ConvexHull(points).vertices
    except (QhullError, ValueError):
        return None


def feret(points: np.ndarray) -> tuple[float, float]:
    """Feret max (largest distance between hull vertices) and Feret min (smallest hull width, over the directions
    normal to its edges: exact for a polygon) of a point set; (nan, nan) without a hull."""
    v = hull_indices(points)
    if v is None:
        return float("nan"), float("nan")
    h = points[v]
    d = h[:, None, :] - h[None, :, :]
    fmax = float(np.sqrt((d * d).sum(-1).max()))
    e = np.roll(h, -1, axis=0) - h
    length = np.hypot(e[:, 0], e[:, 1])
    keep = length > 1e-12
    normal = np.stack([-e[keep, 1], e[keep, 0]], axis=1) / length[keep, None]
    proj = h @ normal.T
    return fmax, float((proj.max(axis=0) - proj.min(axis=0)).min())


def pockets(outline: np.ndarray) -> list[tuple[float, int]]:
    """The concavities of a closed outline, deepest first: for each stretch of the outline between consecutive hull
    vertices, its point farthest inside the hull edge, as (depth, index into ``outline``)."""
    v = hull_indices(outline)
    if v is None:
        return []
    v = np.sort(v)
    n = len(outline)
    out = []
    for i, j in zip(v, np.roll(v, -1)):
        idx = np.arange(i + 1, j) if j > i else np.r_[np.arange(i + 1, n), np.arange(0, j)]
        if idx.size == 0:
            continue
        a, t = outline[i], outline[j] - outline[i]
        length = float(np.hypot(*t))
        if length < 1e-12:
            continue
        rel = outline[idx] - a
        depth = np.abs(t[0] * rel[:, 1] - t[1] * rel[:, 0]) / length
        best = int(np.argmax(depth))
        out.append((float(depth[best]), int(idx[best])))
    return sorted(out, reverse=True)
