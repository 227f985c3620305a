"""The ``grains`` task: a boundary model's probabilities → closed grains → ASTM E112 G (``copilot.analysis.grains``).

Boundaries are the pixels of the working grid whose boundary probability passes a hysteresis threshold (above
``grain_boundary_low``, 4-connected to a pixel above ``grain_boundary_high``): faint stretches of a boundary stay
joined to its confident parts, so a shallow etch does not merge grains (a missed boundary stretch merges two grains
and lowers G). The defaults (0.08 / 0.25, 2 px closing) are chosen per boundary model on tuning frames apart from the
card's held-out ones (``bench/accuracy/grains_thresholds.py``). Gaps up to ``grain_close_px`` are bridged.
Grain counts do not depend on the grid's resolution (a grain is a closed region); sizes are in µm from the working
grid's own calibration. An uncalibrated frame gets counts only (G needs a scale; the note says so).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.grains import GrainsResult, g_planimetric, measure_grains
from copilot.analysis.kernels import kernel
from copilot.analysis.measurements import FrameMeasurements, GrainStats, GrainTable, Histogram, Interval, Measures
from copilot.analysis.settings import AnalysisSettings
from copilot.inference.segmentation import Segmentation

BOUNDARY_CLASS = "boundary"


def boundary_map(probabilities: np.ndarray, class_names: tuple[str, ...], low: float = 0.15,
                 high: float = 0.4) -> np.ndarray:
    """Boolean boundaries from (C, h, w) probabilities by hysteresis on the boundary class.

    >>> p = np.zeros((2, 3, 3), np.float32); p[1, 1] = [0.6, 0.2, 0.05]; p[0] = 1 - p[1]
    >>> boundary_map(p, ("grain", "boundary")).astype(int).tolist()
    [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    """
    if BOUNDARY_CLASS not in class_names:
        raise ValueError(f"a grains model needs a {BOUNDARY_CLASS!r} class; it has {', '.join(class_names)}")
    pb = probabilities[class_names.index(BOUNDARY_CLASS)]
    flood = kernel("hysteresis")
    if flood is not None:
        out = np.zeros(pb.shape, bool)
        flood(np.ascontiguousarray(pb), pb.dtype.type(low), pb.dtype.type(high), out)  # thresholds as numpy casts them
        return out
    weak = pb > low
    lab, n = ndi.label(weak)
    seeded = np.zeros(n + 1, bool)
    seeded[lab[pb > high]] = True
    seeded[0] = False
    return seeded[lab]


def _g_value(v) -> tuple[float | None, Interval | None]:
    if v is None or not np.isfinite(v.g):
        return None, None
    ci = None if v.low is None or v.high is None else Interval(low=float(v.low), high=float(v.high), method=v.method)
    return float(v.g), ci


def grain_table(r: GrainsResult, frame_px_per_px: float) -> GrainTable:
    """The interior grains' columns; centroids from the grid to frame pixels."""
    ids = np.asarray(r.interior_ids, np.int64)
    h, w = r.grains.shape
    flat = r.grains.ravel()
    n = int(flat.max(initial=0)) + 1
    moments = kernel("label_moments")
    if moments is not None:
        count, sum_y, sum_x = np.zeros(n, np.int64), np.zeros(n), np.zeros(n)
        moments(np.ascontiguousarray(r.grains), n, count, sum_y, sum_x)
    else:
        count = np.bincount(flat, minlength=n)
        sum_y = np.bincount(flat, np.repeat(np.arange(h, dtype=np.float64), w), minlength=n)
        sum_x = np.bincount(flat, np.tile(np.arange(w, dtype=np.float64), h), minlength=n)
    area = np.maximum(count[ids], 1).astype(np.float64)
    cy, cx = sum_y[ids] / area, sum_x[ids] / area
    to_frame = lambda c: (c + 0.5) * frame_px_per_px - 0.5  # noqa: E731
    return GrainTable(ids, to_frame(cx), to_frame(cy), np.asarray(r.areas_um2, float), np.asarray(r.ecd_um, float),
                      grain_g_each(r.areas_um2))


def grain_stats(r: GrainsResult, boundaries: np.ndarray, area_mm2: float | None,
                frame_px_per_px: float = 1.0) -> GrainStats:
    """Plain measurements of one frame from ``measure_grains``' result (sizes None when uncalibrated)."""
    calibrated = area_mm2 is not None
    ecd = r.ecd_um if calibrated else np.zeros(0)
    gp, gp_ci = _g_value(r.planimetric) if calibrated else (None, None)
    gi, gi_ci = _g_value(r.intercept) if calibrated else (None, None)
    edges, counts = r.g_histogram
    hist = Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts], scale="linear") \
        if calibrated and len(counts) else None
    n_a = (r.n_inside + 0.5 * r.n_intercepted + 1) / area_mm2 if calibrated else None
    q = (lambda p: float(np.percentile(ecd, p))) if len(ecd) else (lambda p: None)
    note = None if calibrated else "uncalibrated frame: grain counts only (G needs nm per pixel)"
    return GrainStats(
        count=r.n_inside, count_edge=r.n_intercepted, analysed_area_mm2=area_mm2, grains_per_mm2=n_a,
        g_planimetric=gp, g_planimetric_ci=gp_ci, g_intercept=gi, g_intercept_ci=gi_ci,
        mean_intercept_um=r.mean_intercept_um if calibrated else None,
        ecd_mean_um=float(ecd.mean()) if len(ecd) else None, ecd_sd_um=float(ecd.std(ddof=1)) if len(ecd) > 1 else None,
        ecd_d10_um=q(10), ecd_d50_um=q(50), ecd_d90_um=q(90),
        area_mean_um2=float(r.areas_um2.mean()) if calibrated and len(r.areas_um2) else None,
        ala_g=r.ala_g if calibrated else None, ala=bool(r.ala) if calibrated else False, g_histogram=hist,
        boundary_fraction=float(boundaries.mean()), note=note,
        table=grain_table(r, frame_px_per_px) if calibrated else None)


def measure_grain_frame(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Grains of one segmented frame; ``instances`` = grain ids on the working grid (boundaries given to the
    nearest grain)."""
    cfg = settings or AnalysisSettings()
    b = boundary_map(seg.probabilities, seg.class_names, cfg.grain_boundary_low, cfg.grain_boundary_high)
    nm = seg.nm_per_px
    r = measure_grains(b, nm or 1000.0, fields=cfg.grain_fields, close_px=cfg.grain_close_px,
                       ala_gap=cfg.grain_ala_gap)
    area_mm2 = None if nm is None else b.size * (nm * 1e-6) ** 2
    unit = "nm" if nm is not None else "px"
    return FrameMeasurements(seg, r.grains.astype(np.int32),
                             Measures(task="grains", length_unit=unit, grains=grain_stats(r, b, area_mm2, seg.frame_px_per_px)),
                             boundaries=b)


def grain_g_each(areas_um2: np.ndarray) -> np.ndarray:
    """Each grain's own E112 G from its area (E1382-style)."""
    return g_planimetric(1e6 / np.asarray(areas_um2, float))
