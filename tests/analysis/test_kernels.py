"""The compiled kernels (copilot.analysis.kernels) and the numpy code they stand in for give the same arrays, bit for bit."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from copilot.analysis import kernels
from copilot.analysis.geometry import dilate3, outline_table, refine_particles


def _scene(h: int, w: int, seed: int):
    """Blobs on a (h, w) grid: instance labels (some numbers unused, some touching the edge, one faint blob whose
    field never reaches 0.5) and a smooth foreground probability (float32)."""
    rng = np.random.default_rng(seed)
    fg = ndi.gaussian_filter(rng.random((h, w)), 3.0)
    fg = np.clip((fg - fg.mean()) / fg.std() * 0.4 + 0.35, 0, 1).astype(np.float32)
    inst, n = ndi.label(fg > 0.5)
    inst[inst == 2] = 0  # a missing label: find_objects gives None for it
    faint = (slice(h // 2, h // 2 + 3), slice(2, 5))
    fg[faint] = 0.45
    inst[faint] = n + 1
    return fg, inst.astype(np.int32)


@pytest.mark.parametrize("grid, frame, m, level", [((60, 70), (150, 175), 1, 0.5), ((64, 48), (64, 48), 1, 0.65),
                                                   ((50, 50), (30, 30), 2, 0.5), ((41, 57), (103, 97), 1, 0.5)])
def test_compiled_kernel_equals_numpy_loop(monkeypatch, grid, frame, m, level):
    if kernels.kernel("refine_boxes") is None:
        pytest.skip("numba not installed: only the numpy loop runs")
    fg, inst = _scene(*grid, seed=sum(grid))
    fast = refine_particles(fg, inst, frame, m, level)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    assert kernels.kernel("refine_boxes") is None
    slow = refine_particles(fg, inst, frame, m, level)
    assert len(fast.tiles) == len(slow.tiles) == inst.max()
    np.testing.assert_array_equal(fast.origins, slow.origins)
    assert any(t.size == 0 for t in slow.tiles) and sum(t.sum() for t in slow.tiles) > 0
    for a, b, fa, fb in zip(fast.tiles, slow.tiles, fast.fields, slow.fields):
        assert a.dtype == b.dtype and fa.dtype == fb.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fa, fb)
    # the compiled refinement's buffers, read in place by the outline table: the same table as from the tiles
    assert fast.flat is not None and slow.flat is None
    monkeypatch.delenv("COPILOT_NUMBA")
    in_place, _ = outline_table(fast.tiles, fast.fields, level, fast.flat)
    copied, _ = outline_table(slow.tiles, slow.fields, level)
    for c in ("area", "centroid_row", "centroid_col", "axis_minor", "perimeter", "feret_min", "area_convex"):
        np.testing.assert_array_equal(getattr(in_place, c), getattr(copied, c))


def test_dilate3_is_grey_dilation():
    labels = np.random.default_rng(1).integers(0, 9, (37, 23)).astype(np.int32)
    labels[labels < 6] = 0
    np.testing.assert_array_equal(dilate3(labels), ndi.grey_dilation(labels, size=3))


def test_compiled_outline_table_equals_numpy(monkeypatch):
    """Every shape quantity of many outlines: the compiled kernel (kernels.extents) == numpy's,
    including a tile without a field (its pixels at the 0.5 edge)."""
    if kernels.kernel("extents") is None:
        pytest.skip("numba not installed: only numpy runs")
    from dataclasses import fields as columns

    fg, inst = _scene(90, 80, seed=7)
    refined = refine_particles(fg, inst, (200, 170), 1)
    tiles = [t for t in refined.tiles if t.size]
    fields = [f for f in refined.fields if f.size]
    fields[1] = np.zeros((0, 0), np.float32)
    fast, fast_at = outline_table(tiles, fields)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow, slow_at = outline_table(tiles, fields)
    assert len(tiles) > 5 and fast.area[1] > 0
    np.testing.assert_array_equal(fast_at, slow_at)
    for c in columns(slow):
        np.testing.assert_array_equal(getattr(fast, c.name), getattr(slow, c.name))


def _runs(rng, per_label: np.ndarray):
    """Run tuples as ``geometry._tile_runs`` gives them: int32 labels in tile order (``per_label[k]`` runs of label
    k + 1; some none), a line and two sub-pixel ends."""
    lab = np.repeat(np.arange(1, per_label.size + 1), per_label).astype(np.int32)
    line = rng.integers(0, 300, lab.size).astype(np.float64)
    a = rng.random(lab.size) * 50
    return lab, line, a, a + rng.random(lab.size) * 20


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_crossings_and_perimeter_equal_numpy(monkeypatch, seed):
    """``crossings`` (counting sort, kernels.group_points) and ``perimeter`` (kernels.polygon_lengths: numpy's
    pairwise sums written out) give numpy's arrays bit for bit, for particles of 2 to ~2,000 points (sums under
    8, up to 128 and split in halves above)."""
    from copilot.analysis.geometry import crossings, perimeter

    if kernels.kernel("polygon_lengths") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(seed)
    n = 80
    sizes = np.array([0, 1, 2, 3, 4, 7, 15, 30, 32, 33, 60, 64, 65, 200, 500])
    per_row, per_col = rng.choice(sizes, n), rng.choice(sizes, n)
    per_row[-1] = 0  # a label without any run
    per_col[-1] = 0
    rows, cols = _runs(rng, per_row), _runs(rng, per_col)
    centre = rng.random((n, 2)) * 100
    fast = crossings(rows, cols, centre)
    fast_p = perimeter(*fast, n)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = crossings(rows, cols, centre)
    slow_p = perimeter(*slow, n)
    counts = np.diff(np.append(slow[3], slow[0].size))
    assert counts.min() < 8 and counts.max() > 1000
    assert ((counts > 8) & (counts <= 129)).any() and ((counts > 129) & (counts < 400)).any()
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast_p, slow_p)
    assert (slow_p > 0).sum() == slow[3].size < n


def test_order_within_is_a_stable_lexsort():
    """kernels.order_within == np.lexsort((values, group)) for groups of 0 to 700 values: random, with many ties,
    ascending and descending stretches (ties inside them too), and an outline's crossings by angle."""
    order_within = kernels.kernel("order_within")
    if order_within is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(3)
    theta = np.linspace(-np.pi, np.pi, 240, endpoint=False)
    groups = [rng.random(50), rng.integers(0, 4, 300).astype(float), np.sort(rng.integers(0, 9, 100)).astype(float),
              -np.sort(rng.integers(0, 9, 100)).astype(float), np.r_[np.arange(30.0), np.arange(30.0)[::-1], 5.0],
              np.array([]), np.array([1.0]), np.array([2.0, 1.0]), np.array([1.0, 1.0, 0.0, 0.0]),
              np.concatenate([np.roll(theta, 17), theta[::-1], np.roll(theta[::-1], 90)]),
              rng.integers(0, 50, 700).astype(float)]
    values = np.concatenate(groups)
    sizes = np.array([g.size for g in groups])
    starts = np.cumsum(sizes) - sizes
    out = np.empty(values.size, np.intp)
    order_within(values, starts, starts + sizes, out)
    group = np.repeat(np.arange(sizes.size), sizes)
    np.testing.assert_array_equal(out, np.lexsort((values, group)))


def test_shelves_compiled_equal_numpy_and_tiles_never_touch(monkeypatch):
    """``shelves`` (kernels.shelf_offsets) gives numpy's layout; on ``pack``'s canvas every tile keeps its own
    pixels, with an empty pixel between any two tiles and around the canvas's edge."""
    from copilot.analysis.geometry import pack, shelves

    if kernels.kernel("shelf_offsets") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(4)
    shapes = [tuple(int(v) for v in s) for s in rng.integers(0, 40, (300, 2))] + [(5, 90), (0, 0), (3, 0)]
    fast = shelves(shapes, width=120)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = shelves(shapes, width=120)
    assert fast[0] == slow[0] and fast[0][1] == 120
    np.testing.assert_array_equal(fast[1], slow[1])
    monkeypatch.delenv("COPILOT_NUMBA")
    tiles = [rng.random(s) < 0.8 for s in shapes[:60]]
    canvas, offsets = pack(tiles, width=100)
    for k, (t, (oy, ox)) in enumerate(zip(tiles, offsets)):
        np.testing.assert_array_equal(canvas[oy:oy + t.shape[0], ox:ox + t.shape[1]] == k + 1, t)
    assert canvas[0].max() == canvas[-1].max() == canvas[:, 0].max() == 0
    grown = ndi.grey_dilation(canvas, size=3)
    assert np.all((canvas == 0) | (grown == canvas))  # no two labels 8-adjacent


def _boundary_probabilities(size: int, seed: int) -> np.ndarray:
    """(2, size, size) float32 grain / boundary probabilities: noisy, blurred Voronoi edges with gaps, faint
    stretches, and one wide boundary block (more than ``GROW_STEPS`` rings to fill: the exact-transform fallback)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int32)
    pts = rng.integers(0, size, (size * size // 300, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, len(pts) + 1)
    idx = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    cells = seeds[tuple(idx)]
    edges = (np.diff(cells, axis=0, prepend=cells[:1]) != 0) | (np.diff(cells, axis=1, prepend=cells[:, :1]) != 0)
    p = ndi.gaussian_filter(edges.astype(np.float64), 0.8) * 2.5 + rng.normal(0, 0.08, edges.shape)
    p[size // 3:size // 3 + 140, 10:150] = 0.9
    p = np.clip(p, 0, 1).astype(np.float32)
    return np.stack([1 - p, p])


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_grain_kernels_equal_numpy(monkeypatch, seed):
    """Hysteresis, ring filling, distinct-label counts and per-grain moments: the grains of a boundary map, their
    counts, G values and table are the same with and without the compiled kernels."""
    from copilot.analysis.grain_frame import boundary_map, grain_table
    from copilot.analysis.grains import measure_grains

    if kernels.kernel("hysteresis") is None:
        pytest.skip("numba not installed: only numpy runs")
    probs = _boundary_probabilities(400, seed)

    def run():
        b = boundary_map(probs, ("grain", "boundary"), 0.08 + 0.1 * seed, 0.25 + 0.2 * seed)
        r = measure_grains(b, 250.0, close_px=1)
        return b, r, grain_table(r, 2.0)

    fast = run()
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    assert kernels.kernel("grow_rings") is None
    slow = run()
    assert fast[0].any() and not fast[0].all()
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1].grains, slow[1].grains)
    assert (fast[1].grains > 0).all() and fast[1].n_inside > 50
    for name in ("n_inside", "n_intercepted", "planimetric", "intercept", "ala_g"):
        assert getattr(fast[1], name) == getattr(slow[1], name), name
    for name in ("id", "centroid_x_px", "centroid_y_px", "area_um2", "ecd_um", "g"):
        np.testing.assert_array_equal(getattr(fast[2], name), getattr(slow[2], name))


@pytest.mark.parametrize("shape, n_classes, seed",
                         [((97, 83), 3, 0), ((40, 200), 4, 1), ((1, 9), 2, 2), ((64, 64), 3, 3)])
def test_subpixel_counts_equal_numpy(monkeypatch, shape, n_classes, seed):
    """Phase area fractions with boundary pixels split into sub-points: the one-pass kernel gives numpy's fractions
    and boundary count exactly (ties between classes and a frame edge included)."""
    from copilot.analysis.phases import subpixel_fractions

    if kernels.kernel("subpixel_counts") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(seed)
    logits = np.stack([ndi.gaussian_filter(rng.normal(size=shape), 2.0) for _ in range(n_classes)])
    p = np.exp(logits * 8)
    p = (p / p.sum(axis=0)).astype(np.float32)
    p[:, :3, :3] = np.float32(1.0 / n_classes)  # exact ties: the first class wins, as numpy's arg-max
    labels = p.argmax(axis=0)
    fast = subpixel_fractions(p, labels)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = subpixel_fractions(p, labels)
    assert fast[1] == slow[1] and (slow[1] > 0 or shape[0] == 1)
    np.testing.assert_array_equal(fast[0], slow[0])


@pytest.mark.parametrize("shape, inside", [((50, 70), 0.5), ((1, 9), 0.6), ((9, 1), 0.6), ((120, 90), 0.97),
                                           ((64, 64), 0.9995)])
def test_distances_to_outside_equal_scipy(monkeypatch, shape, inside):
    """The compiled exact distance transform gives scipy's distance_transform_edt bit for bit; so do the phase
    widths built on it (with the skeleton's neighbour counts taken at its own pixels)."""
    from copilot.analysis.morphology import distances_to_outside, local_widths

    if kernels.kernel("squared_distances") is None:
        pytest.skip("numba not installed: only scipy runs")
    rng = np.random.default_rng(sum(shape))
    for _ in range(4):
        field = ndi.gaussian_filter(rng.random(shape), 2.0) if min(shape) > 4 else rng.random(shape)
        mask = field < np.quantile(field, inside)
        mask.flat[rng.integers(mask.size)] = False  # at least one outside pixel
        np.testing.assert_array_equal(distances_to_outside(mask), ndi.distance_transform_edt(mask))
    bands = np.zeros((90, 120), bool)
    bands[10:19] = bands[40:60, 5:100] = bands[:, 70:75] = True  # crossing bands: plain ridges and junctions
    from skimage.morphology import skeletonize

    from copilot.analysis.morphology import skeleton_neighbours

    skel = skeletonize(bands)
    ys, xs = np.nonzero(skel)
    by_convolution = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    np.testing.assert_array_equal(skeleton_neighbours(skel, ys, xs), by_convolution[ys, xs])
    fast = local_widths(bands)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = local_widths(bands)
    assert fast[0].size > 50
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape, n_classes, spacing, n_angles", [((97, 130), 3, 8, 18), ((40, 41), 2, 3.5, 7),
                                                                 ((5, 300), 4, 8, 18)])
def test_intercepts_equal_numpy(monkeypatch, shape, n_classes, spacing, n_angles):
    """Test-line intercept counts in one compiled pass equal the numpy profiles' counts exactly (lines that miss
    the frame at some angles included)."""
    from copilot.analysis.morphology import intercept_counts

    if kernels.kernel("intercepts") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(shape[0])
    labels = np.argmax(np.stack([ndi.gaussian_filter(rng.normal(size=shape), 3.0) for _ in range(n_classes)]), axis=0)
    fast = intercept_counts(labels, n_classes, spacing, n_angles)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = intercept_counts(labels, n_classes, spacing, n_angles)
    assert slow[2].sum() > 0
    for a, b in zip(fast, slow):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(50, 61), (9, 9), (20, 3), (1, 5), (5, 1)])
@pytest.mark.parametrize("dtype, source", [(np.float64, np.float64), (np.float32, np.float32), (np.float32, bool)])
def test_gaussian_equals_scipy_in_float64_too(shape, dtype, source):
    """The shared compiled Gaussian (σ = 1, as the phase widths take it: the distance map in float64, the mask in
    float32) gives scipy.ndimage.gaussian_filter's values bit for bit, frames narrower than the kernel (mirrored
    several times) included."""
    from scipy.ndimage import gaussian_filter

    from copilot.analysis import smoothing
    from copilot.compiled import compiled

    if compiled("smooth_columns", vars(smoothing)) is None:
        pytest.skip("numba not installed: only scipy runs")
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    image = rng.random(shape) < 0.4 if source is bool else (rng.random(shape) * 30).astype(source)
    expected = gaussian_filter(image.astype(dtype), 1.0)
    got = smoothing.gaussian(image, 1.0, dtype)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
