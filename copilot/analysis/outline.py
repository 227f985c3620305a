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
    vertices, its point farthest inside the hull edge, as (depth, index into ``outline``). All stretches at once."""
    v = hull_indices(outline)
    if v is None:
        return []
    v = np.sort(v)
    n = len(outline)
    j = np.roll(v, -1)
    t = outline[j] - outline[v]  # each hull edge
    length = np.hypot(t[:, 0], t[:, 1])
    count = (j - v - 1) % n  # outline points strictly between the edge's ends (wrapping past the end)
    keep = (count > 0) & (length >= 1e-12)
    v, t, length, count = v[keep], t[keep], length[keep], count[keep]
    if not v.size:
        return []
    edge = np.repeat(np.arange(v.size), count)
    first = np.cumsum(count) - count
    idx = (v[edge] + 1 + np.arange(edge.size) - first[edge]) % n
    rel = outline[idx] - outline[v][edge]
    depth = np.abs(t[edge, 0] * rel[:, 1] - t[edge, 1] * rel[:, 0]) / length[edge]
    deepest = np.maximum.reduceat(depth, first)
    at = np.minimum.reduceat(np.where(depth == deepest[edge], np.arange(edge.size), edge.size), first)
    return sorted(zip(depth[at].tolist(), idx[at].tolist()), reverse=True)
