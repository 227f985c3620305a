"""Simulated HAADF-STEM and BF-TEM frames of supported nanoparticles, with exact instance masks.

The model is deliberately simple and fast (a 1024² frame in well under 0.3 s on one core). ``SimParams.modality``
picks the contrast mechanism:

* ``"haadf"`` (default): bright particles on a dim support, signal saturating with projected thickness;
* ``"bf-tem"``: bright-field TEM, dark particles on a bright background (mass-thickness + diffraction contrast,
  which varies from particle to particle), Fresnel fringes at particle edges from defocus (transport-of-intensity:
  the image gains ``-Δf·∇²φ``, here a difference of Gaussians of the projected thickness, so under-focus puts a
  bright fringe just outside each edge and a dark band just inside), and the phase-contrast speckle of the
  amorphous support (band-passed noise). A TEM camera has no scan: the random draws for bf-tem set the scan
  artefacts (line jitter, scan-line offsets, drift shear) to zero.

The pieces:

* **support**: a textured amorphous film (grainy short-range texture + slow thickness variation);
* **particles**: ellipses with log-normal equivalent diameters, HAADF signal that saturates with projected
  thickness (``1 - exp(-t / t0)``, so small particles are dimmer than large ones), some touching pairs;
* **instrument**: probe blur (Gaussian, nm), linear drift shear during the scan, scan-line offsets, horizontal
  line jitter and periodic scan wobble (mains pick-up; all applied to the masks too, so ground truth stays exact),
  charging streaks (``copilot.sim.artifacts``), Poisson shot noise at a given dose (counts per pixel at unit
  signal), read noise, detector offset and gain, 16-bit output.

All geometry is in nanometres; ``nm_per_px`` only decides the pixel grid.

>>> rng = np.random.default_rng(0)
>>> f = simulate_frame(SimParams(size_px=256, nm_per_px=0.3), rng)
>>> f.image.dtype, f.instances.dtype, f.image.shape
(dtype('uint16'), dtype('int32'), (256, 256))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from copilot.sim.instrument import ScanInstrument


@dataclass(frozen=True)
class SimParams(ScanInstrument):
    """Parameters of one simulated acquisition. Lengths in nm, times in s; instrument fields in ScanInstrument."""

    size_px: int | tuple[int, int] = 1024
    nm_per_px: float = 0.2
    modality: str = "haadf"  # "haadf" | "bf-tem"
    # particles
    d50_nm: float = 6.0  # median equivalent circular diameter
    sigma_log: float = 0.35  # log-normal shape
    min_diameter_nm: float = 2.0
    max_diameter_nm: float = 30.0
    area_fraction: float = 0.15
    max_aspect: float = 1.35  # ellipse a/b drawn uniformly in [1, max_aspect]
    touching_fraction: float = 0.15  # fraction of particles placed touching a neighbour
    min_gap_nm: float = 0.5  # gap between non-touching particles
    particle_signal: float = 1.0  # HAADF signal of a thick particle
    thickness_scale_nm: float = 4.0  # t0 in 1 - exp(-t / t0)
    particle_contrast_spread: float = 0.0  # relative std of per-particle contrast (diffraction contrast in BF-TEM)
    # projected thickness ∝ (1 − ρ²)^p, p drawn per particle in this range: 0.5 an ellipsoid (a sphere's rounded
    # edge, thin near the rim), towards 0 a flat-topped particle (faceted, a raft, a prism: full thickness up to the
    # rim). Where the image's half-height sits relative to the true outline depends on it.
    profile_powers: tuple[float, float] = (0.5, 0.5)
    # bf-tem only
    bf_fringe: float = 0.0  # Fresnel fringe strength (signed: > 0 under-focus, bright fringe outside the edge)
    fringe_nm: float = 0.6  # fringe width (grows with defocus)
    # support
    background: float = 0.12
    support_contrast: float = 0.05  # std of the grainy texture
    support_grain_nm: float = 0.35
    support_slow_contrast: float = 0.03
    support_slow_nm: float = 8.0  # cell size of the slow thickness variation (was 32 px before 0.2)


@dataclass(frozen=True)
class Particle:
    """One particle's geometry in nm (frame coordinates: x to the right, y down, origin at the top-left corner)."""

    cx_nm: float
    cy_nm: float
    a_nm: float  # semi-axis along `angle`
    b_nm: float
    angle: float  # radians
    pair: int = -1  # index of the particle it was placed touching, or -1

    @property
    def ecd_nm(self) -> float:
        return 2.0 * float(np.sqrt(self.a_nm * self.b_nm))

    @property
    def area_nm2(self) -> float:
        return float(np.pi * self.a_nm * self.b_nm)

    def grown(self, delta_nm: float) -> "Particle":
        return replace(self, a_nm=max(self.a_nm + delta_nm, 0.05), b_nm=max(self.b_nm + delta_nm, 0.05))


@dataclass
class SimFrame:
    """A simulated frame: 16-bit image, int32 instance labels (0 = support, i+1 = particle i), calibration, truth.

    SEM phases frames (``copilot.sim.sem``) use the same type with ``instances`` holding the class map instead.

    ``truth`` holds ``particles`` (list of dicts: geometry in nm, ``instance`` label, ``area_px``,
    ``touches_edge``), ``params`` (the SimParams as a dict), ``d50_nm`` (median ECD of the drawn particles that do
    not touch the frame edge) and, for sintering runs, ``t_s``.
    """

    image: np.ndarray
    instances: np.ndarray
    nm_per_px: float
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def class_map(self) -> np.ndarray | None:
        """For an SEM phases frame (``truth["task"] == "phases"``): the class map (the same array as ``instances``);
        None for a particles frame."""
        return self.instances if self.truth.get("task") == "phases" else None


MODALITIES = ("haadf", "bf-tem")


def pick(rng: np.random.Generator, value: str, known: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``known``; for ``"any"`` one of them with equal odds; else a ValueError."""
    if value == "any":
        value = known[int(rng.integers(len(known)))]
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {known}")
    return value


def random_params(rng: np.random.Generator, size_px: int | tuple[int, int] = 1024,
                  nm_per_px_range: tuple[float, float] = (0.1, 0.5), modality: str = "haadf",
                  **overrides: Any) -> SimParams:
    """Draw a varied but plausible acquisition (used for training data and held-out sets).

    ``modality``: ``"haadf"`` (default; the same draws as before BF-TEM existed), ``"bf-tem"``, or ``"any"`` (one of
    the two with equal odds). Overrides are applied last.

    >>> random_params(np.random.default_rng(0), 64, modality="bf-tem").modality
    'bf-tem'
    """
    modality = pick(rng, modality, MODALITIES, "modality")
    lo, hi = nm_per_px_range
    nmpp = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    p = SimParams(
        size_px=size_px,
        nm_per_px=nmpp,
        d50_nm=float(np.exp(rng.uniform(np.log(3.5), np.log(14.0)))),
        sigma_log=float(rng.uniform(0.15, 0.45)),
        min_diameter_nm=2.5,
        max_diameter_nm=25.0,
        area_fraction=float(rng.uniform(0.03, 0.3)),
        max_aspect=float(rng.uniform(1.0, 1.5)),
        touching_fraction=float(rng.uniform(0.0, 0.35)),
        particle_signal=float(rng.uniform(0.6, 1.0)),
        thickness_scale_nm=float(rng.uniform(2.5, 6.0)),
        background=float(rng.uniform(0.05, 0.25)),
        support_contrast=float(rng.uniform(0.01, 0.08)),
        support_grain_nm=float(rng.uniform(0.25, 0.6)),
        support_slow_contrast=float(rng.uniform(0.0, 0.06)),
        probe_blur_nm=float(rng.uniform(0.08, 0.6)),
        dose=float(np.exp(rng.uniform(np.log(8.0), np.log(300.0)))),
        read_noise=float(rng.uniform(0.0, 2.0)),
        scanline_noise=float(rng.uniform(0.0, 0.03)),
        line_jitter_px=float(rng.uniform(0.0, 0.8)),
        drift_shear=float(rng.normal(0.0, 0.01)),
        detector_offset=float(rng.uniform(0, 2000)),
        detector_full_scale=float(rng.uniform(8000, 40000)),
    )
    if modality == "bf-tem":
        # bright field: the unscattered beam through the support is bright; particles absorb/scatter it away
        p = replace(
            p,
            modality="bf-tem",
            background=float(rng.uniform(0.55, 0.9)),
            particle_signal=float(rng.uniform(0.3, 0.75)),
            particle_contrast_spread=float(rng.uniform(0.0, 0.35)),
            support_contrast=float(rng.uniform(0.01, 0.06)),
            support_grain_nm=float(rng.uniform(0.3, 0.8)),
            bf_fringe=float((1.0 if rng.random() < 0.75 else -1.0) * rng.uniform(0.1, 1.0)),
            fringe_nm=float(rng.uniform(0.3, 1.2)),
            probe_blur_nm=float(rng.uniform(0.05, 0.4)),
            dose=float(np.exp(rng.uniform(np.log(10.0), np.log(500.0)))),
            scanline_noise=0.0,
            line_jitter_px=0.0,
            drift_shear=0.0,
            detector_offset=float(rng.uniform(0, 500)),
            detector_full_scale=float(rng.uniform(5000, 40000)),
        )
    return replace(p, **overrides) if overrides else p


# ----------------------------------------------------------------------------------------------------------------
# geometry


def _ellipse_radius_max(p: Particle) -> float:
    return max(p.a_nm, p.b_nm)


def place_particles(params: SimParams, rng: np.random.Generator, extent_nm: tuple[float, float] | None = None,
                    origin_nm: tuple[float, float] = (0.0, 0.0), extra_gap_nm: float = 0.0) -> list[Particle]:
    """Random sequential placement: log-normal sizes, no overlaps except deliberate touching pairs.

    ``extent_nm`` (height, width) defaults to the frame; particles may hang over its edge.
    """
    h_px, w_px = params.shape
    H, W = extent_nm if extent_nm is not None else (h_px * params.nm_per_px, w_px * params.nm_per_px)
    oy, ox = origin_nm
    mean_area = np.pi * (params.d50_nm / 2) ** 2 * np.exp(2 * params.sigma_log**2)
    n_target = int(rng.poisson(max(params.area_fraction * H * W / mean_area, 0.0)))
    gap = params.min_gap_nm + extra_gap_nm
    parts: list[Particle] = []
    paired: set[int] = set()
    # uniform grid over particle centres: overlap checks look only at neighbouring cells
    cell = max(params.d50_nm + gap, 0.5)
    grid: dict[tuple[int, int], list[int]] = {}
    a_max = 0.0  # largest semi-axis placed so far: sets how many cells a check must reach
    tries = 0
    while len(parts) < n_target and tries < 30 * n_target + 50:
        tries += 1
        d = float(np.clip(params.d50_nm * np.exp(params.sigma_log * rng.standard_normal()),
                          params.min_diameter_nm, params.max_diameter_nm))
        aspect = float(rng.uniform(1.0, max(params.max_aspect, 1.0)))
        a, b = d / 2 * np.sqrt(aspect), d / 2 / np.sqrt(aspect)
        ang = float(rng.uniform(0, np.pi))
        pair = -1
        if parts and rng.random() < params.touching_fraction:
            j = int(rng.integers(len(parts)))
            if j in paired:
                continue
            phi = rng.uniform(0, 2 * np.pi)
            # distance so that the two ellipses just touch / overlap slightly along the line of centres
            ri = _support_radius(a, b, ang, phi)
            rj = _support_radius(parts[j].a_nm, parts[j].b_nm, parts[j].angle, phi + np.pi)
            dist = (ri + rj) * rng.uniform(0.85, 0.97)
            cx = parts[j].cx_nm + dist * np.cos(phi)
            cy = parts[j].cy_nm + dist * np.sin(phi)
            pair = j
        else:
            cx = ox + rng.uniform(-a, W + a)
            cy = oy + rng.uniform(-a, H + a)
        gx, gy = math.floor(cx / cell), math.floor(cy / cell)
        reach = math.ceil((a + a_max + gap) / cell)
        clash = False
        for ix in range(gx - reach, gx + reach + 1):
            for iy in range(gy - reach, gy + reach + 1):
                for k in grid.get((ix, iy), ()):
                    if k == pair:
                        continue
                    q = parts[k]
                    if math.hypot(q.cx_nm - cx, q.cy_nm - cy) < q.a_nm + a + gap:
                        clash = True
                        break
                if clash:
                    break
            if clash:
                break
        if clash:
            continue
        if pair >= 0:
            paired.update((pair, len(parts)))
        grid.setdefault((gx, gy), []).append(len(parts))
        a_max = max(a_max, a)
        parts.append(Particle(float(cx), float(cy), float(a), float(b), ang, pair))
    return parts


def _support_radius(a: float, b: float, angle: float, phi: float) -> float:
    """Radius of an ellipse (semi-axes a, b rotated by angle) in direction phi."""
    t = phi - angle
    return float(a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2))


def render_particles(parts: list[Particle], shape: tuple[int, int], nm_per_px: float, params: SimParams,
                     offset_nm: tuple[float, float] = (0.0, 0.0), strengths: np.ndarray | None = None,
                     powers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize particles: returns (signal float32, instances int32). Pixel (i, j) samples the point
    ((j + 0.5) px, (i + 0.5) px) shifted by the drift shear; a pixel belongs to the particle whose normalized elliptic
    radius is smallest there (touching pairs split along the natural contact line). The signal is
    ``particle_signal * (1 - exp(-t / t0))`` of the projected thickness ``t`` (each particle's thickness scaled by
    ``strengths[k]`` if given: per-particle contrast; ``powers[k]``: the exponent of its thickness profile, else 0.5)."""
    H, W = shape
    thick = np.zeros(shape, np.float32)
    inst = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    shear = params.drift_shear
    oy, ox = offset_nm
    for k, p in enumerate(parts):
        cxp = (p.cx_nm - ox) / nm_per_px - 0.5
        cyp = (p.cy_nm - oy) / nm_per_px - 0.5
        r = _ellipse_radius_max(p) / nm_per_px + 1.5
        y0, y1 = int(np.floor(cyp - r)), int(np.ceil(cyp + r)) + 1
        y0c, y1c = max(y0, 0), min(y1, H)
        if y0c >= y1c:
            continue
        xs0 = min(shear * y0c, shear * (y1c - 1))
        xs1 = max(shear * y0c, shear * (y1c - 1))
        x0c, x1c = max(int(np.floor(cxp - r + xs0)), 0), min(int(np.ceil(cxp + r + xs1)) + 1, W)
        if x0c >= x1c:
            continue
        yy = np.arange(y0c, y1c, dtype=np.float32)[:, None]
        xx = np.arange(x0c, x1c, dtype=np.float32)[None, :]
        dx = (xx - shear * yy - cxp) * nm_per_px
        dy = (yy - cyp) * nm_per_px
        c, s = np.cos(p.angle), np.sin(p.angle)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        rho2 = (u / p.a_nm) ** 2 + (v / p.b_nm) ** 2
        inside = rho2 < 1.0
        if not inside.any():
            continue
        # projected thickness of an ellipsoid with third semi-axis sqrt(a b) (flatter towards the rim: powers)
        rim = np.clip(1.0 - rho2, 0.0, None)
        profile = np.sqrt(rim) if powers is None else np.where(inside, rim ** np.float32(powers[k]), 0.0)
        t = 2.0 * np.sqrt(p.a_nm * p.b_nm) * profile
        if strengths is not None:
            t = t * np.float32(strengths[k])
        thick[y0c:y1c, x0c:x1c] += t
        sub_best = best[y0c:y1c, x0c:x1c]
        win = inside & (rho2 < sub_best)
        sub_best[win] = rho2[win]
        inst[y0c:y1c, x0c:x1c][win] = k + 1
    signal = params.particle_signal * (1.0 - np.exp(-thick / params.thickness_scale_nm))
    return signal.astype(np.float32), inst


def support_texture(shape: tuple[int, int], nm_per_px: float, params: SimParams,
                    rng: np.random.Generator) -> np.ndarray:
    """Amorphous support: grainy short-range texture + slow thickness variation (float32, mean ~background).

    HAADF: low-passed noise at ``support_grain_nm``. BF-TEM: the phase-contrast speckle of an amorphous film, i.e.
    band-passed noise (difference of Gaussians at ``support_grain_nm`` and twice that), whose std is
    ``support_contrast``. The slow variation has cells of ``support_slow_nm`` (nm, not pixels: a frame at another
    magnification sees the same film).
    """
    H, W = shape
    sig = max(params.support_grain_nm / nm_per_px, 0.3)
    noise = rng.standard_normal(shape, dtype=np.float32)
    grain = ndi.gaussian_filter(noise, sig, truncate=2.5)
    if params.modality == "bf-tem":
        grain -= ndi.gaussian_filter(noise, 2.0 * sig, truncate=2.5)
    grain *= params.support_contrast / max(float(grain.std()), 1e-6)
    out = grain + np.float32(params.background)
    if params.support_slow_contrast > 0:
        cs = max(int(round(params.support_slow_nm / nm_per_px)), 2)
        coarse = rng.standard_normal((H // cs + 3, W // cs + 3)).astype(np.float32)
        coarse = ndi.gaussian_filter(coarse, 1.0)
        slow = ndi.zoom(coarse, cs, order=1, prefilter=False)[cs:cs + H, cs:cs + W]
        slow *= params.support_slow_contrast / max(float(slow.std()), 1e-6)
        out += slow
    return out


def form_image(signal: np.ndarray, support: np.ndarray, params: SimParams) -> np.ndarray:
    """Combine the particle signal (``render_particles``) with the support (``support_texture``) for the modality.

    HAADF: they add. BF-TEM: the support's bright field is attenuated by the particles (``support * (1 - signal)``),
    and the Fresnel fringe ``bf_fringe * (G(signal) - signal)`` (G: Gaussian of ``fringe_nm``, a band-limited
    ``-∇²``) is added: bright just outside an edge and dark just inside for ``bf_fringe > 0`` (under-focus).
    """
    if params.modality == "haadf":
        return signal + support
    if params.modality != "bf-tem":
        raise ValueError(f"unknown modality {params.modality!r}")
    img = support * (1.0 - signal)
    if params.bf_fringe != 0:
        s = max(params.fringe_nm / params.nm_per_px, 0.3)
        img += np.float32(params.bf_fringe) * (ndi.gaussian_filter(signal, s, truncate=3.0) - signal)
    return img.astype(np.float32, copy=False)


def particle_strengths(n: int, params: SimParams, rng: np.random.Generator) -> np.ndarray | None:
    """Per-particle contrast factors (log-normal, median 1) or None when ``particle_contrast_spread`` is 0."""
    if params.particle_contrast_spread <= 0 or n == 0:
        return None
    return np.exp(params.particle_contrast_spread * rng.standard_normal(n)).astype(np.float32)


def particle_profiles(n: int, params: SimParams, rng: np.random.Generator) -> np.ndarray | None:
    """Per-particle thickness-profile exponents (uniform in ``params.profile_powers``), or None when every particle
    is an ellipsoid (no draw: the frames of a fixed seed stay as they were)."""
    lo, hi = params.profile_powers
    if lo == hi == 0.5 or n == 0:
        return None
    return rng.uniform(lo, hi, n).astype(np.float32)


def acquire(signal: np.ndarray, instances: np.ndarray, params: SimParams, rng: np.random.Generator,
            ) -> tuple[np.ndarray, np.ndarray]:
    """The instrument: probe blur, scan-line offsets, jitter and wobble (masks follow), charging streaks, shot + read
    noise, 16-bit output. Works for a class map in place of ``instances`` too (copilot.sim.sem)."""
    from copilot.sim.artifacts import charging_streaks, line_shifts

    H, W = signal.shape
    sig = params.probe_blur_nm / params.nm_per_px
    img = ndi.gaussian_filter(signal, sig, truncate=3.0) if sig > 0.25 else signal
    shifts = line_shifts(H, params.line_jitter_px, params.scan_wobble_px, params.scan_wobble_period_px, rng)
    if shifts is not None:
        cols = np.clip(np.arange(W)[None, :] - shifts[:, None], 0, W - 1)
        img = np.take_along_axis(img, cols, axis=1)
        instances = np.take_along_axis(instances, cols, axis=1)
    if params.charging > 0:
        img = charging_streaks(img, params.charging, params.charging_decay_px, rng)
    if params.scanline_noise > 0:
        img = img + rng.normal(0.0, params.scanline_noise, (H, 1)).astype(np.float32)
    lam = np.clip(img, 0.0, None) * np.float32(params.dose)
    counts = rng.poisson(lam).astype(np.float32)
    if params.read_noise > 0:
        counts += rng.normal(0.0, params.read_noise, counts.shape).astype(np.float32)
    out = params.detector_offset + counts * np.float32(params.detector_full_scale / params.dose)
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16), instances


def _truth(parts: list[Particle], instances: np.ndarray, params: SimParams) -> dict[str, Any]:
    n = len(parts)
    areas = np.bincount(instances.ravel(), minlength=n + 1)[1:]
    edge_ids = np.unique(np.concatenate([instances[0], instances[-1], instances[:, 0], instances[:, -1]]))
    edge = np.zeros(n + 1, bool)
    edge[edge_ids] = True
    plist = []
    for k, p in enumerate(parts):
        if areas[k] == 0:
            continue
        d = asdict(p)
        d.update(instance=k + 1, ecd_nm=p.ecd_nm, area_nm2=p.area_nm2, area_px=int(areas[k]),
                 touches_edge=bool(edge[k + 1]))
        plist.append(d)
    inner = [q["ecd_nm"] for q in plist if not q["touches_edge"]]
    return {
        "particles": plist,
        "n_particles": len(plist),
        "d50_nm": float(np.median(inner)) if inner else float("nan"),
        "params": asdict(params),
        "task": "particles",
        "modality": params.modality,
    }


def simulate_frame(params: SimParams, rng: np.random.Generator | int | None = None,
                   particles: list[Particle] | None = None) -> SimFrame:
    """Simulate one HAADF-STEM or BF-TEM frame (``params.modality``).

    >>> f = simulate_frame(SimParams(size_px=128, nm_per_px=0.25, area_fraction=0.2), 1)
    >>> int(f.instances.max()) == f.truth["particles"][-1]["instance"] or f.truth["n_particles"] == 0
    True
    """
    rng = np.random.default_rng(rng)
    shape = params.shape
    parts = place_particles(params, rng) if particles is None else particles
    signal, inst = render_particles(parts, shape, params.nm_per_px, params,
                                    strengths=particle_strengths(len(parts), params, rng),
                                    powers=particle_profiles(len(parts), params, rng))
    signal = form_image(signal, support_texture(shape, params.nm_per_px, params, rng), params)
    image, inst = acquire(signal, inst, params, rng)
    return SimFrame(image=image, instances=inst, nm_per_px=params.nm_per_px, truth=_truth(parts, inst, params))
