"""The Gaussian filter both the phase morphology (``analysis.morphology``) and the quality features
(``reliability.filters``) take: ``scipy.ndimage.gaussian_filter`` (mode ``reflect``, truncate 4) as one compiled pass
per axis, with the same float operations in the same order (float64 sums of symmetric pairs, outermost first,
stored in the output's float type after each axis, as scipy's ``correlate1d`` does them), so the same values bit for
bit — tests hold them equal. Without numba, or with ``COPILOT_NUMBA=0``, scipy runs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.compiled import compiled

TRUNCATE = 4.0  # scipy's default: the kernel reaches int(4 σ + 0.5) pixels


def gaussian_weights(sigma: float) -> np.ndarray:
    """scipy's normalized Gaussian kernel (float64, 2r + 1 taps)."""
    r = int(TRUNCATE * float(sigma) + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def reflected(n: int, r: int) -> np.ndarray:
    """Indices of a line of ``n`` extended by ``r`` on each side in scipy's ``reflect`` mode (d c b a | a b c d |
    d c b a, repeated as far as needed)."""
    i = np.arange(-r, n + r) % (2 * n)
    return np.where(i < n, i, 2 * n - 1 - i).astype(np.intp)


def smooth_columns(img, weights, rows, out):  # pragma: no cover - compiled by numba; its output is tested
    """The Gaussian along axis 0: each output row from the input rows ``rows`` (the reflected extension)."""
    h, w = img.shape
    r = weights.size // 2
    acc = np.empty(w, np.float64)
    for y in range(h):
        centre = img[y]
        w0 = weights[r]
        for x in range(w):
            acc[x] = np.float64(centre[x]) * w0
        for j in range(r, 0, -1):
            a, b = img[rows[y + r - j]], img[rows[y + r + j]]
            wj = weights[r - j]
            for x in range(w):
                acc[x] += (np.float64(a[x]) + np.float64(b[x])) * wj
        o = out[y]
        for x in range(w):
            o[x] = acc[x]  # rounded to ``out``'s float type


def smooth_rows(img, weights, cols, out):  # pragma: no cover - compiled by numba; its output is tested
    """The Gaussian along axis 1: each row extended through ``cols`` (the reflected extension), then filtered."""
    h, w = img.shape
    r = weights.size // 2
    acc = np.empty(w, np.float64)
    line = np.empty(w + 2 * r, np.float64)
    for y in range(h):
        for x in range(w + 2 * r):
            line[x] = img[y, cols[x]]
        w0 = weights[r]
        for x in range(w):
            acc[x] = line[x + r] * w0
        for j in range(r, 0, -1):
            wj = weights[r - j]
            lo, hi = line[r - j : r - j + w], line[r + j : r + j + w]
            for x in range(w):
                acc[x] += (lo[x] + hi[x]) * wj
        o = out[y]
        for x in range(w):
            o[x] = acc[x]  # rounded to ``out``'s float type


def gaussian(img: np.ndarray, sigma: float, dtype=np.float32) -> np.ndarray:
    """``ndi.gaussian_filter(img as dtype, sigma)`` (``dtype``: float32 or float64)."""
    img = np.ascontiguousarray(img, dtype=dtype)
    cols_k, rows_k = compiled("smooth_columns", globals()), compiled("smooth_rows", globals())
    if cols_k is None or rows_k is None or img.ndim != 2:
        return ndi.gaussian_filter(img, sigma)
    weights = gaussian_weights(sigma)
    r = weights.size // 2
    tmp, out = np.empty_like(img), np.empty_like(img)
    cols_k(img, weights, reflected(img.shape[0], r), tmp)
    rows_k(tmp, weights, reflected(img.shape[1], r), out)
    return out
