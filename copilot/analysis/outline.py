"""One particle's sub-pixel outline: the 0.5 iso-line of its refined probability field (marching squares), its
convex hull, and its concavities (the pockets between the outline and the hull, where touching particles meet).

Coordinates are (row, col) in the field's pixels, pixel centres at integers, so a pixel's edges are at ± 0.5: the
iso-line of a hard 0/1 mask runs along the pixel edges.

>>> field = np.zeros((9, 12), np.float32); field[2:7, 2:10] = 1; field[2:4, 5:7] = 0  # a notch 2 px deep
>>> outline = longest_outline(field)
>>> depth, at = pockets(outline)[0]
>>> round(depth, 2), outline[at].tolist()
(2.0, [3.5, 5.0])
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours


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
