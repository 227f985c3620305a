"""watershed_touching gives what a watershed over the whole image gives."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.segmentation import watershed

from copilot.analysis.instances import watershed_touching


@pytest.mark.parametrize("numba", ["1", "0"])  # with and without the compiled kernels.marker_regions
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_labels_as_a_whole_image_watershed(monkeypatch, seed, numba):
    monkeypatch.setenv("COPILOT_NUMBA", numba)
    rng = np.random.default_rng(seed)
    prob = np.zeros((300, 300))
    for _ in range(80):  # discs, many of them touching or overlapping (one region, several cores)
        rr, cc = disk(tuple(rng.integers(0, 300, 2)), rng.uniform(3, 12), shape=prob.shape)
        prob[rr, cc] = np.maximum(prob[rr, cc], rng.uniform(0.6, 1.0))
    prob = ndi.gaussian_filter(prob, 1.5) + rng.uniform(0, 0.02, prob.shape)
    foreground = prob > 0.3
    markers, k = ndi.label(prob > 0.55)
    expected = watershed(-prob, markers, mask=foreground)
    got = watershed_touching(-prob, markers, foreground)
    regions, n = ndi.label(foreground)
    several = [r for r in range(1, n + 1) if np.unique(markers[regions == r]).size > 2]
    assert several and k > len(several)  # both kinds of region are there
    np.testing.assert_array_equal(got, expected)


def test_regions_without_markers_stay_background():
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    mask[10:15, 10:15] = True
    markers = np.zeros((20, 20), np.int32)
    markers[3, 3] = 1
    out = watershed_touching(np.zeros((20, 20)), markers, mask)
    assert (out[2:6, 2:6] == 1).all() and not out[10:15, 10:15].any()


@pytest.mark.parametrize("numba", ["1", "0"])  # the compiled pass (kernels.relabel_large) and numpy's lookup
def test_drop_small_is_zeroing_then_relabel_sequential(monkeypatch, numba):
    from skimage.segmentation import relabel_sequential

    monkeypatch.setenv("COPILOT_NUMBA", numba)

    from copilot.analysis.instances import drop_small

    rng = np.random.default_rng(5)
    inst = rng.integers(0, 40, (60, 60)).astype(np.int32) * (rng.random((60, 60)) < 0.5)
    inst[inst == 7] = 0  # a missing label
    sizes = np.bincount(inst.ravel())
    expected = inst.copy()
    expected[(sizes < 45)[inst] & (inst > 0)] = 0
    got = drop_small(inst, 45)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, relabel_sequential(expected)[0])


@pytest.mark.parametrize("numba", ["1", "0"])
def test_find_objects_and_take_are_scipys_and_numpys(monkeypatch, numba):
    from copilot.analysis.instances import find_objects, take

    monkeypatch.setenv("COPILOT_NUMBA", numba)
    rng = np.random.default_rng(9)
    labels = ndi.label(ndi.gaussian_filter(rng.random((90, 70)), 2) > 0.52)[0].astype(np.int32)
    labels[labels == 3] = 0  # a label without pixels: None
    labels[0, :4] = labels.max()  # a label on the border, in two pieces
    n = int(labels.max())
    assert n > 10
    for max_label in (None, n, n - 4, n + 2):
        assert find_objects(labels, max_label) == ndi.find_objects(labels, max_label=max_label or 0)
    lut = rng.integers(0, 50, n + 1).astype(np.int32)
    got = take(lut, labels)
    assert got.dtype == lut.dtype
    np.testing.assert_array_equal(got, lut[labels])


@pytest.mark.parametrize("numba", ["1", "0"])
def test_label_is_scipys(monkeypatch, numba):
    """Components numbered as ndimage.label numbers them (raster order of their first pixel), on masks of every
    kind: noise, blobs, a U whose arms join below, a serpentine, a comb, empty, full, one row, one column."""
    from copilot.analysis.instances import label

    monkeypatch.setenv("COPILOT_NUMBA", numba)
    rng = np.random.default_rng(11)
    u = np.zeros((9, 9), bool)
    u[1:8, 1] = u[1:8, 7] = u[7, 1:8] = True
    serpentine = np.zeros((41, 40), bool)  # one component winding through the image
    serpentine[::2] = True
    serpentine[1::4, -1] = serpentine[3::4, 0] = True
    comb = np.zeros((30, 40), bool)  # teeth joined at the bottom: many runs, one component
    comb[:, ::2] = comb[-1] = True
    masks = [rng.random((40, 60)) < 0.5, ndi.gaussian_filter(rng.random((80, 70)), 2) > 0.52, u, serpentine, comb,
             np.zeros((5, 7), bool), np.ones((6, 4), bool), rng.random((1, 30)) < 0.5, rng.random((30, 1)) < 0.5]
    for m in masks:
        got, n = label(m)
        expected, n_expected = ndi.label(m)
        assert n == n_expected and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
