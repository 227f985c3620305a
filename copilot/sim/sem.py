"""Simulated SEM frames of microstructures with exact class maps: two-phase (lath-like second phase in a polygonal
grain matrix, in the spirit of seed 000's bainite-in-ferrite steels) and porous (nanoporous-gold-like ligaments).

Classes (``CLASS_NAMES``): **0 matrix** (the grain matrix, or the metal ligaments of a porous structure),
**1 second-phase** (laths in transformed grains + dispersed granular particles), **2 pore** (holes: round pores in
a two-phase structure, the pore network of a porous one).

Geometry (all in nm; ``nm_per_px`` only decides the grid, pixel (i, j) samples the point ((j + ½), (i + ½)) px):

* **two-phase**: Voronoi grains (``grain_nm``); a fraction of the grains (``lath_grain_fraction``) is transformed
  into a packet of parallel laths (width ``lath_width_nm``, period ``lath_spacing_nm``, one orientation per grain,
  slightly wavy, broken into finite lengths of about ``lath_length_nm``); granular second-phase particles, mostly
  on grain boundaries (``particle_fraction``); optionally round pores (``pore_fraction``).
* **porous**: a band-limited Gaussian random field (difference of Gaussians at the ``ligament_nm`` scale)
  thresholded at its ``porosity`` quantile: bicontinuous ligaments (matrix) and pores.

Surface after preparation (a height map, nm): per-grain etch-rate scatter (``grain_etch_nm``), grain-boundary grooves
(``etch_depth_nm`` deep, ``groove_width_nm`` wide), the second phase standing proud of the etched matrix
(``relief_nm`` > 0; recessed if < 0) with a fine texture (``phase_roughness_nm``: carbides, substructure), pores
``pore_depth_nm`` deep, ligaments rounded. The random draws make SE images of etched two-phase structures the way a
metallographer sees them: the second phase brighter than the matrix (``se_second`` > ``se_matrix``) and in relief.

Imaging (``detector``):

* ``"se"`` (Everhart-Thornley secondary electrons): topography contrast, i.e. a yield per class, edge brightening
  with the local slope (``edge_gain``) and a one-sided shading from the detector's position (``shadow_gain``);
* ``"bse"`` (backscattered electrons): atomic-number contrast per class, channelling contrast per grain
  (``channeling``), weak topography.

Then the scan (copilot.sim.stem.acquire: beam blur, line jitter, scan wobble, drift shear, charging streaks,
scan-line offsets, shot + read noise, 16-bit). Masks follow every geometric distortion, so truth stays exact.

>>> f = simulate_sem(SemParams(size_px=128, nm_per_px=2.0), 0)
>>> f.image.dtype, f.instances.dtype, f.truth["task"], f.truth["class_names"]
(dtype('uint16'), dtype('int32'), 'phases', ['matrix', 'second-phase', 'pore'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from copilot.sim.instrument import ScanInstrument
from copilot.sim.stem import SimFrame, acquire, pick

CLASS_NAMES = ("matrix", "second-phase", "pore")
STRUCTURES = ("two-phase", "porous")
DETECTORS = ("se", "bse")


@dataclass(frozen=True)
class SemParams(ScanInstrument):
    """Parameters of one simulated SEM acquisition. Lengths in nm. The instrument fields are ScanInstrument's, so
    the same ``acquire`` runs the scan."""

    size_px: int | tuple[int, int] = 1024
    nm_per_px: float = 1.0
    structure: str = "two-phase"  # "two-phase" | "porous"
    # two-phase microstructure
    grain_nm: float = 250.0  # mean grain size (Voronoi cells)
    lath_grain_fraction: float = 0.35  # fraction of grains transformed into lath packets
    lath_width_nm: float = 25.0
    lath_spacing_nm: float = 60.0  # lath period across the packet
    lath_length_nm: float = 250.0  # correlation length of the lath breaks
    lath_keep: float = 0.75  # fraction of the lath length that is present
    lath_waviness_nm: float = 6.0
    particle_fraction: float = 0.02  # granular second phase (area fraction, before overlaps)
    particle_nm: float = 25.0  # median diameter
    pore_fraction: float = 0.0  # round pores in a two-phase structure (area fraction, before overlaps)
    pore_nm: float = 30.0
    # porous structure
    ligament_nm: float = 30.0  # characteristic ligament / pore width
    porosity: float = 0.45  # pore area fraction (the threshold quantile)
    # surface preparation
    etch_depth_nm: float = 20.0  # grain-boundary groove depth
    groove_width_nm: float = 10.0
    relief_nm: float = 15.0  # second phase above (+) or below (-) the matrix
    phase_roughness_nm: float = 3.0  # fine height texture of the second phase (carbides, substructure)
    grain_etch_nm: float = 4.0  # per-grain height scatter (orientation-dependent etch rate)
    pore_depth_nm: float = 150.0
    # detector
    detector: str = "se"  # "se" | "bse"
    se_matrix: float = 0.35
    se_second: float = 0.42
    se_pore: float = 0.06
    edge_gain: float = 0.5  # SE edge brightening at unit slope
    shadow_gain: float = 0.15  # one-sided SE shading (detector position)
    bse_matrix: float = 0.45
    bse_second: float = 0.65
    bse_pore: float = 0.08
    channeling: float = 0.04  # BSE per-grain orientation contrast (std)
    # instrument: an SEM's probe and detector (the rest as in ScanInstrument)
    probe_blur_nm: float = 1.5  # Gaussian sigma of the beam
    dose: float = 40.0
    line_jitter_px: float = 0.3
    detector_offset: float = 500.0


def random_sem_params(rng: np.random.Generator, size_px: int | tuple[int, int] = 1024,
                      nm_per_px_range: tuple[float, float] = (0.5, 2.0), structure: str = "any",
                      detector: str = "se", **overrides: Any) -> SemParams:
    """Draw a varied but plausible SEM acquisition of a two-phase or porous microstructure (``structure="any"``:
    equal odds). Overrides are applied last.

    >>> random_sem_params(np.random.default_rng(0), 64, structure="porous").structure
    'porous'
    """
    structure = pick(rng, structure, STRUCTURES, "structure")
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {DETECTORS}")
    lu = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # noqa: E731
    lo, hi = nm_per_px_range
    width = lu(12.0, 40.0)
    se_matrix = float(rng.uniform(0.25, 0.45))
    bse_matrix = float(rng.uniform(0.35, 0.6))
    p = SemParams(
        size_px=size_px,
        nm_per_px=lu(lo, hi),
        structure=structure,
        grain_nm=lu(120.0, 400.0),
        lath_grain_fraction=float(rng.uniform(0.1, 0.8)),
        lath_width_nm=width,
        lath_spacing_nm=width * float(rng.uniform(1.6, 3.0)),
        lath_length_nm=lu(80.0, 400.0),
        lath_keep=float(rng.uniform(0.5, 0.95)),
        lath_waviness_nm=float(rng.uniform(0.0, 0.4)) * width,
        particle_fraction=float(rng.uniform(0.0, 0.08)),
        particle_nm=lu(10.0, 40.0),
        pore_fraction=float(rng.uniform(0.002, 0.04)) if rng.random() < 0.3 else 0.0,
        pore_nm=lu(10.0, 50.0),
        ligament_nm=lu(15.0, 60.0),
        porosity=float(rng.uniform(0.3, 0.6)),
        etch_depth_nm=float(rng.uniform(5.0, 40.0)),
        groove_width_nm=float(rng.uniform(5.0, 20.0)),
        relief_nm=float(rng.uniform(5.0, 30.0)),
        phase_roughness_nm=float(rng.uniform(1.0, 6.0)),
        grain_etch_nm=float(rng.uniform(0.0, 8.0)),
        pore_depth_nm=float(rng.uniform(80.0, 300.0)),
        detector=detector,
        se_matrix=se_matrix,
        se_second=se_matrix + float(rng.uniform(0.04, 0.2)),
        se_pore=float(rng.uniform(0.02, 0.12)),
        edge_gain=float(rng.uniform(0.2, 0.8)),
        shadow_gain=float(rng.uniform(0.0, 0.3)),
        bse_matrix=bse_matrix,
        bse_second=bse_matrix + float(rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.3)),
        bse_pore=float(rng.uniform(0.02, 0.15)),
        channeling=float(rng.uniform(0.0, 0.08)),
        probe_blur_nm=float(rng.uniform(0.5, 3.0)),
        dose=lu(6.0, 200.0),
        read_noise=float(rng.uniform(0.0, 2.0)),
        scanline_noise=float(rng.uniform(0.0, 0.02)),
        line_jitter_px=float(rng.uniform(0.0, 0.5)),
        drift_shear=float(rng.normal(0.0, 0.01)),
        detector_offset=float(rng.uniform(0, 2000)),
        detector_full_scale=float(rng.uniform(8000, 40000)),
    )
    return replace(p, **overrides) if overrides else p


# ---------------------------------------------------------------------------------------------------------------
# geometry


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std smooth Gaussian noise with correlation length ``sigma_px`` (made on a coarse grid when that is
    cheaper, then interpolated)."""
    H, W = shape
    step = max(1, int(sigma_px / 3))
    h, w = H // step + 4, W // step + 4
    n = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), max(sigma_px / step, 0.5), mode="wrap")
    if step > 1:
        yy = (np.arange(H) + 0.5) / step + 1.5
        xx = (np.arange(W) + 0.5) / step + 1.5
        n = ndi.map_coordinates(n, np.meshgrid(yy, xx, indexing="ij"), order=1, mode="nearest").astype(np.float32)
    else:
        n = n[:H, :W]
    return n / max(float(n.std()), 1e-6)


def _centres_nm(shape: tuple[int, int], nm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    H, W = shape
    y = ((np.arange(H, dtype=np.float32) + 0.5) * nm_per_px)[:, None]
    x = ((np.arange(W, dtype=np.float32) + 0.5) * nm_per_px)[None, :]
    return y, x


def grains(shape: tuple[int, int], nm_per_px: float, grain_nm: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """Voronoi grains: (grain id per pixel int32, distance to the nearest grain boundary in nm, number of grains).

    Seeds are a Poisson process over the frame plus a margin, so grains are cut by the frame edge like real ones."""
    H, W = shape
    Hn, Wn = H * nm_per_px, W * nm_per_px
    m = grain_nm
    area = (Hn + 2 * m) * (Wn + 2 * m)
    n = max(int(rng.poisson(area / (grain_nm ** 2))), 2)
    seeds = np.column_stack([rng.uniform(-m, Hn + m, n), rng.uniform(-m, Wn + m, n)])
    y, x = _centres_nm(shape, nm_per_px)
    # brute force over the (few dozen) seeds, keeping the nearest two: faster than a k-d tree query per pixel
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    i1 = np.zeros(shape, np.int32)
    i2 = np.zeros(shape, np.int32)
    sy, sx = seeds[:, 0].astype(np.float32), seeds[:, 1].astype(np.float32)
    for k in range(n):
        d = (y - sy[k]) ** 2 + (x - sx[k]) ** 2
        closer = d < d1
        second = ~closer & (d < d2)
        d2 = np.where(closer, d1, np.where(second, d, d2))
        i2 = np.where(closer, i1, np.where(second, k, i2))
        d1 = np.where(closer, d, d1)
        i1 = np.where(closer, k, i1)
    sep = np.maximum(np.hypot(sy[i1] - sy[i2], sx[i1] - sx[i2]), 1e-6)
    dist_b = (d2 - d1) / (2 * sep)  # distance to the bisector of the two nearest seeds
    return i1, dist_b.astype(np.float32), n


def _discs(shape: tuple[int, int], nm_per_px: float, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean union of discs (nm) rasterized at pixel centres."""
    H, W = shape
    out = np.zeros(shape, bool)
    for (cy, cx), r in zip(centres, radii):
        y0, y1 = max(int((cy - r) / nm_per_px - 1), 0), min(int((cy + r) / nm_per_px + 2), H)
        x0, x1 = max(int((cx - r) / nm_per_px - 1), 0), min(int((cx + r) / nm_per_px + 2), W)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1) + 0.5)[:, None] * nm_per_px - cy
        xx = (np.arange(x0, x1) + 0.5)[None, :] * nm_per_px - cx
        out[y0:y1, x0:x1] |= yy ** 2 + xx ** 2 < r ** 2
    return out


def _random_discs(shape, nm_per_px, fraction, d50_nm, rng, prefer=None):
    """Discs with log-normal diameters (sigma 0.3) covering about ``fraction`` of the frame; centres drawn from the
    pixels where ``prefer`` is True with 70 % odds (e.g. near grain boundaries)."""
    H, W = shape
    if fraction <= 0:
        return np.zeros(shape, bool)
    mean_area = np.pi * (d50_nm / 2) ** 2 * np.exp(2 * 0.3 ** 2)
    n = int(rng.poisson(fraction * H * W * nm_per_px ** 2 / mean_area))
    if n == 0:
        return np.zeros(shape, bool)
    cand = np.flatnonzero(prefer) if prefer is not None else np.zeros(0, np.intp)
    centres = np.empty((n, 2))
    for k in range(n):
        if len(cand) and rng.random() < 0.7:
            i = int(cand[rng.integers(len(cand))])
            centres[k] = ((i // W + rng.uniform()) * nm_per_px, (i % W + rng.uniform()) * nm_per_px)
        else:
            centres[k] = (rng.uniform(0, H * nm_per_px), rng.uniform(0, W * nm_per_px))
    radii = d50_nm / 2 * np.exp(0.3 * rng.standard_normal(n))
    return _discs(shape, nm_per_px, centres, radii)


def two_phase_structure(p: SemParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Class map (0/1/2) and surface height (nm) of a two-phase microstructure, plus per-pixel grain ids in the
    returned info (``grain``) for orientation (channelling) contrast."""
    shape, nmpp = p.shape, p.nm_per_px
    gid, dist_b, n_grains = grains(shape, nmpp, p.grain_nm, rng)
    y, x = _centres_nm(shape, nmpp)
    packet = rng.random(n_grains) < p.lath_grain_fraction
    theta = rng.uniform(0, np.pi, n_grains).astype(np.float32)
    phase = rng.uniform(0, 1, n_grains).astype(np.float32)
    in_packet = packet[gid]
    cls = np.zeros(shape, np.int32)
    if in_packet.any():
        th = theta[gid]
        u = x * np.cos(th) + y * np.sin(th)
        if p.lath_waviness_nm > 0:
            u = u + p.lath_waviness_nm * _smooth_noise(shape, p.lath_spacing_nm * 1.5 / nmpp, rng)
        ph = u / p.lath_spacing_nm + phase[gid]
        stripe = np.cos(2 * np.pi * ph) > np.cos(np.pi * min(p.lath_width_nm / p.lath_spacing_nm, 0.95))
        gate_field = _smooth_noise(shape, p.lath_length_nm / 2.5 / nmpp, rng)
        gate = gate_field > np.quantile(gate_field, 1.0 - p.lath_keep)
        cls[in_packet & stripe & gate] = 1
    near_boundary = dist_b < max(p.particle_nm, 2 * nmpp)
    cls[_random_discs(shape, nmpp, p.particle_fraction, p.particle_nm, rng, prefer=near_boundary)] = 1
    pores = _random_discs(shape, nmpp, p.pore_fraction, p.pore_nm, rng)
    cls[pores] = 2
    grain_h = (p.grain_etch_nm * rng.standard_normal(n_grains)).astype(np.float32)
    h = grain_h[gid] + np.float32(p.relief_nm) * (cls == 1)
    if p.phase_roughness_nm > 0 and np.any(cls == 1):
        h += (np.float32(p.phase_roughness_nm) * _smooth_noise(shape, max(3.0 / nmpp, 0.5), rng)) * (cls == 1)
    if p.etch_depth_nm > 0 and p.groove_width_nm > 0:
        h = h - np.float32(p.etch_depth_nm) * np.exp(-(dist_b / np.float32(p.groove_width_nm)) ** 2)
    h[cls == 2] = -p.pore_depth_nm
    return cls, h.astype(np.float32), {"grain": gid, "n_grains": n_grains,
                                        "lath_packets": int(packet.sum())}


def porous_structure(p: SemParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Class map (0 ligament / 2 pore) and height (nm) of a nanoporous-gold-like bicontinuous structure: a band-
    limited Gaussian random field thresholded at its ``porosity`` quantile; ligaments rounded on top."""
    shape, nmpp = p.shape, p.nm_per_px
    s = p.ligament_nm / 2.5 / nmpp
    f = _smooth_noise(shape, s, rng) - 0.6 * _smooth_noise(shape, 3 * s, rng)
    f /= max(float(f.std()), 1e-6)
    q = float(np.quantile(f, p.porosity))
    cls = np.where(f < q, 2, 0).astype(np.int32)
    h = np.where(cls == 0, 0.5 * p.ligament_nm * np.tanh(2.0 * (f - q)), -p.pore_depth_nm).astype(np.float32)
    return cls, h, {"grain": None}


def render_sem(cls: np.ndarray, h: np.ndarray, info: dict[str, Any], p: SemParams,
               rng: np.random.Generator) -> np.ndarray:
    """Detector signal (float32, about 0-1) from the class map and the surface height."""
    nmpp = p.nm_per_px
    hs = ndi.gaussian_filter(h, max(1.5 / nmpp, 0.5), truncate=3.0)
    gy, gx = np.gradient(hs, nmpp)
    slope = np.tanh(np.hypot(gx, gy)).astype(np.float32)
    if p.detector == "se":
        levels = np.array([p.se_matrix, p.se_second, p.se_pore], np.float32)
        sig = levels[cls] + np.float32(p.edge_gain) * slope + np.float32(p.shadow_gain) * np.tanh(gx).astype(
            np.float32)
    elif p.detector == "bse":
        levels = np.array([p.bse_matrix, p.bse_second, p.bse_pore], np.float32)
        sig = levels[cls] + np.float32(0.05) * slope
        g = info.get("grain")
        if g is not None and p.channeling > 0:
            sig = sig + (p.channeling * rng.standard_normal(int(g.max()) + 1)).astype(np.float32)[g] * (cls != 2)
    else:
        raise ValueError(f"unknown detector {p.detector!r}")
    return np.clip(sig, 0.0, None).astype(np.float32)


def _shear(img: np.ndarray, cls: np.ndarray, shear: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear drift during the scan: row i moves by round(shear · i) px along x (image and classes alike)."""
    H, W = img.shape
    shifts = np.rint(shear * np.arange(H)).astype(np.intp)
    if not np.any(shifts):
        return img, cls
    cols = np.clip(np.arange(W)[None, :] - shifts[:, None], 0, W - 1)
    return np.take_along_axis(img, cols, axis=1), np.take_along_axis(cls, cols, axis=1)


def simulate_sem(params: SemParams, rng: np.random.Generator | int | None = None) -> SimFrame:
    """Simulate one SEM frame. ``instances`` of the returned SimFrame is the **class map** (int32, 0 matrix /
    1 second-phase / 2 pore; also ``frame.class_map``); ``truth`` holds ``task`` ("phases"), ``class_names``,
    ``fractions`` (area fraction per class of the final map), ``structure``, ``detector``, ``params``.

    >>> f = simulate_sem(SemParams(size_px=96, nm_per_px=2.0, structure="porous", porosity=0.4), 1)
    >>> abs(f.truth["fractions"][2] - 0.4) < 0.02, f.truth["fractions"][1]
    (True, 0.0)
    """
    rng = np.random.default_rng(rng)
    if params.structure == "two-phase":
        cls, h, info = two_phase_structure(params, rng)
    elif params.structure == "porous":
        cls, h, info = porous_structure(params, rng)
    else:
        raise ValueError(f"unknown structure {params.structure!r}")
    signal = render_sem(cls, h, info, params, rng)
    signal, cls = _shear(signal, cls, params.drift_shear)
    image, cls = acquire(signal, cls, params, rng)  # type: ignore[arg-type] - duck-typed instrument fields
    fractions = np.bincount(cls.ravel(), minlength=len(CLASS_NAMES))[:len(CLASS_NAMES)] / cls.size
    truth = {
        "task": "phases",
        "class_names": list(CLASS_NAMES),
        "fractions": [float(v) for v in fractions],
        "structure": params.structure,
        "detector": params.detector,
        "params": asdict(params),
    }
    for k in ("n_grains", "lath_packets"):
        if k in info:
            truth[k] = info[k]
    return SimFrame(image=image, instances=cls.astype(np.int32), nm_per_px=params.nm_per_px, truth=truth)
