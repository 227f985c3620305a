"""Simulated bright-field TEM frames of an irradiated thin foil: cavities and dislocation loops with exact masks.

What a frame shows (all geometry in nm; ``nm_per_px`` only decides the pixel grid):

* **foil background**: bright field attenuated by the foil thickness ``t`` (``exp(-t / absorption_nm)``), thickness
  fringes (``cos(2π t(x) / extinction_nm)`` over a thickness gradient), and dark bend contours (bands along level
  lines of a smooth random tilt field);
* **cavities** (voids / bubbles, class ``cavity``), 1-50 nm, round or faceted (projected polygon), seen by their
  Fresnel contrast through focus: the image gains ``k · (s - G(s))`` of the cavity's projected thickness ``s``
  (transport of intensity, ``-Δf ∇²φ``; G a Gaussian of the Fresnel width ``√(λ |Δf|)``), with ``k ∝ -Δf``: under-focus
  (``defocus_nm < 0``) gives a bright core inside a dark ring, over-focus the inverse; plus a weak mass-thickness
  brightening (less material along the beam);
* **dislocation loops** (class ``loop``): black dots (filled dark blobs, diameter < 5 nm) and resolved loops
  (ellipses, the projection of an inclined circular loop) drawn as a dark ring whose strength follows
  ``|cos(θ - θ_g)|`` (the double-arc contrast of ``g·b`` with a line of no contrast across it);
* **distractors**, never labelled: line dislocations (dark wavy lines across the frame) and precipitates (darker
  discs without a Fresnel ring);
* **instrument**: contamination (slow dark blotches), drift (a motion blur along one direction), objective blur,
  Poisson shot noise at ``dose`` counts/px of the unattenuated beam, camera read noise, 16-bit output.

``SimFrame.instances`` holds instance labels (0 = foil); ``truth["defects"]`` one dict per instance (class,
geometry, ``diameter_nm`` = ECD of a cavity or major axis of a loop, ``touches_edge``, ``centre_inside``),
``truth["class_names"]`` = ``("background", "cavity", "loop")``, ``truth["foil_thickness_nm"]``,
``truth["swelling"]`` (ΔV/V of the cavities whose centre is inside the frame, for the foil thickness and frame area)
and ``truth["density_per_um2"]`` per class. :func:`class_map` turns instances into the class map.

>>> f = simulate_foil(FoilParams(size_px=128, nm_per_px=0.5), 0)
>>> f.image.dtype, f.truth["class_names"], f.truth["task"]
(dtype('uint16'), ('background', 'cavity', 'loop'), 'defects')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from copilot.sim.instrument import FrameGeometry
from copilot.sim.stem import SimFrame

CLASS_NAMES = ("background", "cavity", "loop")
CAVITY, LOOP = 1, 2
ELECTRON_WAVELENGTH_NM = 0.00251  # 200 kV
BLACK_DOT_NM = 5.0


@dataclass(frozen=True)
class FoilParams(FrameGeometry):
    """One acquisition of an irradiated foil. Lengths in nm; dose in electrons per pixel of the bright beam."""

    size_px: int | tuple[int, int] = 512
    nm_per_px: float = 0.5
    defocus_nm: float = -800.0  # < 0 under-focus (bright core, dark ring), > 0 over-focus (inverted)
    fresnel_gain: float = 0.9  # Fresnel contrast per 1000 nm of defocus at unit projected-thickness fraction
    foil_thickness_nm: float = 80.0
    thickness_gradient: float = 0.15  # nm of thickness per nm across the frame (wedge)
    extinction_nm: float = 40.0  # thickness-fringe period
    fringe_contrast: float = 0.06
    absorption_nm: float = 400.0
    bend_contours: int = 2
    bend_contrast: float = 0.35
    bend_width_nm: float = 12.0
    # cavities
    cavity_density_per_um2: float = 800.0
    cavity_d50_nm: float = 6.0
    cavity_sigma_log: float = 0.5
    cavity_min_nm: float = 1.0
    cavity_max_nm: float = 50.0
    faceted_fraction: float = 0.4
    mass_contrast: float = 0.15  # brightening per unit relative thickness removed
    # loops
    loop_density_per_um2: float = 600.0
    loop_d50_nm: float = 6.0
    loop_sigma_log: float = 0.6
    loop_max_nm: float = 40.0
    loop_contrast: float = 0.45
    loop_line_nm: float = 1.2  # width of a loop's dark line
    # distractors
    line_dislocations: int = 2
    precipitate_density_per_um2: float = 100.0
    precipitate_contrast: float = 0.12
    # instrument
    contamination: float = 0.03
    drift_nm: float = 0.0  # motion blur length
    blur_nm: float = 0.3  # objective / camera blur (Gaussian sigma)
    dose: float = 200.0
    read_noise: float = 2.0
    gain: float = 60.0  # 16-bit counts per electron
    offset: float = 200.0
    min_gap_nm: float = 1.5

    @property
    def fresnel_width_nm(self) -> float:
        return float(math.sqrt(ELECTRON_WAVELENGTH_NM * max(abs(self.defocus_nm), 1.0)))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_foil_params(rng: np.random.Generator, size_px: int | tuple[int, int] = 512,
                       nm_per_px_range: tuple[float, float] = (0.3, 0.8), **overrides: Any) -> FoilParams:
    """A varied, in-domain acquisition: under-focus 300-1500 nm, foil 40-120 nm, dose 80-800 e/px, 0.3-0.8 nm/px.

    >>> random_foil_params(np.random.default_rng(0), 64).defocus_nm < 0
    True
    """
    p = FoilParams(
        size_px=size_px,
        nm_per_px=_log_uniform(rng, *nm_per_px_range),
        defocus_nm=-_log_uniform(rng, 300.0, 1500.0),
        fresnel_gain=float(rng.uniform(0.6, 1.2)),
        foil_thickness_nm=float(rng.uniform(40.0, 120.0)),
        thickness_gradient=float(rng.uniform(0.0, 0.3)),
        extinction_nm=float(rng.uniform(25.0, 60.0)),
        fringe_contrast=float(rng.uniform(0.0, 0.1)),
        bend_contours=int(rng.integers(0, 4)),
        bend_contrast=float(rng.uniform(0.15, 0.5)),
        bend_width_nm=float(rng.uniform(6.0, 25.0)),
        cavity_density_per_um2=_log_uniform(rng, 150.0, 2500.0),
        cavity_d50_nm=_log_uniform(rng, 3.0, 14.0),
        cavity_sigma_log=float(rng.uniform(0.3, 0.7)),
        faceted_fraction=float(rng.uniform(0.0, 0.8)),
        mass_contrast=float(rng.uniform(0.05, 0.25)),
        loop_density_per_um2=_log_uniform(rng, 50.0, 1500.0),
        loop_d50_nm=_log_uniform(rng, 3.0, 12.0),
        loop_sigma_log=float(rng.uniform(0.4, 0.8)),
        loop_contrast=float(rng.uniform(0.3, 0.6)),
        loop_line_nm=float(rng.uniform(0.8, 1.8)),
        line_dislocations=int(rng.integers(0, 4)),
        precipitate_density_per_um2=_log_uniform(rng, 10.0, 300.0),
        precipitate_contrast=float(rng.uniform(0.05, 0.2)),
        contamination=float(rng.uniform(0.0, 0.06)),
        drift_nm=float(rng.uniform(0.0, 0.6)),
        blur_nm=float(rng.uniform(0.15, 0.5)),
        dose=_log_uniform(rng, 80.0, 800.0),
        read_noise=float(rng.uniform(0.5, 4.0)),
        gain=float(rng.uniform(20.0, 100.0)),
        offset=float(rng.uniform(0.0, 500.0)),
    )
    return replace(p, **overrides) if overrides else p


# ---------------------------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class Defect:
    """One labelled defect: centre, semi-axes (a ≥ b) and angle of its projected outline; ``facets`` > 0 = polygon."""

    kind: int  # CAVITY or LOOP
    cx_nm: float
    cy_nm: float
    a_nm: float
    b_nm: float
    angle: float
    facets: int = 0
    g_angle: float = 0.0  # loops: direction of the line of no contrast's normal

    @property
    def diameter_nm(self) -> float:
        """Cavity: equivalent circular diameter of the outline; loop: the ellipse's major axis."""
        return 2.0 * self.a_nm if self.kind == LOOP else 2.0 * math.sqrt(self.area_nm2 / math.pi)

    @property
    def area_nm2(self) -> float:
        """Projected area: the ellipse, or the polygon inscribed in it (``facets`` corners)."""
        if self.facets:
            return 0.5 * self.facets * math.sin(2 * math.pi / self.facets) * self.a_nm * self.b_nm
        return math.pi * self.a_nm * self.b_nm


def _draw_sizes(rng: np.random.Generator, n: int, d50: float, sigma: float, lo: float, hi: float) -> np.ndarray:
    return np.clip(d50 * np.exp(sigma * rng.standard_normal(n)), lo, hi)


def place_defects(p: FoilParams, rng: np.random.Generator) -> list[Defect]:
    """Poisson numbers of cavities and loops over the frame (plus a margin), largest first, no overlaps."""
    H, W = p.shape[0] * p.nm_per_px, p.shape[1] * p.nm_per_px
    area_um2 = (H + 20) * (W + 20) * 1e-6
    n_cav = int(rng.poisson(p.cavity_density_per_um2 * area_um2))
    n_loop = int(rng.poisson(p.loop_density_per_um2 * area_um2))
    d_cav = _draw_sizes(rng, n_cav, p.cavity_d50_nm, p.cavity_sigma_log, p.cavity_min_nm, p.cavity_max_nm)
    d_loop = _draw_sizes(rng, n_loop, p.loop_d50_nm, p.loop_sigma_log, 1.5, p.loop_max_nm)
    todo = [(CAVITY, d) for d in d_cav] + [(LOOP, d) for d in d_loop]
    todo.sort(key=lambda t: -t[1])
    placed: list[Defect] = []
    cell = 10.0
    grid: dict[tuple[int, int], list[int]] = {}
    r_max = 0.0
    for kind, d in todo:
        if kind == CAVITY:
            aspect = 1.0 + float(rng.uniform(0.0, 0.15))
            facets = int(rng.choice([4, 6, 8])) if rng.random() < p.faceted_fraction else 0
        else:  # an inclined circular loop projects to an ellipse with major axis d
            aspect = 1.0 / max(math.cos(float(rng.uniform(0.0, 1.1))), 0.3) if d >= BLACK_DOT_NM else 1.0
            facets = 0
        a = float(d) / 2.0
        b = a / aspect if kind == LOOP else a / math.sqrt(aspect)
        a = a if kind == LOOP else a * math.sqrt(aspect)
        for _ in range(20):
            cx, cy = float(rng.uniform(-10, W + 10)), float(rng.uniform(-10, H + 10))
            gx, gy = math.floor(cx / cell), math.floor(cy / cell)
            reach = math.ceil((a + r_max + p.min_gap_nm) / cell)
            clash = any(math.hypot(placed[k].cx_nm - cx, placed[k].cy_nm - cy) < placed[k].a_nm + a + p.min_gap_nm
                        for ix in range(gx - reach, gx + reach + 1) for iy in range(gy - reach, gy + reach + 1)
                        for k in grid.get((ix, iy), ()))
            if not clash:
                grid.setdefault((gx, gy), []).append(len(placed))
                r_max = max(r_max, a)
                placed.append(Defect(kind, cx, cy, a, b, float(rng.uniform(0, math.pi)), facets,
                                     float(rng.uniform(0, math.pi))))
                break
    return placed


def _local(d: Defect, shape: tuple[int, int], nm_per_px: float, pad_nm: float):
    """Window of pixels around a defect and the normalized radius ``rho`` (< 1 inside the outline) there."""
    H, W = shape
    cxp, cyp = d.cx_nm / nm_per_px - 0.5, d.cy_nm / nm_per_px - 0.5
    r = (d.a_nm + pad_nm) / nm_per_px + 1.5
    y0, y1 = max(int(cyp - r), 0), min(int(cyp + r) + 2, H)
    x0, x1 = max(int(cxp - r), 0), min(int(cxp + r) + 2, W)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=np.float32)[:, None] - cyp) * nm_per_px
    dx = (np.arange(x0, x1, dtype=np.float32)[None, :] - cxp) * nm_per_px
    c, s = math.cos(d.angle), math.sin(d.angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    if d.facets:
        rho = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
        apothem = math.cos(math.pi / d.facets)
        for k in range(d.facets):
            t = 2 * math.pi * k / d.facets
            rho = np.maximum(rho, (u / d.a_nm * math.cos(t) + v / d.b_nm * math.sin(t)) / apothem)
    else:
        rho = np.sqrt((u / d.a_nm) ** 2 + (v / d.b_nm) ** 2)
    return (slice(y0, y1), slice(x0, x1)), rho.astype(np.float32), dx, dy


def render_defects(defects: list[Defect], p: FoilParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(cavity projected thickness fraction, loop darkening, instance labels, instance ids per defect: 0 = not in
    the frame)."""
    shape, nmpp = p.shape, p.nm_per_px
    cav = np.zeros(shape, np.float32)
    loops = np.zeros(shape, np.float32)
    inst = np.zeros(shape, np.int32)
    ids: list[int] = []
    line = p.loop_line_nm
    for d in defects:
        win = _local(d, shape, nmpp, pad_nm=2 * line)
        if win is None:
            ids.append(0)
            continue
        sl, rho, dx, dy = win
        inside = rho < 1.0
        if not inside.any():
            ids.append(0)
            continue
        if d.kind == CAVITY:
            chord = 2 * math.sqrt(d.a_nm * d.b_nm) * np.sqrt(np.clip(1 - rho**2, 0, None))
            cav[sl] += chord / max(p.foil_thickness_nm, 1.0)
        elif d.a_nm * 2 < BLACK_DOT_NM:
            loops[sl] += np.exp(-0.5 * (rho / 0.85) ** 4)
        else:
            dist_nm = np.abs(rho - 1.0 + 0.5 * line / d.a_nm) * d.b_nm
            theta = np.arctan2(dy, dx)
            arcs = 0.25 + 0.75 * np.abs(np.cos(theta - d.g_angle))
            loops[sl] += np.exp(-0.5 * (dist_nm / (0.5 * line)) ** 2) * arcs + 0.15 * inside
        label = len([i for i in ids if i]) + 1
        sub = inst[sl]
        sub[inside & (sub == 0)] = label
        ids.append(label)
    return cav, np.clip(loops, 0, 1.5), inst, ids


def _smooth_field(shape: tuple[int, int], cell_px: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field (unit std) with features about ``cell_px`` across."""
    H, W = shape
    cs = max(int(cell_px), 2)
    coarse = rng.standard_normal((H // cs + 4, W // cs + 4)).astype(np.float32)
    coarse = ndi.gaussian_filter(coarse, 1.0)
    f = ndi.zoom(coarse, cs, order=1, prefilter=False)[cs:cs + H, cs:cs + W]
    return f / max(float(f.std()), 1e-6)


def foil_background(p: FoilParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(bright-field transmission of the foil without defects, thickness map in nm)."""
    H, W = p.shape
    nmpp = p.nm_per_px
    yy, xx = np.mgrid[:H, :W].astype(np.float32) * nmpp
    phi = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(phi) + yy * math.sin(phi)) - 0.5 * (W * math.cos(phi) + H * math.sin(phi)) * nmpp
    t = p.foil_thickness_nm + p.thickness_gradient * ramp
    t = np.clip(t, 5.0, None)
    bg = np.exp(-t / p.absorption_nm) * (1.0 + p.fringe_contrast * np.cos(2 * math.pi * t / p.extinction_nm))
    if p.bend_contours:
        tilt = _smooth_field((H, W), 150.0 / nmpp, rng)
        for k in range(p.bend_contours):
            level = float(rng.uniform(-1.2, 1.2))
            width = p.bend_width_nm / nmpp * float(np.abs(np.gradient(tilt)[0]).mean() + 1e-3)
            bg *= 1.0 - p.bend_contrast * np.exp(-0.5 * ((tilt - level) / max(width, 1e-3)) ** 2)
    return bg.astype(np.float32), t.astype(np.float32)


def distractors(p: FoilParams, rng: np.random.Generator) -> np.ndarray:
    """Darkening (≥ 0) by line dislocations and precipitates, which the detector must leave unlabelled."""
    H, W = p.shape
    nmpp = p.nm_per_px
    out = np.zeros((H, W), np.float32)
    yy, xx = np.mgrid[:H, :W].astype(np.float32) * nmpp
    for _ in range(p.line_dislocations):
        ang = rng.uniform(0, math.pi)
        off = rng.uniform(-0.5, 0.5) * max(H, W) * nmpp
        cy, cx = H * nmpp / 2, W * nmpp / 2
        dist = (xx - cx) * math.sin(ang) - (yy - cy) * math.cos(ang) - off
        along = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
        dist = dist + 3.0 * np.sin(along / rng.uniform(15, 60) + rng.uniform(0, 6.3))
        out += 0.4 * np.exp(-0.5 * (dist / rng.uniform(0.8, 1.8)) ** 2)
    n = int(rng.poisson(p.precipitate_density_per_um2 * H * W * nmpp**2 * 1e-6))
    for _ in range(n):
        r = rng.uniform(3.0, 12.0)
        cxp, cyp = rng.uniform(0, W), rng.uniform(0, H)
        rp = r / nmpp
        y0, y1 = max(int(cyp - rp - 2), 0), min(int(cyp + rp + 3), H)
        x0, x1 = max(int(cxp - rp - 2), 0), min(int(cxp + rp + 3), W)
        if y0 >= y1 or x0 >= x1:
            continue
        rr = np.hypot(np.arange(y0, y1)[:, None] - cyp, np.arange(x0, x1)[None, :] - cxp) / rp
        out[y0:y1, x0:x1] += p.precipitate_contrast / 0.4 * np.clip(1 - rr**2, 0, None) ** 0.5
    return out


def _fresnel(cav: np.ndarray, p: FoilParams) -> np.ndarray:
    """Through-focus contrast of the cavities: ``-Δf/1000 · gain · (G(s) - s)`` (bright core, dark ring under-focus)."""
    if not cav.any():
        return np.zeros_like(cav)
    s = max(p.fresnel_width_nm / p.nm_per_px, 0.3)
    k = -p.defocus_nm / 1000.0 * p.fresnel_gain * 6.0
    return (k * (cav - ndi.gaussian_filter(cav, s, truncate=3.0))).astype(np.float32)


def _drift_blur(img: np.ndarray, length_px: float, rng: np.random.Generator) -> np.ndarray:
    if length_px < 0.5:
        return img
    n = int(math.ceil(length_px)) * 2 + 1
    k = np.zeros((n, n), np.float32)
    ang = rng.uniform(0, math.pi)
    for t in np.linspace(-length_px / 2, length_px / 2, 4 * n):
        k[int(round(n // 2 + t * math.sin(ang))), int(round(n // 2 + t * math.cos(ang)))] += 1
    return ndi.convolve(img, k / k.sum(), mode="nearest")


def _truth(defects: list[Defect], ids: list[int], inst: np.ndarray, p: FoilParams) -> dict[str, Any]:
    H, W = p.shape
    edge = np.zeros(int(inst.max()) + 1, bool)
    edge[np.unique(np.concatenate([inst[0], inst[-1], inst[:, 0], inst[:, -1]]))] = True
    areas = np.bincount(inst.ravel(), minlength=edge.size)
    Hn, Wn = H * p.nm_per_px, W * p.nm_per_px
    rows = []
    for d, i in zip(defects, ids):
        if not i:
            continue
        rows.append({"instance": i, "class": CLASS_NAMES[d.kind], "cx_nm": d.cx_nm, "cy_nm": d.cy_nm, "a_nm": d.a_nm,
                     "b_nm": d.b_nm, "angle": d.angle, "facets": d.facets, "diameter_nm": d.diameter_nm,
                     "area_px": int(areas[i]), "touches_edge": bool(edge[i]),
                     "centre_inside": bool(0 <= d.cx_nm < Wn and 0 <= d.cy_nm < Hn)})
    area_nm2 = Hn * Wn
    vol = sum(math.pi * d.diameter_nm**3 / 6 for d in defects
              if d.kind == CAVITY and 0 <= d.cx_nm < Wn and 0 <= d.cy_nm < Hn)
    density = {name: sum(1 for d in defects if d.kind == k and 0 <= d.cx_nm < Wn and 0 <= d.cy_nm < Hn)
               / (area_nm2 * 1e-6) for k, name in ((CAVITY, "cavity"), (LOOP, "loop"))}
    return {
        "task": "defects",
        "class_names": CLASS_NAMES,
        "defects": rows,
        "foil_thickness_nm": p.foil_thickness_nm,
        "defocus_nm": p.defocus_nm,
        "swelling": vol / max(area_nm2 * p.foil_thickness_nm - vol, 1e-9),
        "volume_fraction": vol / (area_nm2 * p.foil_thickness_nm),
        "density_per_um2": density,
        "params": asdict(p),
    }


def class_map(frame: SimFrame) -> np.ndarray:
    """The class map (0 = background, 1 = cavity, 2 = loop) of a defects frame's instance labels."""
    lut = np.zeros(int(frame.instances.max()) + 1, np.uint8)
    for row in frame.truth["defects"]:
        lut[row["instance"]] = CLASS_NAMES.index(row["class"])
    return lut[frame.instances]


def simulate_foil(params: FoilParams, rng: np.random.Generator | int | None = None) -> SimFrame:
    """Simulate one BF-TEM frame of an irradiated foil (see the module doc)."""
    rng = np.random.default_rng(rng)
    p = params
    defects = place_defects(p, rng)
    cav, loops, inst, ids = render_defects(defects, p)
    bg, _ = foil_background(p, rng)
    img = bg * (1.0 + p.mass_contrast * cav + _fresnel(cav, p))
    img *= np.clip(1.0 - p.loop_contrast * loops - distractors(p, rng), 0.05, None)
    if p.contamination > 0:
        img *= 1.0 - p.contamination * np.clip(_smooth_field(p.shape, 60.0 / p.nm_per_px, rng) + 1.0, 0, None)
    img = _drift_blur(img, p.drift_nm / p.nm_per_px, rng)
    sig = p.blur_nm / p.nm_per_px
    if sig > 0.25:
        img = ndi.gaussian_filter(img, sig, truncate=3.0)
    counts = rng.poisson(np.clip(img, 0, None) * p.dose).astype(np.float32)
    counts += rng.normal(0.0, p.read_noise, counts.shape).astype(np.float32)
    out = np.clip(np.rint(p.offset + counts * np.float32(p.gain * 200.0 / max(p.dose, 1.0))), 0, 65535)
    frame = SimFrame(image=out.astype(np.uint16), instances=inst, nm_per_px=p.nm_per_px, truth=_truth(defects, ids, inst, p))
    return frame


# ---------------------------------------------------------------------------------------------------------------
# domain-shift groups (copilot.sim.domains, task "defects"): each leaves the in-domain draws one way only

def _outside_focus(rng: np.random.Generator) -> float:
    """Under-focus far beyond the trained range (wide fringes) or close to focus (cavities barely visible)."""
    return -_log_uniform(rng, 2500.0, 4000.0) if rng.random() < 0.5 else -_log_uniform(rng, 120.0, 200.0)


DEFECT_SHIFTS = {
    "in-domain": lambda rng: {},
    "over-focus": lambda rng: {"defocus_nm": _log_uniform(rng, 300.0, 1500.0)},
    "defocus": lambda rng: {"defocus_nm": _outside_focus(rng)},
    "thickness": lambda rng: {"foil_thickness_nm": float(rng.uniform(170.0, 250.0))},
    "dose": lambda rng: {"dose": _log_uniform(rng, 15.0, 45.0)},
    "magnification": lambda rng: {"nm_per_px": (_log_uniform(rng, 0.15, 0.25) if rng.random() < 0.5
                                                else _log_uniform(rng, 0.9, 1.1))},
    "loop-density": lambda rng: {"loop_density_per_um2": _log_uniform(rng, 3000.0, 6000.0)},
}
DEFECT_GROUPS = tuple(DEFECT_SHIFTS)


def defect_domain_params(group: str, rng: np.random.Generator, size_px: int = 512) -> FoilParams:
    """In-domain draws (``random_foil_params``) with the group's changes applied."""
    return replace(random_foil_params(rng, size_px=size_px), **DEFECT_SHIFTS[group](rng))
