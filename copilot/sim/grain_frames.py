"""Simulated SEM micrographs of etched polycrystals, with exact grain maps and known ASTM E112 G: the training and
held-out data of the ``grains`` task (``engines/grains-sem``).

A frame is a polycrystal (``copilot.sim.polycrystal``: Poisson–Voronoi or log-normally sized power-diagram grains,
curved boundaries) rendered as the specimen's signal, then acquired by the shared instrument model
(``copilot.sim.stem.acquire``: beam blur, scan jitter/drift, charging, shot and read noise, 16-bit):

* per-grain channelling contrast (weak with the SE detector, strong with BSE), annealing twins (bands of another
  level across a grain), scratches, shading;
* etched boundaries: dark grooves whose depth varies per grain and along the boundary (smooth random field: a
  shallow etch leaves gaps), of ``boundary_nm`` width, with an SE bright rim of random strength.

``instances`` of the returned ``SimFrame`` is the grain map (int32 ids from 1, moved with the scan lines);
``truth``: ``task`` ("grains"), ``g`` (planimetric truth: the realized seed density), ``g_intercept`` (E112's
intercept G of the true mean intercept), ``grains_per_mm2``, ``mean_intercept_um``, ``params``.

Domain-shift groups (``GRAIN_SHIFTS``): ``in-domain``, ``dose``, ``defocus``, ``magnification``, ``drift``,
``charging``, ``detector`` (BSE: strong channelling, hardly etched boundaries) and ``etching`` (shallow etch with
gaps, or over-etched with wide grooves and pits).

>>> f = simulate_grains(random_grain_params(np.random.default_rng(0), 96), 0)
>>> f.image.dtype.name, f.truth["task"], int(f.instances.min()) >= 1
('uint16', 'grains', True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from copilot.sim.instrument import ScanInstrument
from copilot.sim.polycrystal import na_from_g, simulate_polycrystal
from copilot.sim.stem import SimFrame, acquire

WORKING_NM_PER_PX = 250.0  # the grains-sem model's working scale
NM_PER_PX_RANGE = (125.0, 500.0)
G_RANGE = (9.0, 13.0)
MIN_GRAIN_PX, MAX_GRAIN_PX = 12.0, 64.0  # mean grain diameter (frame px): E112 wants 50+ grains in a field
DETECTORS = ("se", "bse")


@dataclass(frozen=True)
class GrainSemParams(ScanInstrument):
    size_px: int | tuple[int, int] = 512
    nm_per_px: float = 250.0
    grain_g: float = 11.0
    size_sigma: float = 0.3  # log-normal spread of grain weights (0: Poisson–Voronoi)
    curvature: float = 0.05  # boundary bending, fraction of the mean grain diameter
    boundary_nm: float = 500.0  # etched groove width
    etch_depth: float = 0.35  # groove darkening (signal units)
    etch_variation: float = 0.4  # relative variation of the depth per grain and along the boundaries
    rim: float = 0.1  # SE bright rim beside the groove
    grain_contrast: float = 0.08  # std of the per-grain level (channelling)
    base_level: float = 0.45
    twins_per_grain: float = 0.3
    scratches: int = 2
    scratch_depth: float = 0.12
    pits_per_grain: float = 0.0
    shading: float = 0.15
    detector: str = "se"
    # instrument: an SEM's probe and detector (the rest as in ScanInstrument, read by copilot.sim.stem.acquire)
    probe_blur_nm: float = 150.0
    dose: float = 40.0
    line_jitter_px: float = 0.3
    detector_offset: float = 500.0

    @property
    def mean_grain_px(self) -> float:
        """Mean grain diameter (√ of the mean grain area) in frame pixels."""
        return float(np.sqrt(1 / na_from_g(self.grain_g)) * 1e6 / self.nm_per_px)


def _lu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def clamp_g(g: float, nm_per_px: float) -> float:
    """The G nearest ``g`` whose mean grain diameter stays within MIN_GRAIN_PX–MAX_GRAIN_PX frame pixels."""
    def g_for(d_px: float) -> float:
        area_mm2 = (d_px * nm_per_px * 1e-6) ** 2
        return float(3.321928 * np.log10(1 / area_mm2) - 2.954)
    return float(np.clip(g, g_for(MAX_GRAIN_PX), g_for(MIN_GRAIN_PX)))


def random_grain_params(rng: np.random.Generator, size_px: int | tuple[int, int] = 512,
                        nm_per_px_range: tuple[float, float] = NM_PER_PX_RANGE, detector: str = "se",
                        **overrides) -> GrainSemParams:
    """A varied but plausible SEM acquisition of an etched polycrystal; overrides are applied last."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {DETECTORS}")
    nm = _lu(rng, *nm_per_px_range)
    p = GrainSemParams(
        size_px=size_px, nm_per_px=nm, grain_g=clamp_g(float(rng.uniform(*G_RANGE)), nm),
        size_sigma=float(rng.choice([0.0, rng.uniform(0.2, 0.6)])), curvature=float(rng.uniform(0.0, 0.12)),
        boundary_nm=_lu(rng, 250.0, 700.0), etch_depth=float(rng.uniform(0.2, 0.45)),
        etch_variation=float(rng.uniform(0.1, 0.5)), rim=float(rng.uniform(0.0, 0.2)),
        grain_contrast=float(rng.uniform(0.03, 0.12)), base_level=float(rng.uniform(0.35, 0.55)),
        twins_per_grain=float(rng.uniform(0.0, 0.5)), scratches=int(rng.integers(0, 5)),
        scratch_depth=float(rng.uniform(0.05, 0.2)), shading=float(rng.uniform(0.0, 0.25)), detector=detector,
        probe_blur_nm=_lu(rng, 60.0, 250.0), dose=_lu(rng, 12.0, 60.0), scanline_noise=float(rng.uniform(0, 0.02)),
        line_jitter_px=float(rng.uniform(0.0, 0.5)),
    )
    if detector == "bse":
        p = replace(p, **BSE(rng))
    return replace(p, **overrides)


def BSE(rng: np.random.Generator) -> dict:  # noqa: N802 - a group's parameter changes
    """Backscattered electrons: strong channelling contrast, boundaries barely etched (no SE rim)."""
    return {"detector": "bse", "grain_contrast": float(rng.uniform(0.12, 0.22)), "rim": 0.0,
            "etch_depth": float(rng.uniform(0.05, 0.15))}


def smooth_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field of unit std and correlation length ``scale_px``: filtered on a grid 4 samples per
    ``scale_px`` and interpolated up (the cost does not grow with the correlation length)."""
    step = max(1, int(scale_px // 4))
    coarse = tuple(s // step + 3 for s in shape)
    f = ndi.gaussian_filter(rng.normal(size=coarse).astype(np.float32), max(scale_px / step, 1.0), mode="wrap")
    f = ndi.zoom(f, step, order=1, grid_mode=False)[:shape[0], :shape[1]] if step > 1 else f[:shape[0], :shape[1]]
    return (f - f.mean()) / (f.std() + 1e-12)


def render_grains(grains: np.ndarray, boundaries: np.ndarray, p: GrainSemParams,
                  rng: np.random.Generator) -> np.ndarray:
    """The specimen's signal (float32, about 0–1) before the instrument."""
    h, w = grains.shape
    n = int(grains.max()) + 1
    level = np.clip(p.base_level + p.grain_contrast * rng.normal(size=n), 0.05, 0.95).astype(np.float32)
    img = level[grains]
    mean_d = p.mean_grain_px
    objs = ndi.find_objects(grains)
    twins = rng.random(n) < p.twins_per_grain
    for gid in np.flatnonzero(twins[1:]) + 1:
        sl = objs[gid - 1]
        if sl is None:
            continue
        inside = grains[sl] == gid
        ys, xs = np.nonzero(inside)
        if len(ys) < 20:
            continue
        a = rng.uniform(0, np.pi)
        c = rng.integers(len(ys))
        across = np.abs((ys - ys[c]) * np.cos(a) - (xs - xs[c]) * np.sin(a))
        band = across < rng.uniform(0.08, 0.2) * mean_d
        sub = img[sl]
        vals = sub[inside]
        vals[band] = np.clip(p.base_level + p.grain_contrast * rng.normal() * 1.5, 0.05, 0.95)
        sub[inside] = vals
    # etched grooves: depth per grain × a smooth field along the boundaries (a shallow etch leaves gaps)
    half_px = max(p.boundary_nm / p.nm_per_px / 2, 0.35)
    dist = ndi.distance_transform_edt(~boundaries).astype(np.float32)
    per_grain = np.clip(1 + p.etch_variation * rng.normal(size=n), 0.1, None).astype(np.float32)
    along = np.clip(1 + p.etch_variation * smooth_field((h, w), mean_d / 3, rng), 0.0, None)
    depth = np.float32(p.etch_depth) * per_grain[grains] * along
    img = img - depth * np.exp(-((dist / (half_px * 0.8 + 0.6)) ** 2))
    if p.rim > 0:
        img = img + np.float32(p.rim) * along * np.exp(-(((dist - half_px - 1.0) / 1.0) ** 2))
    if p.pits_per_grain > 0:
        k = rng.poisson(p.pits_per_grain * (n - 1))
        pits = np.zeros((h, w), np.float32)
        pits[rng.integers(0, h, k), rng.integers(0, w, k)] = 1.0
        img = img - 0.3 * np.minimum(ndi.gaussian_filter(pits, max(half_px, 1.0)) * 2 * np.pi * max(half_px, 1.0)**2,
                                     1.0)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for _ in range(p.scratches):
        a, off = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5) * max(h, w)
        d = np.abs((yy - h / 2) * np.cos(a) - (xx - w / 2) * np.sin(a) - off)
        img = img - np.float32(p.scratch_depth) * np.exp(-((d / rng.uniform(0.7, 2.0)) ** 2))
    img = img * (1 + p.shading * (yy / h - 0.5) + p.shading * rng.uniform(-1, 1) * (xx / w - 0.5))
    return np.clip(img, 0.0, None).astype(np.float32)


def simulate_grains(params: GrainSemParams, rng: np.random.Generator | int | None = None) -> SimFrame:
    """One etched-polycrystal SEM frame (see the module doc)."""
    rng = np.random.default_rng(rng)
    mean_d = params.mean_grain_px
    pc = simulate_polycrystal(params.shape, params.grain_g, params.nm_per_px, size_sigma=params.size_sigma,
                              curvature_px=params.curvature * mean_d,
                              boundary_px=params.boundary_nm / params.nm_per_px, rng=rng)
    signal = render_grains(pc.grains, pc.boundaries, params, rng)
    image, grains = acquire(signal, pc.grains, params, rng)  # type: ignore[arg-type] - duck-typed instrument
    truth = {"task": "grains", "g": pc.g, "g_intercept": pc.g_intercept, "grains_per_mm2": pc.grains_per_mm2,
             "mean_intercept_um": pc.mean_intercept_px * params.nm_per_px * 1e-3,
             "n_grains": int(len(np.unique(grains))), "params": asdict(params)}
    return SimFrame(image=image, instances=grains.astype(np.int32), nm_per_px=params.nm_per_px, truth=truth)


def _outside(rng: np.random.Generator) -> float:
    lo, hi = NM_PER_PX_RANGE
    return _lu(rng, lo * 0.3, lo * 0.6) if rng.random() < 0.5 else _lu(rng, hi * 1.6, hi * 2.5)


GRAIN_SHIFTS: dict[str, Callable[[np.random.Generator], dict]] = {
    "in-domain": lambda rng: {},
    "dose": lambda rng: {"dose": _lu(rng, 1.0, 5.0)},
    "defocus": lambda rng: {"probe_blur_nm": rng.uniform(400.0, 800.0)},
    "magnification": lambda rng: {"nm_per_px": _outside(rng)},
    "drift": lambda rng: {"drift_shear": float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)),
                          "line_jitter_px": rng.uniform(1.5, 3.0), "scanline_noise": rng.uniform(0.04, 0.1),
                          "scan_wobble_px": rng.uniform(0.0, 2.0), "scan_wobble_period_px": rng.uniform(15, 80)},
    "charging": lambda rng: {"charging": rng.uniform(0.2, 0.6), "charging_decay_px": _lu(rng, 15, 150)},
    "detector": BSE,
    "etching": lambda rng: ({"etch_depth": rng.uniform(0.08, 0.15), "etch_variation": rng.uniform(0.6, 0.9),
                             "rim": 0.0} if rng.random() < 0.5 else
                            {"boundary_nm": _lu(rng, 900.0, 1500.0), "etch_depth": rng.uniform(0.5, 0.7),
                             "pits_per_grain": rng.uniform(0.3, 1.0), "grain_contrast": rng.uniform(0.1, 0.2)}),
}
GRAIN_GROUPS = tuple(GRAIN_SHIFTS)


def grain_domain_params(group: str, rng: np.random.Generator, size_px: int = 512) -> GrainSemParams:
    """The parameters of one frame of ``group`` (G kept where grains are resolvable at the group's nm/px)."""
    if group not in GRAIN_SHIFTS:
        raise KeyError(f"unknown domain group {group!r} for task 'grains'; known: {', '.join(GRAIN_GROUPS)}")
    p = replace(random_grain_params(rng, size_px=size_px), **GRAIN_SHIFTS[group](rng))
    return replace(p, grain_g=clamp_g(p.grain_g, p.nm_per_px))
