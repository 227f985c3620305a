"""Simulated EDS spectrum images of inclusions in a steel matrix, with known compositions and Poisson counts.

Every pixel's expected spectrum is a Kramers continuum (with a low-energy detector-window cut-off) plus Gaussian
lines at the detector's resolution. Line intensities follow the Cliff–Lorimer model the analysis inverts: I ∝ C / k
(weight fraction C, k-factor k). An inclusion pixel also carries ``matrix_mix`` of the Fe matrix (the interaction
volume is wider than a small inclusion). Counts are Poisson: each pixel draws its number of X-rays, and each X-ray its
channel from the pixel's spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from copilot.eds.cube import EdsCube
from copilot.eds.lines import LINES, element, fwhm_kev
from copilot.eds.settings import EdsSettings

# weight fractions of each class's typical inclusion (matrix excluded)
TEMPLATES: dict[str, dict[str, float]] = {
    "oxide": {"Al": 0.53, "O": 0.47},  # alumina
    "sulfide": {"Mn": 0.63, "S": 0.37},  # MnS
    "oxysulfide": {"Ca": 0.30, "S": 0.20, "Al": 0.27, "O": 0.23},  # calcium aluminate with CaS
    "nitride": {"Ti": 0.77, "N": 0.23},  # TiN
    "carbide": {"Nb": 0.885, "C": 0.115},  # NbC
    "complex": {"Ti": 0.45, "N": 0.12, "Al": 0.23, "O": 0.20},  # TiN on an alumina core
}
MATRIX = {"Fe": 1.0}
K_FACTORS = {"C_Ka": 4.0, "N_Ka": 3.5, "O_Ka": 3.0, "Mg_Ka": 1.1, "Al_Ka": 1.05, "Si_Ka": 1.0, "S_Ka": 1.05,
             "Ca_Ka": 1.0, "Ti_Ka": 1.0, "Cr_Ka": 1.0, "Mn_Ka": 1.0, "Fe_La": 3.0, "Fe_Ka": 1.0, "Nb_La": 1.8}


@dataclass(frozen=True)
class EdsTruth:
    labels: np.ndarray  # (h, w) object ids, 0 = matrix
    classes: dict[int, str]
    weight: dict[int, dict[str, float]]  # per object, non-matrix weight fractions (sum 1)


def spectrum(weights: dict[str, float], energies: np.ndarray, cfg: EdsSettings, peak_share: float = 0.6,
             beam_kev: float = 15.0) -> np.ndarray:
    """Expected spectrum of one composition (weight fractions), normalized to 1 count in total."""
    e = np.clip(energies, 1e-3, None)
    cont = np.clip(beam_kev - e, 0, None) / e * (1 - np.exp(-((e / 0.9) ** 3)))
    cont[energies <= 0.05] = 0
    cont /= cont.sum()
    peaks = np.zeros_like(e)
    for ln in cfg.lines:
        c = weights.get(element(ln), 0.0)
        if c <= 0:
            continue
        sigma = fwhm_kev(LINES[ln][0], cfg.fwhm_mn_ev) / 2.3548
        g = np.exp(-0.5 * ((energies - LINES[ln][0]) / sigma) ** 2)
        peaks += c / cfg.k_factors.get(ln, 1.0) * g / g.sum()
    return (1 - peak_share) * cont + peak_share * peaks / max(peaks.sum(), 1e-12)


def simulate_eds(shape: tuple[int, int] = (128, 128), n_channels: int = 2048, counts_per_px: float = 200.0,
                 n_inclusions: int = 30, radius_px: tuple[float, float] = (2.5, 7.0), nm_per_px: float = 100.0,
                 jitter: float = 0.1, matrix_mix: tuple[float, float] = (0.1, 0.4), cfg: EdsSettings | None = None,
                 rng: np.random.Generator | int | None = None) -> tuple[EdsCube, EdsTruth]:
    """A cube (uint16 counts, Bruker-like axis: 10 eV/channel from −0.47 keV) and its truth."""
    cfg = cfg or EdsSettings(k_factors=K_FACTORS)
    rng = np.random.default_rng(rng)
    h, w = shape
    offset, scale = -0.47, 0.01
    energies = offset + scale * np.arange(n_channels)
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros(shape, np.int32)
    classes, weights, mixes = {}, {}, {}
    names = list(TEMPLATES)
    for k in range(1, n_inclusions + 1):
        r = rng.uniform(*radius_px)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (labels == 0)
        if disc.sum() < cfg.min_area_px:
            continue
        labels[disc] = k
        cls = names[rng.integers(len(names))]
        comp = {el: v * rng.lognormal(0, jitter) for el, v in TEMPLATES[cls].items()}
        total = sum(comp.values())
        classes[k], weights[k] = cls, {el: v / total for el, v in comp.items()}
        mixes[k] = rng.uniform(*matrix_mix)
    groups = {0: spectrum(MATRIX, energies, cfg)}
    for k, comp in weights.items():
        mixed = {el: (1 - mixes[k]) * v for el, v in comp.items()} | {"Fe": mixes[k]}
        groups[k] = spectrum(mixed, energies, cfg)
    counts = np.zeros((h * w, n_channels), np.uint16)
    flat_counts = counts.reshape(-1)
    flat = labels.ravel()
    n_events = rng.poisson(counts_per_px, size=h * w)
    for k, spec in groups.items():
        pix = np.flatnonzero(flat == k)
        cdf = np.cumsum(spec)
        cdf /= cdf[-1]
        pixel = np.repeat(pix, n_events[pix])
        channel = np.minimum(np.searchsorted(cdf, rng.random(len(pixel))), n_channels - 1)
        where, n = np.unique(pixel * n_channels + channel, return_counts=True)
        flat_counts[where] += n.astype(np.uint16)
    cube = EdsCube(counts.reshape(h, w, n_channels), offset, scale, nm_per_px, source="simulated")
    return cube, EdsTruth(labels, classes, weights)
