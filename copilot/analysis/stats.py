"""Statistics shared by particle and phase analysis: intervals of the mean and median, PSD histograms, log-normal fits,
and how many more objects a target precision needs."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from copilot.analysis.measurements import Histogram, Interval, LogNormalFit, Sufficiency


def mean_interval(values: np.ndarray, level: float = 0.95) -> Interval | None:
    """Student-t interval of the mean; None for fewer than 2 values.

    >>> iv = mean_interval(np.arange(100.0))
    >>> round(iv.low, 2), round(iv.high, 2)
    (43.73, 55.27)
    """
    v = np.asarray(values, float)
    if v.size < 2:
        return None
    half = float(special.stdtrit(v.size - 1, 0.5 + level / 2) * v.std(ddof=1) / np.sqrt(v.size))
    return Interval(low=float(v.mean() - half), high=float(v.mean() + half), level=level, method="t-interval")


def median_interval(values: np.ndarray, level: float = 0.95) -> Interval | None:
    """Distribution-free interval of the median from order statistics (binomial ranks n/2 ± z·√n/2).

    Needs no resampling, so it stays cheap for the thousands of particles pooled over a series window.

    >>> iv = median_interval(np.arange(1, 101.0))
    >>> (iv.low, iv.high)
    (40.0, 61.0)
    """
    v = np.sort(np.asarray(values, float))
    n = v.size
    if n < 6:
        return None
    z = float(special.ndtri(0.5 + level / 2))  # stats.norm.ppf costs ~0.3 ms a call in argument checks
    lo = max(int(np.floor(n / 2 - z * np.sqrt(n) / 2)), 1)
    hi = min(int(np.ceil(n / 2 + z * np.sqrt(n) / 2)) + 1, n)
    return Interval(low=float(v[lo - 1]), high=float(v[hi - 1]), level=level, method="order statistics")


def psd_histogram(ecd: np.ndarray, lo: float, hi: float, bins: int, scale: str) -> Histogram:
    """Number-weighted size histogram on fixed edges (comparable across frames); values outside are clipped in."""
    edges = np.geomspace(lo, hi, bins + 1) if scale == "log" else np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(np.clip(ecd, lo, hi), edges)
    return Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts], scale=scale)


def lognormal_fit(ecd: np.ndarray) -> LogNormalFit | None:
    """Maximum-likelihood log-normal: geometric mean and geometric standard deviation σg."""
    v = np.asarray(ecd, float)
    v = v[v > 0]
    if v.size < 3:
        return None
    logs = np.log(v)
    return LogNormalFit(geometric_mean=float(np.exp(logs.mean())), sigma_g=float(np.exp(logs.std(ddof=1))))


def sufficiency(quantity: str, estimate: float | None, interval: Interval | None, n_objects: int,
                target_rel: float, objects_per_frame: float | None, scope: str) -> Sufficiency:
    """Is the 95 % half-width within ``target_rel`` of the estimate? If not, about how many more objects/frames.

    The half-width shrinks as 1/√n, so n_needed ≈ n · (half_width / target)².
    """
    if estimate is None or interval is None or estimate == 0 or n_objects < 2:
        return Sufficiency(quantity=quantity, estimate=estimate, target_rel=target_rel, enough=False, scope=scope)
    half = (interval.high - interval.low) / 2 / abs(estimate)
    enough = half <= target_rel
    more = 0 if enough else max(1, math.ceil(n_objects * (half / target_rel) ** 2) - n_objects)
    frames = None
    if objects_per_frame and objects_per_frame > 0:
        frames = 0 if enough else math.ceil(more / objects_per_frame)
    return Sufficiency(quantity=quantity, estimate=estimate, half_width_rel=float(half), target_rel=target_rel,
                       enough=enough, more_objects_needed=more, more_frames_needed=frames, scope=scope)
