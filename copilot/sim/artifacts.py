"""Scan artefacts shared by the STEM/TEM and SEM simulators: per-line displacements and charging streaks.

Both act along the fast-scan direction (x, rows are scan lines). Line displacements move the masks with the image
(so ground truth stays exact); charging streaks change intensities only.

>>> rng = np.random.default_rng(0)
>>> line_shifts(4, 0.0, 0.0, 40.0, rng) is None
True
>>> img = charging_streaks(np.zeros((64, 64), np.float32), 0.2, 30.0, rng)
>>> img.shape, bool(np.abs(img).max() > 0)
((64, 64), True)
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def line_shifts(n_lines: int, jitter_px: float, wobble_px: float, wobble_period_px: float,
                rng: np.random.Generator) -> np.ndarray | None:
    """Integer x displacement of every scan line: random jitter (std ``jitter_px``) plus a sinusoidal wobble
    (amplitude ``wobble_px``, period ``wobble_period_px`` lines, random phase: mains pick-up in the scan coils).
    None when every line stays in place. Draws from ``rng`` only for the terms that are on."""
    shift = np.zeros(n_lines)
    if jitter_px > 0:
        shift += rng.normal(0.0, jitter_px, n_lines)
    if wobble_px > 0:
        phase = rng.uniform(0, 2 * np.pi)
        shift += wobble_px * np.sin(2 * np.pi * np.arange(n_lines) / max(wobble_period_px, 2.0) + phase)
    out = np.rint(shift).astype(np.intp)
    return out if np.any(out) else None


def charging_streaks(img: np.ndarray, amplitude: float, decay_px: float, rng: np.random.Generator) -> np.ndarray:
    """Charging as seen in a scanned image (float32 in, float32 out, same units as ``img``):

    * bright tails trailing bright features along the scan (the charged region keeps emitting for a while after the
      beam has passed): a causal exponential filter (length ``decay_px``, unit gain) of the positive excess over the
      frame median relative to its 99.5th percentile, times ``amplitude / 2``;
    * bands: a few runs of scan lines whose level jumps by ±``amplitude`` at a random column and relaxes over
      ``decay_px`` (the surface potential discharging).
    """
    H, W = img.shape
    out = img.astype(np.float32, copy=True)
    a = float(np.exp(-1.0 / max(decay_px, 1.0)))
    excess = np.clip(img - np.median(img), 0.0, None).astype(np.float32)
    peak = float(np.percentile(excess, 99.5)) if excess.size else 0.0
    if peak > 0:
        tail = lfilter([1.0 - a], [1.0, -a], excess / peak, axis=1).astype(np.float32)
        out += np.float32(0.5 * amplitude) * tail
    n_bands = int(rng.poisson(3.0 * H / 512)) + 1
    xs = np.arange(W, dtype=np.float32)
    for _ in range(n_bands):
        r0 = int(rng.integers(H))
        h = int(rng.integers(1, max(2, H // 25)))
        c0 = float(rng.uniform(0, W * 0.8))
        amp = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * amplitude)
        prof = np.where(xs >= c0, np.exp(-(xs - c0) / max(decay_px * rng.uniform(0.5, 3.0), 1.0)), 0.0)
        out[r0:r0 + h] += np.float32(amp) * prof.astype(np.float32)[None, :]
    return out
