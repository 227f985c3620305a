"""Frames of objects of known size, as a microscopist checks an instrument against a standard: discs, ellipses
and touching pairs at exact positions, imaged by the HAADF simulator (shot noise, mild probe blur).

>>> sim, parts = standard_frame([(5.0, 1.0, 0.0), (8.0, 1.5, 0.3)], nm_per_px=0.5)
>>> sim.image.shape, len(parts)
((64, 128), 2)
"""

from __future__ import annotations

import numpy as np

from copilot.sim.stem import Particle, SimFrame, SimParams, simulate_frame

CELL_NM = 32.0
CLEAN = dict(modality="haadf", dose=60.0, probe_blur_nm=0.1, line_jitter_px=0.0, scanline_noise=0.0,
             drift_shear=0.0, background=0.12, support_contrast=0.03, particle_signal=1.0, thickness_scale_nm=3.0)


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def _frame(parts: list[Particle], rows: int, cols: int, nm_per_px: float, seed: int, cell_nm: float,
           **params) -> SimFrame:
    shape = (int(round(rows * cell_nm / nm_per_px)), int(round(cols * cell_nm / nm_per_px)))
    p = SimParams(size_px=shape, nm_per_px=nm_per_px, **{**CLEAN, **params})
    return simulate_frame(p, seed, particles=parts)


def standard_frame(shapes: list[tuple[float, float, float]], nm_per_px: float, seed: int = 0,
                   cell_nm: float = CELL_NM, **params) -> tuple[SimFrame, list[Particle]]:
    """Each (ECD nm, aspect ratio, angle rad) ellipse in its own ``cell_nm`` cell (centre jittered by up to 1 nm, so
    edges fall anywhere on the pixel grid); returns the frame and the particles (truth geometry in nm)."""
    rows, cols = _grid(len(shapes))
    parts = []
    for k, (ecd, aspect, angle) in enumerate(shapes):
        r, c = divmod(k, cols)
        a, b = ecd / 2 * np.sqrt(aspect), ecd / 2 / np.sqrt(aspect)
        jitter = (np.random.default_rng(seed + k).random(2) - 0.5) * 2.0
        parts.append(Particle((c + 0.5) * cell_nm + jitter[0], (r + 0.5) * cell_nm + jitter[1], a, b, angle))
    return _frame(parts, rows, cols, nm_per_px, seed, cell_nm, **params), parts


def neck_distance(r1: float, r2: float, neck: float) -> float:
    """Centre distance of two overlapping discs whose contact (neck) is ``neck`` × the smaller diameter wide."""
    h = neck * min(r1, r2)  # half the neck width
    return float(np.sqrt(max(r1 * r1 - h * h, 0.0)) + np.sqrt(max(r2 * r2 - h * h, 0.0)))


def touching_pairs(pairs: list[tuple[float, float, float]], nm_per_px: float, seed: int = 0,
                   cell_nm: float = 40.0, **params) -> tuple[SimFrame, list[tuple[Particle, Particle]]]:
    """Each (ECD1 nm, ECD2 nm, neck fraction) pair of discs in its own cell, overlapping so that the neck is that
    fraction of the smaller diameter (0: just touching), at a random orientation."""
    rows, cols = _grid(len(pairs))
    rng = np.random.default_rng(seed)
    parts, out = [], []
    for k, (d1, d2, neck) in enumerate(pairs):
        r, c = divmod(k, cols)
        r1, r2 = d1 / 2, d2 / 2
        dist = neck_distance(r1, r2, neck)
        phi = rng.uniform(0, np.pi)
        cx, cy = (c + 0.5) * cell_nm, (r + 0.5) * cell_nm
        ux, uy = np.cos(phi), np.sin(phi)
        p1 = Particle(cx - ux * dist * r2 / (r1 + r2), cy - uy * dist * r2 / (r1 + r2), r1, r1, 0.0)
        p2 = Particle(p1.cx_nm + ux * dist, p1.cy_nm + uy * dist, r2, r2, 0.0, pair=len(parts))
        parts += [p1, p2]
        out.append((p1, p2))
    return _frame(parts, rows, cols, nm_per_px, seed, cell_nm, **params), out


def _centroids_nm(rows, nm_per_px: float) -> np.ndarray:
    return np.array([[(q.centroid_x_px + 0.5) * nm_per_px, (q.centroid_y_px + 0.5) * nm_per_px] for q in rows])


def nearest_rows(rows, centres_nm: list[tuple[float, float]], nm_per_px: float, within_nm) -> list:
    """For each centre (x, y in nm), the measured particle row (``centroid_x_px``/``centroid_y_px`` in frame
    pixels) whose centroid is nearest, if within ``within_nm`` (one radius, or one per centre)."""
    if not rows:
        return [None] * len(centres_nm)
    xy = _centroids_nm(rows, nm_per_px)
    radii = np.broadcast_to(np.asarray(within_nm, float), (len(centres_nm),))
    out = []
    for (cx, cy), r in zip(centres_nm, radii):
        d = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy)
        i = int(np.argmin(d))
        out.append(rows[i] if d[i] <= r else None)
    return out


def rows_within(rows, centre_nm: tuple[float, float], nm_per_px: float, radius_nm: float) -> int:
    """How many measured particles have their centroid within ``radius_nm`` of a centre (2+: the object was split)."""
    if not rows:
        return 0
    xy = _centroids_nm(rows, nm_per_px)
    return int(np.sum(np.hypot(xy[:, 0] - centre_nm[0], xy[:, 1] - centre_nm[1]) <= radius_nm))
