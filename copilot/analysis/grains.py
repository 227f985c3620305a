"""Grain size from a boundary map: closed grains, ASTM E112 planimetric (Jeffries) and intercept (Abrams circles)
grain size numbers with 95 % intervals, an E1382-style distribution and the ALA (E930) check.

* Grains: connected regions between boundaries (boundary gaps up to ``close_px`` are bridged first); boundary pixels
  go to the nearest grain for areas. Grains cut by the frame edge are *intercepted*: E112 counts them as half in
  the planimetric count and leaves them out of the size distribution.
* Planimetric (E112 §11, rectangle): N_A = (N_inside + ½ N_intercepted + 1) / A (the +1: the four corner grains,
  a quarter each), G = 3.321928 log10 N_A − 2.954 (N_A per mm² at 1×). Interval: the frame cut into ``fields``²
  fields, each counted the same way; the frame's N_A ± t·s/√n over the fields (E112 §15), taken to G.
* Intercept (E112 §13, Abrams): three concentric circles (circumference ratio 3 : 2 : 1) per field; boundary crossings
  P per total circle length L give ℓ = L / P and G = −6.643856 log10 ℓ − 3.288 (ℓ in mm). Interval: t over fields.
* Distribution (E1382-style): each interior grain's own G from its area, in half-G classes; ALA (E930): the largest
  grain's G, flagged when it is 3 or more G coarser than the planimetric G.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from copilot.analysis.kernels import kernel

INTERCEPT_OFFSET = 3.288
MIN_GAP_SAMPLES = 2  # ½-px samples: gaps under 1 px along a test circle do not separate two crossings


@dataclass(frozen=True)
class GValue:
    g: float
    low: float | None
    high: float | None
    method: str


@dataclass(frozen=True)
class GrainsResult:
    grains: np.ndarray  # (h, w) int32 grain ids from 1 (boundaries assigned to the nearest grain)
    n_inside: int
    n_intercepted: int
    areas_um2: np.ndarray  # interior grains
    ecd_um: np.ndarray
    planimetric: GValue | None
    intercept: GValue | None
    mean_intercept_um: float | None
    g_histogram: tuple[np.ndarray, np.ndarray]  # (edges in G, counts) of interior grains
    ala_g: float | None
    ala: bool
    interior_ids: np.ndarray | None = None  # ids in ``grains`` of the interior grains (order of areas_um2, ecd_um)


def g_planimetric(na_per_mm2: float) -> float:
    return 3.321928 * np.log10(na_per_mm2) - 2.954


def g_intercept(mean_intercept_mm: float) -> float:
    return -6.643856 * np.log10(mean_intercept_mm) - INTERCEPT_OFFSET


def _cross_dilate(b: np.ndarray) -> np.ndarray:
    out = b.copy()
    out[1:] |= b[:-1]
    out[:-1] |= b[1:]
    out[:, 1:] |= b[:, :-1]
    out[:, :-1] |= b[:, 1:]
    return out


def _cross_erode(b: np.ndarray) -> np.ndarray:
    """Erosion by the 4-neighbour cross, outside the frame counting as False (``border_value=0``)."""
    out = b.copy()
    out[1:] &= b[:-1]
    out[:-1] &= b[1:]
    out[:, 1:] &= b[:, :-1]
    out[:, :-1] &= b[:, 1:]
    out[0] = out[-1] = False
    out[:, 0] = out[:, -1] = False
    return out


def close_grains(boundaries: np.ndarray, close_px: int = 0, min_area_px: int = 4) -> np.ndarray:
    """Grain ids (from 1) of the regions between boundaries; 0 on boundaries. Gaps up to ``close_px`` are bridged
    (a binary closing by the 4-neighbour cross, ``close_px`` times)."""
    b = np.asarray(boundaries, bool)
    if close_px > 0:
        c = b
        for _ in range(close_px):
            c = _cross_dilate(c)
        for _ in range(close_px):
            c = _cross_erode(c)
        b = c | b
    grains, n = ndi.label(~b)
    sizes = np.bincount(grains.ravel(), minlength=n + 1)
    keep = sizes >= min_area_px
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[grains]


GROW_STEPS = 64  # boundary pixels further than this (chessboard) from every grain fall back to the exact transform


def fill_boundaries(grains: np.ndarray) -> np.ndarray:
    """Every boundary pixel given to a nearest grain: grown ring by ring (3 × 3 neighbourhood) for the thin
    boundaries of a grain map, exact Euclidean nearest for what is left after ``GROW_STEPS`` rings."""
    if not (grains > 0).any():
        return grains
    h, w = grains.shape
    padded = np.pad(grains, 1)
    ys, xs = np.nonzero(padded[1:-1, 1:-1] == 0)
    ys, xs = ys + 1, xs + 1
    grow = kernel("grow_rings")
    if grow is not None:
        left = grow(padded, ys, xs, GROW_STEPS)
        ys, xs = ys[:left], xs[:left]
    for _ in range(0 if grow is not None else GROW_STEPS):  # each empty pixel takes the largest id among its 8
        if not ys.size:  # neighbours (gathers only)
            break
        best = np.zeros(ys.size, padded.dtype)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    np.maximum(best, padded[ys + dy, xs + dx], out=best)
        padded[ys, xs] = best
        left = best == 0
        ys, xs = ys[left], xs[left]
    out = padded[1:-1, 1:-1].copy()
    if ys.size:
        idx = ndi.distance_transform_edt(out == 0, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    return out


def _count_labels(labels: np.ndarray) -> int:
    """How many different labels ``labels`` holds."""
    distinct = kernel("distinct_labels") if labels.ndim == 2 else None
    if distinct is not None:
        return int(distinct(labels, int(labels.max(initial=0)) + 1))
    return int(np.count_nonzero(np.bincount(labels.ravel())))


def _planimetric_na(filled: np.ndarray, area_mm2: float) -> tuple[float, int, int]:
    n_cut = _count_labels(np.concatenate([filled[0], filled[-1], filled[:, 0], filled[:, -1]]))
    n_in = _count_labels(filled) - n_cut
    return (n_in + 0.5 * n_cut + 1) / area_mm2, n_in, n_cut


def _circle_crossings(boundary: np.ndarray, cy: float, cx: float, radius: float) -> int:
    """Entries into the boundary along a circle sampled every ½ px."""
    n = max(16, int(np.ceil(4 * np.pi * radius)))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ys = np.clip(np.rint(cy + radius * np.sin(t)).astype(int), 0, boundary.shape[0] - 1)
    xs = np.clip(np.rint(cx + radius * np.cos(t)).astype(int), 0, boundary.shape[1] - 1)
    on = boundary[ys, xs]
    if on.all() or not on.any():
        return 0
    # a gap shorter than MIN_GAP_SAMPLES between two boundary runs is the rasterized path flickering, not a grain
    start = int(np.flatnonzero(~on)[0])
    on = np.roll(on, -start)  # begin off the boundary
    edges = np.flatnonzero(np.diff(np.concatenate([[False], on, [False]]).astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    gaps = starts[1:] - ends[:-1]
    wrap = n - ends[-1] + starts[0]
    return int(1 + (gaps >= MIN_GAP_SAMPLES).sum()) if wrap >= MIN_GAP_SAMPLES or len(starts) == 1 else int(
        max(1, (gaps >= MIN_GAP_SAMPLES).sum()))


def _t_interval(centre: float, fields: np.ndarray) -> tuple[float, float] | None:
    """centre ± t · s / √n over the fields' values (E112 §15), centred on the whole frame's value."""
    fields = fields[np.isfinite(fields)]
    if len(fields) < 2:
        return None
    half = stats.t.ppf(0.975, len(fields) - 1) * fields.std(ddof=1) / np.sqrt(len(fields))
    return float(centre - half), float(centre + half)


def measure_grains(boundaries: np.ndarray, nm_per_px: float, *, fields: int = 3, close_px: int = 0,
                   min_area_px: int = 4, ala_gap: float = 3.0) -> GrainsResult:
    """ASTM E112 grain size of one boundary map (True on boundaries) at ``nm_per_px``."""
    if not nm_per_px or nm_per_px <= 0:
        raise ValueError("grain size numbers need a calibrated frame (nm per pixel)")
    b = np.asarray(boundaries, bool)
    h, w = b.shape
    mm_per_px = nm_per_px * 1e-6
    grains = close_grains(b, close_px, min_area_px)
    filled = fill_boundaries(grains)
    na, n_in, n_cut = _planimetric_na(filled, h * w * mm_per_px**2)
    # fields: the frame cut into fields × fields tiles, each counted as its own planimetric field
    ys = np.linspace(0, h, fields + 1).astype(int)
    xs = np.linspace(0, w, fields + 1).astype(int)
    tiles = [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(fields) for j in range(fields)]
    na_fields = np.array([_planimetric_na(filled[y0:y1, x0:x1], (y1 - y0) * (x1 - x0) * mm_per_px**2)[0]
                          for y0, y1, x0, x1 in tiles])
    iv = _t_interval(na, na_fields)
    planimetric = GValue(g_planimetric(na), None if iv is None or iv[0] <= 0 else g_planimetric(iv[0]),
                         None if iv is None else g_planimetric(iv[1]), "E112 planimetric (Jeffries), t over fields")
    # Abrams circles per field: radii in ratio 3:2:1, the largest filling 90 % of the field
    per_field_l = []
    total_len = total_p = 0.0
    for y0, y1, x0, x1 in tiles:
        r0 = 0.45 * min(y1 - y0, x1 - x0)
        cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
        p = sum(_circle_crossings(b, cy, cx, r0 * k / 3) for k in (1, 2, 3))
        length = 2 * np.pi * r0 * 2  # (1 + 2 + 3) / 3 · r0 · 2π
        total_len += length
        total_p += p
        per_field_l.append(length / p if p else np.nan)
    intercept = mean_l_um = None
    if total_p:
        mean_l_mm = total_len / total_p * mm_per_px
        mean_l_um = mean_l_mm * 1e3
        iv = _t_interval(mean_l_mm, np.array(per_field_l) * mm_per_px)
        intercept = GValue(g_intercept(mean_l_mm), None if iv is None else g_intercept(iv[1]),
                           None if iv is None or iv[0] <= 0 else g_intercept(iv[0]),
                           "E112 intercept (Abrams three circles), t over fields")
    # interior grains: size distribution and ALA
    edge_ids = np.unique(np.concatenate([filled[0], filled[-1], filled[:, 0], filled[:, -1]]))
    areas_px = np.bincount(filled.ravel())
    interior = np.setdiff1d(np.flatnonzero(areas_px), edge_ids)
    areas_mm2 = areas_px[interior] * mm_per_px**2
    g_each = g_planimetric(1 / areas_mm2) if len(areas_mm2) else np.zeros(0)
    edges = np.arange(np.floor(g_each.min() * 2) / 2, np.ceil(g_each.max() * 2) / 2 + 0.5, 0.5) if len(g_each) else np.zeros(1)
    counts = np.histogram(g_each, edges)[0] if len(g_each) else np.zeros(0, int)
    ala_g = float(g_each.min()) if len(g_each) else None
    ala = ala_g is not None and planimetric.g - ala_g >= ala_gap
    return GrainsResult(filled, n_in, n_cut, areas_mm2 * 1e6, 2 * np.sqrt(areas_mm2 * 1e6 / np.pi), planimetric,
                        intercept, mean_l_um, (edges, counts), ala_g, bool(ala), interior)
