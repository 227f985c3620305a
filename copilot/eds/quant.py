"""Net line intensities after a linear background, and Cliff–Lorimer-style element fractions (semi-quantitative).

Each configured line is integrated over ± ``window_fwhm`` · FWHM(E). Its background is a straight line through the
mean counts of ``background_channels`` channels on each side, taken outside every configured line's window (so a
neighbouring peak is not mistaken for background); what a neighbour's tail still adds to a window is unfolded with
the overlap matrix of the Gaussian line shapes. Fractions: C_i ∝ k_i · I_i over the detected, non-matrix elements
(weight), divided by atomic mass for the atomic basis. These are k-factor ratios without absorption or fluorescence
corrections: semi-quantitative, as labelled in every output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from copilot.eds.lines import LINES, element, fwhm_kev
from copilot.eds.settings import EdsSettings


@dataclass(frozen=True)
class LineWindows:
    lines: tuple[str, ...]
    peak: tuple[np.ndarray, ...]  # channel indices of each line's window
    left: tuple[np.ndarray, ...]  # background channels below it (may be empty)
    right: tuple[np.ndarray, ...]


def line_windows(offset_kev: float, scale_kev: float, n_channels: int, cfg: EdsSettings) -> LineWindows:
    """Peak and background channels of every configured line on this energy axis (lines off the axis are dropped)."""
    ch = np.arange(n_channels)
    e = offset_kev + scale_kev * ch
    half = {ln: cfg.window_fwhm * float(fwhm_kev(LINES[ln][0], cfg.fwhm_mn_ev)) for ln in cfg.lines}
    busy = np.zeros(n_channels, bool)
    for ln in cfg.lines:
        busy |= np.abs(e - LINES[ln][0]) <= half[ln]
    busy |= e <= 0.1  # the noise peak and the zero strobe
    lines, peak, left, right = [], [], [], []
    for ln in cfg.lines:
        energy = LINES[ln][0]
        in_peak = np.flatnonzero(np.abs(e - energy) <= half[ln])
        if len(in_peak) == 0 or in_peak[0] == 0 or in_peak[-1] == n_channels - 1:
            continue
        free = ~busy
        below = ch[free & (ch < in_peak[0]) & (e >= energy - 6 * half[ln])][-cfg.background_channels:]
        above = ch[free & (ch > in_peak[-1]) & (e <= energy + 6 * half[ln])][: cfg.background_channels]
        lines.append(ln)
        peak.append(in_peak)
        left.append(below)
        right.append(above)
    return LineWindows(tuple(lines), tuple(peak), tuple(left), tuple(right))


def net_intensities(spectra: np.ndarray, win: LineWindows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Net counts, their 1-σ (Poisson) and the background under each window: three (n_spectra, n_lines) arrays."""
    spectra = np.atleast_2d(np.asarray(spectra, np.float64))
    n, nl = spectra.shape[0], len(win.lines)
    net, sigma, bg = np.zeros((n, nl)), np.zeros((n, nl)), np.zeros((n, nl))
    for j, (pk, lo, hi) in enumerate(zip(win.peak, win.left, win.right)):
        gross = spectra[:, pk].sum(axis=1)
        centre = pk.mean()
        sides = [(s.mean(), spectra[:, s].mean(axis=1), spectra[:, s].sum(axis=1) / len(s) ** 2) for s in (lo, hi)
                 if len(s)]
        if not sides:
            b, var_b = np.zeros(n), np.zeros(n)
        elif len(sides) == 1:
            _, b, var_b = sides[0]
        else:
            (x0, b0, v0), (x1, b1, v1) = sides
            a = (x1 - centre) / (x1 - x0)
            b, var_b = a * b0 + (1 - a) * b1, a**2 * v0 + (1 - a) ** 2 * v1
        bg[:, j] = b * len(pk)
        net[:, j] = gross - bg[:, j]
        sigma[:, j] = np.sqrt(np.maximum(gross, 1.0) + var_b * len(pk) ** 2)
    return net, sigma, bg


def overlap_matrix(offset_kev: float, scale_kev: float, n_channels: int, win: LineWindows,
                   cfg: EdsSettings) -> np.ndarray:
    """M[j, l]: net counts window j reads from one count of line l (a Gaussian at the detector's resolution)."""
    e = offset_kev + scale_kev * np.arange(n_channels)
    shapes = []
    for ln in win.lines:
        sigma = float(fwhm_kev(LINES[ln][0], cfg.fwhm_mn_ev)) / 2.3548
        g = np.exp(-0.5 * ((e - LINES[ln][0]) / sigma) ** 2)
        shapes.append(g / g.sum())
    return net_intensities(np.array(shapes), win)[0].T


def line_intensities(spectra: np.ndarray, offset_kev: float, scale_kev: float, cfg: EdsSettings):
    """Windows, and per spectrum each line's counts with overlaps between the windows unfolded: (net, σ, bg).

    The window nets are a linear mix of the lines (a neighbour's tail in a window or in its background channels);
    the overlap matrix of Gaussian line shapes undoes it.
    """
    spectra = np.atleast_2d(spectra)
    win = line_windows(offset_kev, scale_kev, spectra.shape[1], cfg)
    net, sigma, bg = net_intensities(spectra, win)
    inv = np.linalg.inv(overlap_matrix(offset_kev, scale_kev, spectra.shape[1], win, cfg))
    return win, net @ inv.T, np.sqrt(sigma**2 @ (inv**2).T), bg


@dataclass(frozen=True)
class Fractions:
    """Element fractions per object (rows sum to 1 over detected non-matrix elements, or are all 0)."""

    elements: tuple[str, ...]
    weight: np.ndarray  # (n, n_elements)
    atomic: np.ndarray
    weight_sigma: np.ndarray
    atomic_sigma: np.ndarray
    detected: np.ndarray  # bool (n, n_elements)


def element_fractions(net: np.ndarray, sigma: np.ndarray, bg: np.ndarray, win: LineWindows,
                      cfg: EdsSettings) -> Fractions:
    """Cliff–Lorimer fractions over the quantified non-matrix lines, with 1-σ from the counting statistics."""
    matrix = set(cfg.matrix_elements)
    use = [j for j, ln in enumerate(win.lines) if ln in cfg.quantified_lines() and element(ln) not in matrix]
    lines = [win.lines[j] for j in use]
    elements = tuple(element(ln) for ln in lines)
    k = np.array([cfg.k_factors.get(ln, 1.0) for ln in lines])
    mass = np.array([LINES[ln][1] for ln in lines])
    i, s, b = net[:, use], sigma[:, use], bg[:, use]
    detected = i > cfg.detection_sigma * np.sqrt(np.maximum(b, 1.0))
    out = {}
    for basis, scale in (("weight", k), ("atomic", k / mass)):
        w = np.where(detected, np.maximum(i, 0) * scale, 0.0)
        sw = np.where(detected, s * scale, 0.0)
        total = w.sum(axis=1, keepdims=True)
        safe = np.where(total > 0, total, 1.0)
        f = w / safe
        # ∂f_i/∂w_j = (δ_ij − f_i) / W: σ_f_i² = ((1 − f_i)² σ_i² + f_i² Σ_{j≠i} σ_j²) / W²
        var_all = (sw**2).sum(axis=1, keepdims=True)
        var = ((1 - f) ** 2 * sw**2 + f**2 * (var_all - sw**2)) / safe**2
        out[basis] = (f, np.sqrt(var))
    return Fractions(elements, out["weight"][0], out["atomic"][0], out["weight"][1], out["atomic"][1], detected)
