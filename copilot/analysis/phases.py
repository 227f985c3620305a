"""Phases: area fraction per class with a 95 % interval that respects spatial correlation, and the ASTM E562
point count beside it.

Neighbouring pixels are not independent samples, so a binomial interval over pixels would be far too narrow. The
frame is cut into square blocks (``phase_block_px``) and the blocks are resampled (block bootstrap). The E562
estimate counts a regular point grid; its interval treats each block as one E562 field (t · s / √n).

The area fraction itself is measured sub-pixel: a working pixel whose 4-neighbours all share its class counts whole;
one on a phase boundary is split into ``SUBPIXELS × SUBPIXELS`` points, each given the class of the bilinearly
interpolated probabilities there (the model's boundary at the frame's resolution or finer; cost grows with the
boundary length, not the frame area).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from copilot.analysis.kernels import kernel
from copilot.analysis.measurements import FrameMeasurements, Interval, Measures, PhaseFraction, PhaseStats
from copilot.analysis.morphology import measure_morphology
from copilot.analysis.settings import AnalysisSettings
from copilot.analysis.stats import sufficiency
from copilot.inference.segmentation import Segmentation

SUBPIXELS = 4  # per axis, in working pixels on a phase boundary


def boundary_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class."""
    b = np.zeros(labels.shape, bool)
    dy = labels[1:] != labels[:-1]
    dx = labels[:, 1:] != labels[:, :-1]
    b[1:] |= dy
    b[:-1] |= dy
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    return b


def subpixel_fractions(probabilities: np.ndarray, labels: np.ndarray, k: int = SUBPIXELS) -> tuple[np.ndarray, int]:
    """Area fraction per class with boundary pixels split into k × k points (bilinear probabilities, arg-max);
    returns the fractions and the number of boundary pixels."""
    n_classes = probabilities.shape[0]
    compiled = kernel("subpixel_counts")
    if compiled is not None and probabilities.dtype == np.float32:  # one pass, the same counts (kernels.py)
        counts = np.zeros(n_classes)
        n_band = compiled(probabilities, np.ascontiguousarray(labels), k, counts)
        return counts / labels.size, int(n_band)
    band = boundary_pixels(labels)
    counts = np.bincount(labels[~band].ravel(), minlength=n_classes)[:n_classes].astype(np.float64)
    ys, xs = np.nonzero(band)
    if ys.size:
        P = np.pad(probabilities, ((0, 0), (1, 1), (1, 1)), mode="edge")
        offsets = (np.arange(k) + 0.5) / k - 0.5
        sub = np.zeros(n_classes)
        for dy in offsets:
            y0 = ys + int(np.floor(dy)) + 1
            fy = np.float32(dy - np.floor(dy))
            for dx in offsets:
                x0 = xs + int(np.floor(dx)) + 1
                fx = np.float32(dx - np.floor(dx))
                v = ((1 - fy) * ((1 - fx) * P[:, y0, x0] + fx * P[:, y0, x0 + 1])
                     + fy * ((1 - fx) * P[:, y0 + 1, x0] + fx * P[:, y0 + 1, x0 + 1]))
                sub += np.bincount(v.argmax(axis=0), minlength=n_classes)[:n_classes]
        counts += sub / (k * k)
    return counts / labels.size, int(ys.size)


def block_fractions(labels: np.ndarray, n_classes: int, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block: class fractions (n_blocks, n_classes) and pixel counts (n_blocks,). Edge blocks may be smaller."""
    h, w = labels.shape
    fr, sizes = [], []
    for y in range(0, h, block_px):
        for x in range(0, w, block_px):
            block = labels[y : y + block_px, x : x + block_px]
            fr.append(np.bincount(block.ravel(), minlength=n_classes)[:n_classes] / block.size)
            sizes.append(block.size)
    return np.array(fr), np.array(sizes, float)


def block_bootstrap(fractions: np.ndarray, sizes: np.ndarray, resamples: int, level: float = 0.95,
                    seed: int = 0) -> np.ndarray | None:
    """(n_classes, 2) interval of the area fraction from resampled blocks; None with fewer than 4 blocks."""
    n = len(sizes)
    if n < 4:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    w = sizes[idx]
    est = np.einsum("rb,rbc->rc", w, fractions[idx]) / w.sum(axis=1, keepdims=True)
    alpha = (1 - level) / 2
    return np.quantile(est, [alpha, 1 - alpha], axis=0).T


def point_count(labels: np.ndarray, n_classes: int, spacing_px: int, block_px: int):
    """ASTM E562: fraction of grid points on each class, and a t-interval over blocks as fields. The grid starts
    half a spacing in, or in the middle of a side shorter than that (a strip narrower than the spacing still gets
    its line of points)."""
    oy, ox = (min(spacing_px // 2, (n - 1) // 2) for n in labels.shape)
    grid = labels[oy::spacing_px, ox::spacing_px]
    estimate = np.bincount(grid.ravel(), minlength=n_classes)[:n_classes] / grid.size
    step = max(1, block_px // spacing_px)
    fields = [grid[y : y + step, x : x + step] for y in range(0, grid.shape[0], step) for x in range(0, grid.shape[1], step)]
    per_field = np.array([np.bincount(f.ravel(), minlength=n_classes)[:n_classes] / f.size for f in fields if f.size])
    interval = None
    if len(per_field) >= 2:
        half = stats.t.ppf(0.975, len(per_field) - 1) * per_field.std(axis=0, ddof=1) / np.sqrt(len(per_field))
        interval = np.stack([estimate - half, estimate + half], axis=1)
    return estimate, interval, int(grid.size)


def measure_phases(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Area fraction per class of the analysed area (data bar already cropped by the reader)."""
    cfg = settings or AnalysisSettings()
    labels = seg.labels
    n_classes = len(seg.class_names)
    fractions, n_band = subpixel_fractions(seg.probabilities, labels)
    blocks, sizes = block_fractions(labels, n_classes, cfg.phase_block_px)
    boot = block_bootstrap(blocks, sizes, cfg.bootstrap_resamples)
    pc, pc_ci, n_points = point_count(labels, n_classes, cfg.point_grid_spacing_px, cfg.phase_block_px)

    def interval(row, method):
        return None if row is None else Interval(low=float(max(0, row[0])), high=float(min(1, row[1])), method=method)

    phases = [
        PhaseFraction(
            name=name,
            area_fraction=float(fractions[i]),
            ci=interval(None if boot is None else boot[i], "block bootstrap"),
            point_count=float(pc[i]),
            point_count_ci=interval(None if pc_ci is None else pc_ci[i], "ASTM E562 t-interval over blocks"),
        )
        for i, name in enumerate(seg.class_names)
    ]
    # the headline phase: the most abundant class other than the matrix (class 0), e.g. laths or pores
    head = max(phases[1:], key=lambda ph: ph.area_fraction)
    enough = sufficiency(f"fraction:{head.name}", head.area_fraction, head.ci, len(sizes), cfg.target_precision_rel,
                         len(sizes), scope="frame")
    summary = PhaseStats(phases=phases, grid_points=n_points, block_px=cfg.phase_block_px,
                         subpixel_boundary_px=n_band)
    unit = "nm" if seg.nm_per_px is not None else "px"
    morphology = None if not cfg.morphology else measure_morphology(
        labels, seg.class_names, seg.nm_per_px or 1.0, block_px=cfg.phase_block_px,
        line_spacing_px=cfg.intercept_line_spacing_px, n_angles=cfg.intercept_angles,
        lamellar_anisotropy=cfg.lamellar_anisotropy, resamples=cfg.bootstrap_resamples)
    return FrameMeasurements(seg, labels.astype(np.int32), Measures(task="phases", length_unit=unit, phases=summary,
                                                                     sufficiency=[enough]),
                             morphology=morphology)
