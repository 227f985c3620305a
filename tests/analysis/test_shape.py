"""The vectorised shape table against scikit-image, label by label, on awkward label images: touching and
interleaved labels, labels in several pieces, rows where a label has no pixel, one-pixel-thin objects."""

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from skimage.draw import ellipse
from skimage.measure import perimeter, regionprops
from skimage.segmentation import relabel_sequential

from copilot.analysis.shape import Runs, hull_chains, moments, row_extents, shape_table


def awkward_labels(seed: int, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inst = np.zeros((size, size), np.int32)
    for i in range(1, 30):
        rr, cc = ellipse(*rng.integers(0, size, 2), *rng.integers(1, 20, 2), rotation=rng.random() * 3,
                         shape=inst.shape)
        inst[rr, cc] = i  # later ellipses cut earlier ones: labels in pieces, interleaved in a row
    inst[rng.random(inst.shape) < 0.03] = 0  # holes, gaps in rows, rows with no pixel of a label
    inst[5, 10:40] = 30  # one pixel thin
    inst[20:50, 150] = 31
    return relabel_sequential(inst)[0]


def hull_of_edge_midpoints(mask: np.ndarray) -> ConvexHull:
    """skimage's hull points (pixel-edge midpoints of each row's end pixels), hulled by qhull."""
    pts = []
    for y in range(mask.shape[0]):
        xs = np.flatnonzero(mask[y])
        if xs.size:
            f, l = xs[0], xs[-1]
            pts += [(f, y - .5), (f, y + .5), (f - .5, y), (l, y - .5), (l, y + .5), (l + .5, y)]
    return ConvexHull(np.array(pts, float))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_equals_regionprops_label_by_label(seed):
    inst = awkward_labels(seed)
    t = shape_table(inst)
    regions = regionprops(inst)
    assert len(regions) == t.label.size
    for r in regions:
        k = r.label - 1
        assert t.area[k] == r.area
        assert (t.centroid_row[k], t.centroid_col[k]) == pytest.approx(r.centroid, abs=1e-9)
        assert t.axis_major[k] == pytest.approx(r.axis_major_length, abs=1e-7)
        assert t.axis_minor[k] == pytest.approx(r.axis_minor_length, abs=1e-7)
        assert t.perimeter[k] == pytest.approx(perimeter(r.image, 4), abs=1e-9)
        assert t.area_convex[k] == r.area_convex  # exact, rows without a pixel of the label included
        rows, cols = r.coords.T
        assert t.touches_edge[k] == (rows.min() == 0 or cols.min() == 0 or rows.max() == inst.shape[0] - 1
                                     or cols.max() == inst.shape[1] - 1)


@pytest.mark.parametrize("seed", [0, 3])
def test_thinned_hull_keeps_every_extreme_point(seed):
    inst = awkward_labels(seed)
    runs = Runs.of(inst)
    chain, xs, ys = hull_chains(*row_extents(runs))
    x = np.where(chain & 1, -xs, xs)
    theta = np.linspace(0, 2 * np.pi, 257)[:-1]
    for r in regionprops(inst):
        hull = hull_of_edge_midpoints(r.image)
        vertices = hull.points[hull.vertices] + [r.bbox[1], r.bbox[0]]
        mine = (chain >> 1) == r.label
        kept = np.stack([x[mine], ys[mine]], axis=1)
        assert len(kept) <= 2 * len(vertices) + 4  # thinned to about the hull's vertices
        support = lambda p: (np.cos(theta)[:, None] * p[:, 0] + np.sin(theta)[:, None] * p[:, 1]).max(axis=1)
        np.testing.assert_allclose(support(kept), support(vertices), atol=1e-9)


def test_moments_from_runs_match_pixel_sums():
    inst = awkward_labels(4)
    n = int(inst.max())
    area, cr, cc, major, minor = moments(Runs.of(inst), n)
    for k in range(1, n + 1):
        rows, cols = np.nonzero(inst == k)
        assert area[k - 1] == rows.size
        assert cr[k - 1] == pytest.approx(rows.mean(), abs=1e-9) and cc[k - 1] == pytest.approx(cols.mean(), abs=1e-9)


def test_empty_and_single_pixel_images():
    assert shape_table(np.zeros((8, 8), np.int32)).label.size == 0
    one = np.zeros((8, 8), np.int32)
    one[3, 4] = 1
    t = shape_table(one)
    assert t.area[0] == 1 and t.area_convex[0] == 1 and t.feret_max[0] == pytest.approx(1.0)
