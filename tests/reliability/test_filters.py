"""The quality features' compiled filters (copilot.reliability.filters) give scipy's and numpy's float32 values,
bit for bit, on crops of any shape (a line shorter than the Gaussian's reach reflects more than once)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from copilot.analysis import smoothing
from copilot.compiled import compiled
from copilot.reliability import filters


def _image(shape, seed):
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random(shape), 2.0) * 3.0
    return (smooth + rng.normal(0, 0.1, shape)).astype(np.float32)


@pytest.fixture
def with_numba():
    if compiled("smooth_columns", vars(smoothing)) is None:
        pytest.skip("numba not installed: scipy runs")


@pytest.mark.parametrize("shape", [(256, 256), (205, 187), (9, 40), (6, 5), (2, 3)])
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_gaussian_is_scipys(with_numba, shape, sigma):
    img = _image(shape, sum(shape))
    out = filters.gaussian(img, sigma)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ndi.gaussian_filter(img, sigma))


@pytest.mark.parametrize("shape", [(256, 256), (77, 130), (2, 2), (3, 9)])
def test_gradient_and_laplacian_are_numpys(with_numba, shape):
    img = _image(shape, 3)
    gy, gx = np.gradient(img)
    np.testing.assert_array_equal(filters.gradient_magnitude(img), np.hypot(gx, gy))
    np.testing.assert_array_equal(filters.abs_laplacian(img), np.abs(ndi.laplace(img)))


def test_a_strided_crop_and_other_dtypes_are_filtered_as_float32(with_numba):
    big = _image((300, 300), 5).astype(np.float64)
    crop = big[20:276:1, 10:266]  # a view, float64: filtered as its float32 copy
    ref = ndi.gaussian_filter(crop.astype(np.float32), 2.5)
    np.testing.assert_array_equal(filters.gaussian(crop, 2.5), ref)


def test_without_numba_scipy_runs(monkeypatch):
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    assert compiled("smooth_columns", vars(smoothing)) is None
    img = _image((40, 50), 1)
    np.testing.assert_array_equal(filters.gaussian(img, 2.5), ndi.gaussian_filter(img, 2.5))
    np.testing.assert_array_equal(filters.abs_laplacian(img), np.abs(ndi.laplace(img)))


def test_order_statistics_are_partitions(with_numba):
    rng = np.random.default_rng(4)
    for trial in range(60):
        n = int(rng.integers(1, 3000))
        v = (rng.normal(0, 1, n) * 10 ** rng.uniform(-4, 4)).astype(np.float32)
        if trial % 3 == 0:
            v = np.round(v, 1)  # ties, zeros of both signs
        ks = rng.integers(0, n, int(rng.integers(1, 6)))  # unsorted, repeated at times
        np.testing.assert_array_equal(filters.order_statistics(v, ks), np.partition(v, ks)[ks])
    assert filters.order_statistics(np.array([1.0, np.nan, 0.5], np.float32), [0]) is None


def test_quality_statistics_are_numpys(with_numba):
    from copilot.reliability.quality import median, percentiles

    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 4096, 65536):
        v = rng.normal(0, 1, n).astype(np.float32)
        m = median(v)
        assert m == np.median(v) and type(m) is type(np.median(v))
        np.testing.assert_array_equal(percentiles(v, [1, 50, 99]), np.percentile(v, [1, 50, 99]))
        for q in (95, 2.5):  # a Python number: numpy's weak promotion, a float32 value
            p = percentiles(v, q)
            assert p == np.percentile(v, q) and p.dtype == np.percentile(v, q).dtype
    v[3] = np.nan
    assert np.isnan(median(v)) and np.isnan(percentiles(v, [1, 99])).all()
