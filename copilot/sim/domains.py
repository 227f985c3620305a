"""Named domain-shift groups: each draws simulator frames whose imaging conditions leave the training range in one
way only, so accuracy and reliability can be measured per group (leave-one-group-out).

``in-domain`` draws from the training distribution itself.

>>> f = sample_domain_frame("defocus", np.random.default_rng(0), size_px=128)
>>> f.truth["domain"], f.image.shape
('defocus', (128, 128))
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from copilot.sim.stem import SimFrame, SimParams, random_params, simulate_frame


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _invert(frame: SimFrame) -> SimFrame:
    img = frame.image.astype(np.int64)
    inverted = (img.max() + img.min() - img).astype(np.uint16)
    return replace(frame, image=inverted)


# group name → (parameter changes, optional post-processing of the acquired frame)
PARAM_SHIFTS: dict[str, Callable[[np.random.Generator], dict]] = {
    "in-domain": lambda rng: {},
    "dose": lambda rng: {"dose": _log_uniform(rng, 1.0, 6.0)},
    "defocus": lambda rng: {"probe_blur_nm": rng.uniform(0.9, 2.2)},
    "magnification": lambda rng: {"nm_per_px": (_log_uniform(rng, 0.03, 0.07) if rng.random() < 0.5
                                                else _log_uniform(rng, 0.7, 1.2))},
    "drift": lambda rng: {"drift_shear": float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)),
                          "line_jitter_px": rng.uniform(1.5, 3.0), "scanline_noise": rng.uniform(0.04, 0.1)},
    "contrast-inversion": lambda rng: {},
}
POST: dict[str, Callable[[SimFrame], SimFrame]] = {"contrast-inversion": _invert}
DOMAIN_GROUPS = tuple(PARAM_SHIFTS)


def domain_params(group: str, rng: np.random.Generator, size_px: int = 512) -> SimParams:
    if group not in PARAM_SHIFTS:
        raise KeyError(f"unknown domain group {group!r}; known: {', '.join(DOMAIN_GROUPS)}")
    return replace(random_params(rng, size_px=size_px), **PARAM_SHIFTS[group](rng))


def sample_domain_frame(group: str, rng: np.random.Generator, size_px: int = 512) -> SimFrame:
    """One simulated frame of ``group`` with exact instance masks; ``truth["domain"]`` names the group."""
    frame = simulate_frame(domain_params(group, rng, size_px), rng)
    frame = POST.get(group, lambda f: f)(frame)
    frame.truth["domain"] = group
    return frame
