"""The image filters of the quality features (``quality.image_quality``), each one compiled pass over the crop.

``gaussian`` (``copilot.analysis.smoothing``, shared with the phase morphology) is ``scipy.ndimage.gaussian_filter``
(mode ``reflect``, truncate 4), ``gradient_magnitude`` is
``np.hypot(*np.gradient(img))`` and ``abs_laplacian`` is ``np.abs(scipy.ndimage.laplace(img))``, for float32
images: the same float operations in the same order (float64 sums of symmetric pairs, outermost first, rounded to
float32 after each axis, as scipy's ``correlate1d`` does them), so the same float32 values bit for bit — tests hold
them equal. ``order_statistics`` gives what ``np.partition`` puts at given ranks (the medians and percentiles of
``quality``), from histograms of order-preserving keys instead of a partition. The compiled kernels
(``copilot.compiled``, numba) take a third of scipy's time or less; without numba, or with ``COPILOT_NUMBA=0``,
scipy and numpy run.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.smoothing import gaussian, reflected  # noqa: F401 (gaussian: the filters' Gaussian, re-exported)
from copilot.compiled import compiled

SELECT_BINS = 4096  # order statistics: histogram bins over the values' range (an L1-sized count)


def hypot_gradient(s, out):  # pragma: no cover - compiled by numba; its output is tested
    """|∇s| by central differences (one-sided on the border), as ``np.hypot(*np.gradient(s))`` in float32."""
    h, w = s.shape
    two = np.float32(2.0)
    gx = np.empty(w, np.float32)
    for y in range(h):
        row = s[y]
        up, down = (s[y], s[y + 1]) if y == 0 else ((s[y - 1], s[y]) if y == h - 1 else (s[y - 1], s[y + 1]))
        gx[0], gx[w - 1] = row[1] - row[0], row[w - 1] - row[w - 2]
        for x in range(1, w - 1):
            gx[x] = (row[x + 1] - row[x - 1]) / two
        o = out[y]
        if y == 0 or y == h - 1:
            for x in range(w):
                o[x] = np.hypot(gx[x], down[x] - up[x])
        else:
            for x in range(w):
                o[x] = np.hypot(gx[x], (down[x] - up[x]) / two)


def laplacian_magnitude(img, rows, cols, out):  # pragma: no cover - compiled by numba; its output is tested
    """|4-neighbour Laplacian| (reflected border): each axis's second difference in float64, rounded to float32,
    the two added in float32 — ``np.abs(ndi.laplace(img))``."""
    h, w = img.shape
    for y in range(h):
        up, down = img[rows[y]], img[rows[y + 2]]
        for x in range(w):
            c = np.float64(img[y, x])
            along0 = np.float32(c * -2.0 + (np.float64(up[x]) + np.float64(down[x])))
            along1 = np.float32(c * -2.0 + (np.float64(img[y, cols[x]]) + np.float64(img[y, cols[x + 2]])))
            out[y, x] = abs(along0 + along1)


def select_keys(bits, ks, out):  # pragma: no cover - compiled by numba; its output is tested
    """The ``ks``-th smallest (ascending ``ks``) of float32 values given as their bits, into ``out`` (bits): the
    values become order-preserving integer keys (sign bit flipped for positives, all bits for negatives); a
    ``SELECT_BINS`` histogram over the keys' range finds each one's bin, and narrower histograms of the few values
    in that bin find the key. False (nothing written) if a value is NaN."""
    n = bits.size
    m = ks.size
    keys = np.empty(n, np.int64)  # int64 throughout: numba unifies uint32 with floats
    magnitude = np.int64(0)
    lowest, highest = np.int64(0xFFFFFFFF), np.int64(0)
    for i in range(n):
        b = np.int64(bits[i])
        magnitude = max(magnitude, b & 0x7FFFFFFF)
        key = b ^ ((b >> 31) * 0x7FFFFFFF | 0x80000000)
        keys[i] = key
        lowest = min(lowest, key)
        highest = max(highest, key)
    if magnitude > 0x7F800000:
        return False
    shift = 0
    while (highest - lowest) >> shift >= SELECT_BINS:
        shift += 1
    high = np.zeros(SELECT_BINS, np.int64)
    for i in range(n):
        high[(keys[i] - lowest) >> shift] += 1
    bins = np.empty(m, np.int64)
    before = np.empty(m, np.int64)  # values below the bin
    seen, j = 0, 0
    for h in range(SELECT_BINS):
        while j < m and ks[j] < seen + high[h]:
            bins[j], before[j] = h, seen
            j += 1
        seen += high[h]
    first = np.empty(m, np.int64)  # the first q of each distinct bin collects that bin's keys
    start = np.empty(m, np.int64)
    slot = np.zeros(SELECT_BINS, np.int64)  # bin → 1 + the q collecting it
    total = 0
    for q in range(m):
        first[q] = q if q == 0 or bins[q] != bins[q - 1] else first[q - 1]
        start[q] = total
        if first[q] == q:
            slot[bins[q]] = q + 1
            total += high[bins[q]]
    chosen = np.empty(total, np.int64)
    fill = start.copy()
    for i in range(n):
        q = slot[(keys[i] - lowest) >> shift] - 1
        if q >= 0:
            chosen[fill[q]] = keys[i]
            fill[q] += 1
    counts = np.empty(SELECT_BINS, np.int64)
    pool = np.empty(total, np.int64)
    for q in range(m):  # within the bin, narrower histograms until one key is left (no sort to compile)
        size = fill[first[q]] - start[first[q]]
        pool[:size] = chosen[start[first[q]] : fill[first[q]]]
        rank, base, width = ks[q] - before[q], lowest + (bins[q] << shift), shift
        while width > 0:
            sub = max(width - 12, 0)  # 2 ** 12 = SELECT_BINS sub-bins
            counts[:] = 0
            for i in range(size):
                counts[(pool[i] - base) >> sub] += 1
            b = 0
            while rank >= counts[b]:
                rank -= counts[b]
                b += 1
            base += b << sub
            kept = 0
            for i in range(size):
                if (pool[i] - base) >> sub == 0 and pool[i] >= base:
                    pool[kept] = pool[i]
                    kept += 1
            size, width = kept, sub
        out[q] = np.uint32(base ^ ((1 - (base >> 31)) * 0x7FFFFFFF | 0x80000000))
    return True


def order_statistics(values: np.ndarray, ks) -> np.ndarray | None:
    """The ``ks``-th smallest of float32 ``values`` (0-based), as ``np.partition(values.ravel(), ks)[ks]`` gives
    them; None when a value is NaN (numpy's statistics are NaN then) or there is no compiled kernel."""
    flat = values.ravel()
    fast = compiled("select_keys", globals()) if flat.dtype == np.float32 and flat.size else None
    if fast is None:
        return None
    ks = np.asarray(ks, np.int64)
    order = np.argsort(ks, kind="stable")
    picked = np.empty(ks.size, np.uint32)
    if not fast(np.ascontiguousarray(flat).view(np.uint32), ks[order], picked):
        return None
    out = np.empty(ks.size, np.float32)
    out[order] = picked.view(np.float32)
    return out


def _float32(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img, dtype=np.float32)


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    """``np.hypot(*np.gradient(img))`` of a float32 image (at least 2 × 2, as ``np.gradient`` needs)."""
    img = _float32(img)
    fast = compiled("hypot_gradient", globals())
    if fast is None or img.ndim != 2 or min(img.shape) < 2:
        gy, gx = np.gradient(img)
        return np.hypot(gx, gy)
    out = np.empty_like(img)
    fast(img, out)
    return out


def abs_laplacian(img: np.ndarray) -> np.ndarray:
    """``np.abs(ndi.laplace(img as float32))``."""
    img = _float32(img)
    fast = compiled("laplacian_magnitude", globals())
    if fast is None or img.ndim != 2:
        return np.abs(ndi.laplace(img))
    out = np.empty_like(img)
    fast(img, reflected(img.shape[0], 1), reflected(img.shape[1], 1), out)
    return out
