"""Two-phase structures of known widths, for testing and benchmarking the morphology measurements.

``lamellae``: parallel (optionally wavy) lamellae of phase 1 with known thickness and spacing, like pearlite in one
colony. ``ligament_network``: straight ligaments of known width crossing at random, like a nanoporous metal seen in
section (phase 1 = ligament, phase 0 = pore).
"""

from __future__ import annotations

import numpy as np


def lamellae(shape: tuple[int, int], thickness_px: float, spacing_px: float, angle_deg: float = 0.0,
             wave_amplitude_px: float = 0.0, wave_period_px: float = 200.0) -> np.ndarray:
    """uint8 labels: 1 in lamellae ``thickness_px`` thick every ``spacing_px`` (measured perpendicular to them).

    >>> lam = lamellae((40, 40), 4, 10); float(lam.mean())
    0.4
    """
    if not 0 < thickness_px < spacing_px:
        raise ValueError("need 0 < thickness_px < spacing_px")
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(float)
    a = np.deg2rad(angle_deg)
    across = yy * np.cos(a) - xx * np.sin(a)  # perpendicular to the lamellae
    along = yy * np.sin(a) + xx * np.cos(a)
    across = across + wave_amplitude_px * np.sin(2 * np.pi * along / wave_period_px)
    return (np.mod(across, spacing_px) < thickness_px).astype(np.uint8)


def ligament_network(shape: tuple[int, int], width_px: float, n_ligaments: int,
                     rng: np.random.Generator | int | None = None) -> np.ndarray:
    """uint8 labels: 1 on ``n_ligaments`` straight bands ``width_px`` wide at random positions and orientations."""
    rng = np.random.default_rng(rng)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(float)
    out = np.zeros(shape, bool)
    for _ in range(n_ligaments):
        a = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        out |= np.abs((yy - cy) * np.cos(a) - (xx - cx) * np.sin(a)) < width_px / 2
    return out.astype(np.uint8)
