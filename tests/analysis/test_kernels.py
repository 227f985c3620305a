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


def test_dilate3_is_grey_dilation():
    labels = np.random.default_rng(1).integers(0, 9, (37, 23)).astype(np.int32)
    labels[labels < 6] = 0
    np.testing.assert_array_equal(dilate3(labels), ndi.grey_dilation(labels, size=3))


def test_compiled_extents_equal_numpy(monkeypatch):
    """Feret diameters and convex area of many outlines: compiled extents (kernels.extents) == numpy's."""
    if kernels.kernel("extents") is None:
        pytest.skip("numba not installed: only numpy runs")
    fg, inst = _scene(90, 80, seed=7)
    refined = refine_particles(fg, inst, (200, 170), 1)
    tiles = [t for t in refined.tiles if t.size]
    fields = [f for f in refined.fields if f.size]
    fast, _ = outline_table(tiles, fields)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow, _ = outline_table(tiles, fields)
    assert len(tiles) > 5
    for name in ("feret_max", "feret_min", "area_convex", "perimeter", "area"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
