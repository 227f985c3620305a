"""Simulated polycrystals with known grain density: Voronoi grains from Poisson seeds, optionally log-normally
sized (power diagram) and with curved boundaries, drawn as an etched boundary map.

The truth is the realized seed density: cells (non-empty) whose seed lies in the frame, per frame area — the mean
grain area of the structure, known without counting grains on the boundary map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

E112_G_OFFSET = 2.954  # G = 3.321928 · log10(N_A per mm² at 1×) − 2.954


def g_from_na(grains_per_mm2: float) -> float:
    """ASTM E112 grain size number from grains per mm² (at 1×).

    >>> round(g_from_na(1.0), 3)  # 1 grain/mm²
    -2.954
    """
    return 3.321928 * np.log10(grains_per_mm2) - E112_G_OFFSET


def na_from_g(g: float) -> float:
    return 10 ** ((g + E112_G_OFFSET) / 3.321928)


@dataclass(frozen=True)
class Polycrystal:
    grains: np.ndarray  # (h, w) int32 grain id per pixel, from 1
    boundaries: np.ndarray  # (h, w) bool, the etched boundary map
    nm_per_px: float
    grains_per_mm2: float  # the structure's true density (seeds per area)
    mean_intercept_px: float  # the structure's true mean lineal intercept, 1 / P_L (P_L = 2 / π · L_A, Crofton)

    @property
    def g(self) -> float:
        """Planimetric truth."""
        return g_from_na(self.grains_per_mm2)

    @property
    def g_intercept(self) -> float:
        """Intercept truth: E112's intercept G of the true mean intercept (differs from ``g`` for 2-D Voronoi)."""
        return -6.643856 * np.log10(self.mean_intercept_px * self.nm_per_px * 1e-6) - 3.288


def simulate_polycrystal(shape: tuple[int, int] = (512, 512), grain_g: float = 8.0, nm_per_px: float = 200.0,
                         size_sigma: float = 0.0, curvature_px: float = 0.0, boundary_px: float = 2.0,
                         rng: np.random.Generator | int | None = None) -> Polycrystal:
    """Grains of ASTM number ``grain_g`` on a frame of ``shape`` at ``nm_per_px``.

    ``size_sigma``: log-normal spread of the grains' weights (0: Poisson–Voronoi); ``curvature_px``: amplitude of a
    smooth displacement that bends the boundaries; ``boundary_px``: etched boundary width.
    """
    rng = np.random.default_rng(rng)
    h, w = shape
    density_px = na_from_g(grain_g) * (nm_per_px * 1e-6) ** 2  # seeds per pixel
    margin = 4 / np.sqrt(density_px)
    area = (h + 2 * margin) * (w + 2 * margin)
    n = rng.poisson(density_px * area)
    seeds = rng.uniform([-margin, -margin], [h + margin, w + margin], size=(n, 2))
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    if curvature_px > 0:
        scale = 1 / np.sqrt(density_px)
        from copilot.sim.grain_frames import smooth_field

        for grid in (yy, xx):
            grid += curvature_px * smooth_field(shape, scale, rng)
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    if size_sigma > 0:  # power diagram: argmin |p − s|² − r², r² ∝ log-normal weights (mean cell area unchanged)
        weights = rng.lognormal(0, size_sigma, n)
        r2 = (weights - weights.mean()) / density_px / np.pi
        k = min(12, n)
        dist, idx = cKDTree(seeds).query(pts, k=k)
        labels = idx[np.arange(len(pts)), np.argmin(dist**2 - r2[idx], axis=1)]
    else:
        labels = cKDTree(seeds).query(pts)[1]
    grains = labels.reshape(shape).astype(np.int32) + 1
    edge = np.zeros(shape, bool)
    edge[:-1] |= grains[:-1] != grains[1:]
    edge[:, :-1] |= grains[:, :-1] != grains[:, 1:]
    boundaries = ndi.distance_transform_edt(~edge) < boundary_px / 2 if boundary_px > 1 else edge
    # truth: the frame's realized density, non-empty cells whose seed lies in the frame per frame area
    present = np.zeros(n, bool)
    present[labels] = True
    inside = (seeds[:, 0] >= -0.5) & (seeds[:, 0] < h - 0.5) & (seeds[:, 1] >= -0.5) & (seeds[:, 1] < w - 0.5)
    changes = (grains[1:] != grains[:-1]).sum() + (grains[:, 1:] != grains[:, :-1]).sum()
    p_l = 2 / np.pi * (changes * np.pi / 4 / grains.size)  # boundary length per area from 4-neighbour changes
    return Polycrystal(grains, boundaries, nm_per_px, float((present & inside).sum()) / (h * w * (nm_per_px * 1e-6) ** 2),
                       float(1 / p_l) if p_l else float("inf"))


def render_sem(pc: Polycrystal, rng: np.random.Generator | int | None = None, *, boundary_depth: float = 0.35,
               twins_per_grain: float = 0.3, scratches: int = 3, noise: float = 0.04, blur_px: float = 0.8,
               shading: float = 0.15) -> np.ndarray:
    """An etched SEM micrograph of ``pc`` (float32, 0–1): channelling contrast per grain, darker etched boundaries of
    varying depth, annealing twins (a band of other contrast across a grain), scratches, shading, noise and blur."""
    rng = np.random.default_rng(rng)
    h, w = pc.grains.shape
    n = int(pc.grains.max()) + 1
    img = rng.uniform(0.35, 0.85, n)[pc.grains].astype(np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    mean_d = np.sqrt(h * w / max(len(np.unique(pc.grains)), 1))
    for gid in rng.choice(np.arange(1, n), size=int(twins_per_grain * (n - 1)), replace=False):
        inside = pc.grains == gid
        ys, xs = np.nonzero(inside)
        if len(ys) < 20:
            continue
        a = rng.uniform(0, np.pi)
        c = rng.choice(len(ys))
        across = np.abs((yy[inside] - ys[c]) * np.cos(a) - (xx[inside] - xs[c]) * np.sin(a))
        band = across < rng.uniform(0.08, 0.2) * mean_d
        vals = img[inside]
        vals[band] = rng.uniform(0.35, 0.85)
        img[inside] = vals
    depth = boundary_depth * rng.uniform(0.6, 1.4, n)  # etch depth varies along the structure
    dist = ndi.distance_transform_edt(~pc.boundaries)
    img = img - depth[pc.grains] * np.exp(-((dist / 1.2) ** 2))
    for _ in range(scratches):
        a, off = rng.uniform(0, np.pi), rng.uniform(0, max(h, w))
        d = np.abs(yy * np.cos(a) - xx * np.sin(a) - off + max(h, w) / 2)
        img = img - 0.15 * np.exp(-((d / rng.uniform(0.7, 2.0)) ** 2))
    img = img * (1 + shading * (yy / h - 0.5) + shading * (xx / w - 0.5))
    img = ndi.gaussian_filter(img, blur_px) + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)
