"""A second particle simulator, unlike ``copilot.sim.stem`` on purpose (the bench's "unseen microscope").

Faceted particles (triangles, hexagons, squares, rods) instead of ellipses, flat-topped mass-thickness contrast;
a phase-contrast-like transfer (a defocus ring pattern ``cos(π λ Δf k²)`` times an envelope) instead of a Gaussian
probe; an amorphous support of 1/f noise; electron-counting noise with a detector gain, correlated row noise and
hot pixels instead of Poisson + read noise. Exact instance masks come with every frame.

    >>> f = other_frame(np.random.default_rng(0), 128)
    >>> f.image.shape, f.instances.max() > 0
    ((128, 128), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.draw import polygon


@dataclass
class OtherFrame:
    image: np.ndarray  # uint16
    nm_per_px: float
    instances: np.ndarray  # int32, 0 = support
    d50_nm: float  # median ECD of the particles not cut by the frame edge
    inner: int  # how many of those
    inner_ecd_nm: dict[int, float]  # their ECDs (nm) by instance label


def _shape(rng: np.random.Generator, r_px: float) -> np.ndarray:
    kind = rng.choice(["tri", "hex", "square", "rod"])
    if kind == "rod":
        t = np.array([[-2.2, -0.7], [2.2, -0.7], [2.2, 0.7], [-2.2, 0.7]]) * r_px / 1.4
    else:
        n = {"tri": 3, "hex": 6, "square": 4}[kind]
        a = np.arange(n) * 2 * np.pi / n
        t = np.stack([np.cos(a), np.sin(a)], 1) * r_px * (1.25 if n == 3 else 1.0)
    th = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return t @ rot.T


def other_frame(rng: np.random.Generator, size_px: int = 512, nm_per_px: float | None = None) -> OtherFrame:
    nm = nm_per_px or float(np.exp(rng.uniform(np.log(0.15), np.log(0.4))))
    d50 = float(np.exp(rng.uniform(np.log(4.0), np.log(12.0))))
    inst = np.zeros((size_px, size_px), np.int32)
    target_fraction = rng.uniform(0.05, 0.2)
    n = 0
    for _ in range(4000):
        if np.count_nonzero(inst) > target_fraction * inst.size:
            break
        d = d50 * float(np.exp(rng.normal(0, 0.3)))
        verts = _shape(rng, d / 2 / nm) + rng.uniform(-5, size_px + 5, 2)
        rr, cc = polygon(verts[:, 1], verts[:, 0], inst.shape)
        if rr.size < 6 or np.any(inst[np.clip(rr, 0, size_px - 1), np.clip(cc, 0, size_px - 1)]):
            continue
        n += 1
        inst[rr, cc] = n
    mass = np.zeros(inst.shape)
    heights = rng.uniform(0.6, 1.0, n + 1)
    heights[0] = 0
    mass = heights[inst]
    k = np.fft.fftfreq(size_px)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    support = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(inst.shape)) / np.maximum(np.sqrt(k2), 2e-3)))
    support = (support - support.mean()) / support.std() * rng.uniform(0.03, 0.08)
    obj = mass + support
    defocus = rng.uniform(0.3, 1.5) * 40.0 * nm  # ring scale in px² units of the transfer
    transfer = np.cos(np.pi * defocus * k2 / nm) * np.exp(-k2 * (rng.uniform(1.0, 3.0) / nm) ** 2 * 0.5)
    img = np.real(np.fft.ifft2(np.fft.fft2(obj) * (0.7 + 0.3 * transfer)))
    signal = 0.15 + 0.8 * img
    if rng.random() < 0.5:  # bright field: particles dark
        signal = 1.0 - signal
    dose = float(np.exp(rng.uniform(np.log(3.0), np.log(40.0))))
    gain = rng.uniform(20, 60)
    counts = rng.poisson(np.clip(signal, 0, None) * dose) * gain
    counts += rng.normal(0, rng.uniform(0.01, 0.05) * dose * gain, (size_px, 1))  # row noise
    hot = rng.random(inst.shape) < 2e-4
    counts[hot] = counts.max()
    image = np.clip(counts + 500, 0, 65535).astype(np.uint16)
    inner = [i for i in range(1, n + 1) if i in set(np.unique(inst[1:-1, 1:-1]))
             and not np.any(inst[[0, -1], :] == i) and not np.any(inst[:, [0, -1]] == i)]
    areas = np.bincount(inst.ravel(), minlength=n + 1)
    ecd = {i: 2 * float(np.sqrt(areas[i] / np.pi)) * nm for i in inner}
    return OtherFrame(image, nm, inst, float(np.median(list(ecd.values()))) if ecd else float("nan"), len(inner), ecd)
