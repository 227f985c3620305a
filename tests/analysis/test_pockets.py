"""outline.pockets (all stretches at once) gives what the stretch-by-stretch definition gives, ties included."""

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.outline import hull_indices, longest_outline, pockets


def pockets_one_by_one(outline: np.ndarray) -> list[tuple[float, int]]:
    """The definition: per stretch between consecutive hull vertices, its point farthest inside the hull edge."""
    v = hull_indices(outline)
    if v is None:
        return []
    v = np.sort(v)
    n = len(outline)
    out = []
    for i, j in zip(v, np.roll(v, -1)):
        idx = np.arange(i + 1, j) if j > i else np.r_[np.arange(i + 1, n), np.arange(0, j)]
        t = outline[j] - outline[i]
        length = float(np.hypot(*t))
        if idx.size == 0 or length < 1e-12:
            continue
        rel = outline[idx] - outline[i]
        depth = np.abs(t[0] * rel[:, 1] - t[1] * rel[:, 0]) / length
        best = int(np.argmax(depth))
        out.append((float(depth[best]), int(idx[best])))
    return sorted(out, reverse=True)


def test_pockets_equal_the_definition():
    rng = np.random.default_rng(0)
    for k in range(150):
        h, w = rng.integers(8, 50, 2)
        field = ndi.gaussian_filter(rng.random((h, w)), rng.uniform(1, 4))
        field = (field - field.min()) / (np.ptp(field) + 1e-9)
        outline = longest_outline(field)
        if k % 3 == 0:
            outline = np.round(outline * 2) / 2  # collinear points and equal depths
        assert pockets(outline) == pockets_one_by_one(outline)
    assert pockets(np.zeros((2, 2))) == [] and pockets(np.array([[0.0, 0], [0, 1], [0, 2], [0, 3]])) == []
