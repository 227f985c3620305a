"""Phase morphology: how wide each phase is and how far apart, with 95 % intervals.

* **Local width** (ligament / pore width, as for nanoporous metals): the diameter of the largest inscribed circle at
  each medial-axis pixel. The distance transform places the profile; the width is measured across the ridge (the
  Hessian's direction of strongest curvature) between the sub-pixel edges where the mask blurred by 1 px crosses 0.5. Branch points, end points, medial-axis pixels within 1.5 junction radii
  of a junction (where the inscribed circle grows) and those whose inscribed circle would cross the frame edge are
  left out. The interval on the median is a block bootstrap (blocks of
  ``phase_block_px``), because neighbouring medial-axis pixels are not independent.
* **Line intercepts** on families of parallel test lines at ``intercept_angles`` orientations: boundary crossings
  P_L per phase give N_L = P_L / 2 intercepts per unit length, the mean intercept length L̄ = V_V / N_L and the mean
  free path λ = (1 − V_V) / N_L (Underwood), with a ratio-estimator interval over the test lines. When N_L varies with the line orientation by at least
  ``lamellar_anisotropy`` (max / min), the structure is lamellar and the mean lamellar spacing is measured on the
  lines across the lamellae (the orientation with the most intercepts, refined to 1°), from each line's first to
  last boundary crossing so that the line ends do not bias it.

Everything here is plain numpy (a few full-frame passes compiled in :mod:`copilot.analysis.kernels` and
:mod:`copilot.analysis.smoothing`, with the same values); :mod:`copilot.result` turns it into the document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from copilot.analysis.kernels import kernel
from copilot.analysis.smoothing import gaussian

WIDTH_BIN_PX = 0.05  # histogram resolution of the width bootstrap
JUNCTION_REACH = 1.5  # medial-axis pixels nearer a junction than this × its inscribed radius are left out
PROFILE_SAMPLES = 65  # samples across the ridge, odd so that the middle one is the medial-axis pixel


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval (None when there was too little to resample)."""

    value: float
    low: float | None
    high: float | None
    method: str


@dataclass(frozen=True)
class PhaseMorphology:
    """One phase's widths and intercept statistics, lengths in the frame's length unit."""

    name: str
    width_samples: int
    width_median: Estimate | None
    width_mean: float | None
    width_p10: float | None
    width_p90: float | None
    mean_intercept: Estimate | None
    mean_free_path: Estimate | None
    lamellar_spacing: Estimate | None


@dataclass(frozen=True)
class Morphology:
    phases: tuple[PhaseMorphology, ...]
    anisotropy: float | None  # max / min intercept density over line orientations
    orientation_deg: float | None  # of the test lines with the most intercepts (perpendicular to lamellae)
    line_spacing_px: int
    n_angles: int


def distances_to_outside(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask)``, the same values, from the compiled exact transform
    (``kernels.squared_distances``) when there is one and ``mask`` has an outside pixel."""
    compiled = kernel("squared_distances")
    if compiled is None or mask.all():  # (scipy measures a mask without outside to a corner beyond the frame)
        return ndi.distance_transform_edt(mask)
    d2 = np.empty(mask.shape, np.int64)
    compiled(np.ascontiguousarray(mask, bool), d2)
    return np.sqrt(d2.astype(np.float64))


def skeleton_neighbours(skel: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """How many of the 8 neighbours of each skeleton pixel (``ys``, ``xs``) are skeleton pixels too."""
    padded = np.pad(skel, 1).view(np.uint8)
    count = np.zeros(ys.size, np.int64)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                count += padded[ys + dy, xs + dx]
    return count


def local_widths(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inscribed-circle diameters (px) on the medial axis of ``mask``, with their row and column.

    >>> band = np.zeros((40, 60), bool); band[10:19] = True  # 9 px wide
    >>> w, _, _ = local_widths(band); float(np.median(w))
    9.0
    """
    mask = np.asarray(mask, bool)
    if not mask.any() or mask.all():  # nothing, or a frame all of one class: no inscribed circle stays inside it
        return np.zeros(0), np.zeros(0, int), np.zeros(0, int)  # (the thinning of a full frame took 1.5 s at 1024²)
    edt = distances_to_outside(mask)  # to the nearest outside pixel centre
    skel = skeletonize(mask)
    sy, sx = np.nonzero(skel)
    neighbours = skeleton_neighbours(skel, sy, sx)
    plain = neighbours == 2  # plain ridge: no branch points, no end points
    ys, xs = sy[plain], sx[plain]
    m = edt[ys, xs]
    if (neighbours > 2).any():  # junctions widen the inscribed circle for about a junction's own radius around them
        by, bx = sy[neighbours > 2], sx[neighbours > 2]
        dist, nearest = cKDTree(np.column_stack([by, bx])).query(np.column_stack([ys, xs]))
        far = dist >= JUNCTION_REACH * edt[by[nearest], bx[nearest]]  # the nearest junction's own radius
        ys, xs, m = ys[far], xs[far], m[far]
    h, w = mask.shape
    inside = (ys + 1 >= m) & (h - ys >= m) & (xs + 1 >= m) & (w - xs >= m)  # the circle stays in the frame
    ys, xs, m = ys[inside], xs[inside], m[inside]
    if not len(m):
        return np.zeros(0), ys, xs
    # across-ridge direction: eigenvector of the most negative Hessian eigenvalue of the smoothed distance map
    sm = np.pad(gaussian(edt, 1.0, np.float64), 1, mode="edge")
    y1, x1 = ys + 1, xs + 1
    dyy = sm[y1 + 1, x1] - 2 * sm[y1, x1] + sm[y1 - 1, x1]
    dxx = sm[y1, x1 + 1] - 2 * sm[y1, x1] + sm[y1, x1 - 1]
    dxy = (sm[y1 - 1, x1 - 1] - sm[y1 - 1, x1 + 1] - sm[y1 + 1, x1 - 1] + sm[y1 + 1, x1 + 1]) / 4.0
    theta = 0.5 * np.arctan2(2 * dxy, dxx - dyy)  # direction of the largest eigenvalue (along the ridge)
    ny, nx = np.cos(theta), -np.sin(theta)  # perpendicular to it: across the ridge
    # sub-pixel edges: where the mask blurred by σ = 1 px crosses 0.5, on a profile across the ridge
    soft = gaussian(mask, 1.0)
    t = np.linspace(-1.0, 1.0, PROFILE_SAMPLES)[None, :] * (m[:, None] + 3)
    prof = ndi.map_coordinates(soft, [ys[:, None] + t * ny[:, None], xs[:, None] + t * nx[:, None]], order=1,
                               mode="constant", cval=0.0)
    c = PROFILE_SAMPLES // 2
    right = _first_crossing(prof[:, c:], t[:, c:])
    left = _first_crossing(prof[:, c::-1], t[:, c::-1])
    ok = np.isfinite(right) & np.isfinite(left) & (prof[:, c] >= 0.5)
    return (right - left)[ok], ys[ok], xs[ok]


def _first_crossing(prof: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, the position t where the profile first falls below 0.5 (linear interpolation); NaN if never."""
    below = prof < 0.5
    j = np.argmax(below, axis=1)
    found = below[np.arange(len(j)), j] & (j > 0)
    j = np.maximum(j, 1)
    r = np.arange(len(j))
    f0, f1 = prof[r, j - 1], prof[r, j]
    frac = (f0 - 0.5) / np.where(f0 > f1, f0 - f1, 1.0)
    pos = t[r, j - 1] + frac * (t[r, j] - t[r, j - 1])
    return np.where(found, pos, np.nan)


def _block_median(widths: np.ndarray, ys: np.ndarray, xs: np.ndarray, block_px: int, resamples: int,
                  seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the median width, resampling blocks of the frame; None with fewer than 4 blocks."""
    block = (ys // block_px) * 100_000 + xs // block_px
    _, blk = np.unique(block, return_inverse=True)
    n_blocks = int(blk.max()) + 1
    if n_blocks < 4:
        return None
    bins = np.floor(widths / WIDTH_BIN_PX).astype(np.int64)
    bins -= bins.min()
    n_bins = int(bins.max()) + 1
    hist = np.bincount(blk * n_bins + bins, minlength=n_blocks * n_bins).astype(np.float64).reshape(n_blocks, n_bins)
    picks = np.random.default_rng(seed).integers(0, n_blocks, size=(resamples, n_blocks))
    weights = np.bincount((np.arange(resamples)[:, None] * n_blocks + picks).ravel(),
                          minlength=resamples * n_blocks).astype(np.float64).reshape(resamples, n_blocks)
    med = _resampled_medians(weights, np.cumsum(hist, axis=1))
    med += float(np.median(widths)) - _hist_median(hist.sum(axis=0, keepdims=True))[0]  # remove the binning bias
    return float(np.quantile(med, 0.025)), float(np.quantile(med, 0.975))


def _resampled_medians(weights: np.ndarray, block_cdf: np.ndarray) -> np.ndarray:
    """``_hist_median(weights @ hist)`` without the (resamples × bins) table: each resample's cumulative counts
    are read only where a binary search for its median bin looks (``block_cdf``: each block's cumulative
    histogram). All counts are whole numbers, exact in float64 whatever the order of the sums, so the values are
    the same."""
    half = weights @ block_cdf[:, -1] / 2

    def cdf_at(j: np.ndarray) -> np.ndarray:
        return np.einsum("rb,br->r", weights, block_cdf[:, j])

    lo, hi = np.zeros(len(weights), np.int64), np.full(len(weights), block_cdf.shape[1] - 1, np.int64)
    while np.any(lo < hi):  # k: the first bin whose cumulative count reaches half (cdf < half before it)
        mid = (lo + hi) // 2
        reached = cdf_at(mid) >= half
        hi, lo = np.where(reached, mid, hi), np.where(reached, lo, mid + 1)
    k = lo
    below = np.where(k > 0, cdf_at(np.maximum(k - 1, 0)), 0.0)
    inside = cdf_at(k) - below
    return (k + (half - below) / np.where(inside > 0, inside, 1.0)) * WIDTH_BIN_PX


def _hist_median(hists: np.ndarray) -> np.ndarray:
    """Median of each row's histogram (bins of WIDTH_BIN_PX from 0), interpolated inside the median bin."""
    cdf = np.cumsum(hists, axis=1)
    rows = np.arange(len(cdf))
    half = cdf[:, -1] / 2
    k = (cdf < half[:, None]).sum(axis=1)
    below = np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)], 0.0)
    inside = cdf[rows, k] - below
    return (k + (half - below) / np.where(inside > 0, inside, 1.0)) * WIDTH_BIN_PX


def line_steps(shape: tuple[int, int], spacing_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The test lines' offsets from the frame centre (``spacing_px`` apart) and the 1-px steps along each, both
    reaching half the frame's diagonal: every line at any angle covers the frame."""
    r = np.hypot(*shape) / 2
    return np.arange(-r, r + 1e-9, spacing_px), np.arange(-r, r + 1e-9, 1.0)


def line_profiles(labels: np.ndarray, angle_rad: float, spacing_px: float) -> np.ndarray:
    """Class along parallel test lines at ``angle_rad`` (1-px steps), −1 outside the frame: (n_lines, n_steps)."""
    h, w = labels.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dy, dx = np.sin(angle_rad), np.cos(angle_rad)
    off, t = line_steps(labels.shape, spacing_px)
    off, t = off[:, None], t[None, :]
    yy = np.rint(cy + off * dx + t * dy).astype(np.int64)
    xx = np.rint(cx - off * dy + t * dx).astype(np.int64)
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    out = np.full(yy.shape, -1, np.int16)
    out[ok] = labels[yy[ok], xx[ok]]
    return out[ok.any(axis=1)]


def intercept_counts(labels: np.ndarray, n_classes: int, spacing_px: float, n_angles: int):
    """Per angle and line: length (px), length per class, boundary crossings per class.

    Returns three arrays, shapes (A, L), (A, L, C), (A, L, C), lines padded with zeros to a common L.
    """
    compiled = kernel("intercepts")
    if compiled is not None and labels.size:  # one pass, the same counts (kernels.intercepts)
        angles = [np.pi * k / n_angles for k in range(n_angles)]  # sin and cos as line_profiles takes them
        dy, dx = np.array([np.sin(a) for a in angles]), np.array([np.cos(a) for a in angles])
        off, t = line_steps(labels.shape, spacing_px)
        shape = (n_angles, off.size)
        length, in_class, cross = np.zeros(shape), np.zeros((*shape, n_classes)), np.zeros((*shape, n_classes))
        compiled(np.ascontiguousarray(labels), dy, dx, off, t, length, in_class, cross)
        used = int(np.count_nonzero(length.any(axis=0)))  # lines that enter the frame at some angle
        return length[:, :used], in_class[:, :used], cross[:, :used]
    per_angle = []
    for k in range(n_angles):
        prof = line_profiles(labels, np.pi * k / n_angles, spacing_px).astype(np.int64)
        n_lines = len(prof)
        row = np.broadcast_to(np.arange(n_lines)[:, None], prof.shape)
        valid = prof >= 0
        length = valid.sum(axis=1).astype(float)
        in_class = np.bincount((row * n_classes + prof)[valid], minlength=n_lines * n_classes)
        a, b = prof[:, :-1], prof[:, 1:]
        step = (a >= 0) & (b >= 0) & (a != b)  # a boundary between two classes: one crossing for each of them
        r = row[:, 1:][step]
        cross = (np.bincount(r * n_classes + a[step], minlength=n_lines * n_classes)
                 + np.bincount(r * n_classes + b[step], minlength=n_lines * n_classes))
        per_angle.append((length, in_class.reshape(n_lines, n_classes).astype(float),
                          cross.reshape(n_lines, n_classes).astype(float)))
    n_lines = max(len(p[0]) for p in per_angle)
    length = np.zeros((n_angles, n_lines))
    in_class = np.zeros((n_angles, n_lines, n_classes))
    cross = np.zeros((n_angles, n_lines, n_classes))
    for k, (ln, ic, cr) in enumerate(per_angle):
        length[k, : len(ln)], in_class[k, : len(ln)], cross[k, : len(ln)] = ln, ic, cr
    return length, in_class, cross


def _crossings_per_px(labels: np.ndarray, angle_rad: float, spacing_px: float) -> float:
    prof = line_profiles(labels, angle_rad, spacing_px)
    a, b = prof[:, :-1], prof[:, 1:]
    return float(((a != b) & (a >= 0) & (b >= 0)).sum() / max((prof >= 0).sum(), 1))


def lamellar_spacing(mask: np.ndarray, angle_rad: float, spacing_px: float,
                     length_per_px: float = 1.0) -> Estimate | None:
    """Mean spacing of ``mask``'s lamellae on test lines at ``angle_rad`` (across them).

    Per line, from the first to the last boundary crossing: (k − 1) crossings span (k − 1) / 2 periods, so the ends
    of the line, cut anywhere in a period, do not bias the count. None when no line crosses three boundaries.
    """
    prof = line_profiles(mask.astype(np.int8), angle_rad, spacing_px)
    a, b = prof[:, :-1], prof[:, 1:]
    step = (a != b) & (a >= 0) & (b >= 0)
    k = step.sum(axis=1)
    pos = np.where(step, np.arange(step.shape[1])[None, :], -1)
    last = pos.max(axis=1)
    first = np.where(step, np.arange(step.shape[1])[None, :], step.shape[1]).min(axis=1)
    use = k >= 3
    if not use.any():
        return None
    span, periods = (last - first)[use].astype(float), (k[use] - 1) / 2.0
    return _estimate(span.sum() / periods.sum(), _ratio_interval(span, periods), length_per_px,
                     "first-to-last crossing per period across the lamellae, ratio interval over test lines")


def _ratio_interval(num: np.ndarray, den: np.ndarray):
    """95 % interval of sum(num) / sum(den) over lines (ratio-estimator variance); None with fewer than 4 lines."""
    keep = (den > 0) | (num > 0)  # lines off the frame carry nothing
    num, den = num[keep], den[keep]
    n = len(den)
    if n < 4 or den.sum() == 0:
        return None
    r = num.sum() / den.sum()
    se = np.sqrt(n / (n - 1) * ((num - r * den) ** 2).sum()) / den.sum()
    return float(r - 1.96 * se), float(r + 1.96 * se)


def _estimate(value: float, interval, scale: float, method: str) -> Estimate:
    lo, hi = (None, None) if interval is None else (interval[0] * scale, interval[1] * scale)
    return Estimate(value * scale, lo, hi, method)


def measure_morphology(labels: np.ndarray, class_names: tuple[str, ...], length_per_px: float = 1.0, *,
                       block_px: int = 64, line_spacing_px: int = 8, n_angles: int = 18,
                       lamellar_anisotropy: float = 2.0, resamples: int = 1000) -> Morphology:
    """Widths, mean intercept, mean free path and (lamellar structures) spacing of every class of ``labels``."""
    labels = np.asarray(labels)
    n_classes = len(class_names)
    length, in_class, cross = intercept_counts(labels, n_classes, line_spacing_px, n_angles)
    # intercepts per unit length per angle, summed over classes; anisotropy of the whole structure
    nl_angle = cross.sum(axis=(1, 2)) / 2 / np.maximum(length.sum(axis=1), 1)
    anisotropy = float(nl_angle.max() / nl_angle.min()) if nl_angle.min() > 0 else (
        float("inf") if nl_angle.max() > 0 else None)
    best = int(np.argmax(nl_angle))
    lamellar = anisotropy is not None and anisotropy >= lamellar_anisotropy
    fine_angle = np.pi * best / n_angles
    if lamellar:  # refine the orientation across the lamellae to 1°
        step = np.pi / n_angles
        fine = fine_angle + np.deg2rad(np.arange(-np.rad2deg(step) / 2, np.rad2deg(step) / 2 + 1e-9, 1.0))
        fine_angle = float(fine[np.argmax([_crossings_per_px(labels, a, line_spacing_px) for a in fine])])
    s = length_per_px
    flat_len = length.reshape(-1)
    phases = []
    for c, name in enumerate(class_names):
        widths, ys, xs = local_widths(labels == c)
        if len(widths):
            ci = _block_median(widths, ys, xs, block_px, resamples)
            median = _estimate(float(np.median(widths)), ci, s, "block bootstrap of the median")
            p10, p90 = (float(v) * s for v in np.quantile(widths, [0.1, 0.9]))
            mean = float(widths.mean()) * s
        else:
            median, p10, p90, mean = None, None, None, None
        n_int = cross[..., c].reshape(-1) / 2
        mean_intercept = mean_free_path = spacing = None
        if n_int.sum() > 0:
            l_in = in_class[..., c].reshape(-1)
            mean_intercept = _estimate(l_in.sum() / n_int.sum(), _ratio_interval(l_in, n_int), s,
                                       "V_V / N_L, ratio interval over test lines")
            l_out = flat_len - l_in
            mean_free_path = _estimate(l_out.sum() / n_int.sum(), _ratio_interval(l_out, n_int), s,
                                       "(1 − V_V) / N_L, ratio interval over test lines")
            if lamellar:
                spacing = lamellar_spacing(labels == c, fine_angle, line_spacing_px, s)
        phases.append(PhaseMorphology(name, int(len(widths)), median, mean, p10, p90, mean_intercept,
                                      mean_free_path, spacing))
    return Morphology(tuple(phases), anisotropy, float(np.rad2deg(fine_angle)) % 180.0, line_spacing_px, n_angles)
