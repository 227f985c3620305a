"""Optional compiled kernel for ``geometry.refine_particles``: every particle box interpolated, owned and
thresholded in one pass, without a numpy call per particle.

numba (an optional dependency, already in the ``eds`` and ``test`` extras) compiles it on first use (cached on
disk); without numba, or with ``COPILOT_NUMBA=0`` in the environment, ``kernel()`` is None and the caller runs its
numpy loop, which gives the same arrays bit for bit (float32 products and sums in the same order; a test holds
the two to equality). numba is imported on first call, never at import time.
"""

from __future__ import annotations

import os

import numpy as np

_KERNEL = None


def refine_boxes(fg, instances, ry0, ry1, fy, gy, ny, rx0, rx1, fx, gx, nx, labels, u0, u1, v0, v1, starts,
                 level, own_out, mask_out):  # pragma: no cover - compiled by numba; its output is tested
    """Box j (label ``labels[j]``, refined rows u0..u1, columns v0..v1) written row by row from ``starts[j]``
    into ``own_out`` (its field: bilinear foreground, 0 where another instance owns the nearest grid pixel — a
    background pixel is owned by the largest label among its 3 × 3 neighbours, as ``geometry.dilate3``) and
    ``mask_out`` (field ≥ ``level``, or the label's own grid pixels where the field never reaches it)."""
    zero = np.float32(0.0)
    h, w = instances.shape
    for j in range(labels.size):
        lab = labels[j]
        width = v1[j] - v0[j]
        found = False
        for i in range(u1[j] - u0[j]):
            u = u0[j] + i
            a0, a1, wy, gyu, nyu = ry0[u], ry1[u], fy[u], gy[u], ny[u]
            base = starts[j] + i * width
            for t in range(width):
                v = v0[j] + t
                left = np.float32(fg[a0, rx0[v]] * gyu + fg[a1, rx0[v]] * wy)
                right = np.float32(fg[a0, rx1[v]] * gyu + fg[a1, rx1[v]] * wy)
                val = left * gx[v] + right * fx[v]
                col = nx[v]
                owner = instances[nyu, col]
                if owner == 0:
                    for r in range(max(nyu - 1, 0), min(nyu + 2, h)):
                        for c in range(max(col - 1, 0), min(col + 2, w)):
                            owner = max(owner, instances[r, c])
                if owner != lab:
                    val = val * zero
                own_out[base + t] = val
                hit = val >= level
                mask_out[base + t] = hit
                found = found or hit
        if not found:
            for i in range(u1[j] - u0[j]):
                u = u0[j] + i
                base = starts[j] + i * width
                for t in range(width):
                    mask_out[base + t] = instances[ny[u], nx[v0[j] + t]] == lab


def kernel():
    """The compiled ``refine_boxes``, or None (numba missing, or turned off with ``COPILOT_NUMBA=0``)."""
    global _KERNEL
    if os.environ.get("COPILOT_NUMBA", "1") == "0":
        return None
    if _KERNEL is None:
        try:
            import numba
        except ImportError:
            _KERNEL = False
        else:
            _KERNEL = numba.njit(cache=True, nogil=True)(refine_boxes)
    return _KERNEL or None
