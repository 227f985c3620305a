"""Named domain-shift groups: each draws simulator frames whose imaging conditions leave the training range in one
way only, so accuracy and reliability can be measured per group (leave-one-group-out).

Groups are per task (``groups_for(task)``):

* particles (HAADF-STEM / BF-TEM nanoparticles, ``copilot.sim.stem``): ``in-domain`` (HAADF and BF-TEM, equal odds),
  ``dose`` (1-6 counts/px), ``defocus`` (probe blur 0.9-2.2 nm), ``magnification`` (nm/px outside 0.1-0.5),
  ``drift`` (drift shear, line jitter, scan wobble, scan-line offsets), ``contrast-inversion`` (grey scale
  inverted), ``charging`` (charging streaks and bands). Scan artefacts (drift, charging) only exist in a scanned
  image: those groups draw HAADF-STEM frames.
* defects (BF-TEM of irradiated foils, ``copilot.sim.irradiation``): ``in-domain`` (under-focus), ``over-focus``,
  ``defocus`` (far under-focus or near focus), ``thickness`` (thick foil), ``dose``, ``magnification``,
  ``loop-density`` (dense loops); ``instances`` holds defect instances (classes in ``truth["defects"]``).
* phases (SEM microstructures, ``copilot.sim.sem``): ``in-domain`` (SE detector, two-phase and porous),
  ``dose``, ``defocus`` (beam blur), ``magnification`` (nm/px outside 0.5-2), ``drift``, ``charging``,
  ``detector`` (BSE instead of SE: atomic-number and channelling contrast instead of topography) and ``etching``
  (two-phase frames as-polished without relief, texture or grooves, or over-etched with deep wide grooves and a
  strong relief, raised or recessed). Contrast
  inversion is a particles group only (HAADF vs BF-TEM); SEM micrographs are not shown inverted.

``DOMAIN_GROUPS`` is the particles tuple (kept for callers written before the phases task existed).

``sample_domain_frame`` returns a ``SimFrame``: for particles ``instances`` holds particle instance labels
(0 = support); for phases it holds the class map (0 = matrix/ligament, 1 = second phase, 2 = pore; names in
``truth["class_names"]``, fractions in ``truth["fractions"]``; ``frame.class_map`` is the same array).
``truth["domain"]`` names the group and ``truth["task"]`` the task.

>>> f = sample_domain_frame("defocus", np.random.default_rng(0), size_px=128)
>>> f.truth["domain"], f.image.shape
('defocus', (128, 128))
>>> g = sample_domain_frame("detector", np.random.default_rng(0), size_px=128, task="phases")
>>> g.truth["task"], g.truth["params"]["detector"]
('phases', 'bse')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from copilot.sim.stem import SimFrame, SimParams, random_params, simulate_frame

TASKS = ("particles", "phases", "grains", "defects")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _invert(frame: SimFrame) -> SimFrame:
    img = frame.image.astype(np.int64)
    inverted = (img.max() + img.min() - img).astype(np.uint16)
    return replace(frame, image=inverted)


def _outside(rng: np.random.Generator, lo: float, hi: float, below: tuple[float, float],
             above: tuple[float, float]) -> float:
    """nm/px outside the trained range [lo, hi]: finer (``below``, factors of lo) or coarser (``above``, of hi)."""
    if rng.random() < 0.5:
        return _log_uniform(rng, lo * below[0], lo * below[1])
    return _log_uniform(rng, hi * above[0], hi * above[1])


# ---------------------------------------------------------------------------------------------------------------
# particles: group → (modality, parameter changes); POST: post-processing of the acquired frame

PARAM_SHIFTS: dict[str, Callable[[np.random.Generator], dict]] = {
    "in-domain": lambda rng: {},
    "dose": lambda rng: {"dose": _log_uniform(rng, 1.0, 6.0)},
    "defocus": lambda rng: {"probe_blur_nm": rng.uniform(0.9, 2.2)},
    "magnification": lambda rng: {"nm_per_px": (_log_uniform(rng, 0.03, 0.07) if rng.random() < 0.5
                                                else _log_uniform(rng, 0.7, 1.2))},
    "drift": lambda rng: {"drift_shear": float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)),
                          "line_jitter_px": rng.uniform(1.5, 3.0), "scanline_noise": rng.uniform(0.04, 0.1),
                          "scan_wobble_px": rng.uniform(0.0, 2.0), "scan_wobble_period_px": rng.uniform(15, 80)},
    "contrast-inversion": lambda rng: {},
    "charging": lambda rng: {"charging": rng.uniform(0.1, 0.35), "charging_decay_px": _log_uniform(rng, 15, 150)},
}
POST: dict[str, Callable[[SimFrame], SimFrame]] = {"contrast-inversion": _invert}
MODALITY: dict[str, str] = {"drift": "haadf", "charging": "haadf"}  # scan artefacts: scanned images only
DOMAIN_GROUPS = tuple(PARAM_SHIFTS)
PARTICLE_GROUPS = DOMAIN_GROUPS

# ---------------------------------------------------------------------------------------------------------------
# phases (SEM): group → parameter changes on copilot.sim.sem.random_sem_params

PHASE_SHIFTS: dict[str, Callable[[np.random.Generator], dict]] = {
    "in-domain": lambda rng: {},
    "dose": lambda rng: {"dose": _log_uniform(rng, 1.0, 5.0)},
    "defocus": lambda rng: {"probe_blur_nm": rng.uniform(4.0, 9.0)},
    "magnification": lambda rng: {"nm_per_px": _outside(rng, 0.5, 2.0, (0.3, 0.6), (1.6, 2.5))},
    "drift": lambda rng: {"drift_shear": float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)),
                          "line_jitter_px": rng.uniform(1.5, 3.0), "scanline_noise": rng.uniform(0.04, 0.1),
                          "scan_wobble_px": rng.uniform(0.0, 2.0), "scan_wobble_period_px": rng.uniform(15, 80)},
    "charging": lambda rng: {"charging": rng.uniform(0.2, 0.6), "charging_decay_px": _log_uniform(rng, 15, 150)},
    "detector": lambda rng: {"detector": "bse"},
    # etching acts on the grain structure: two-phase frames only
    "etching": lambda rng: ({"structure": "two-phase", "etch_depth_nm": 0.0, "relief_nm": 0.0, "grain_etch_nm": 0.0,
                             "phase_roughness_nm": 0.0}
                            if rng.random() < 0.5 else
                            {"structure": "two-phase", "etch_depth_nm": rng.uniform(60.0, 120.0),
                             "groove_width_nm": rng.uniform(25.0, 45.0),
                             "relief_nm": float(rng.choice([-1, 1]) * rng.uniform(40.0, 80.0)),
                             "phase_roughness_nm": rng.uniform(6.0, 12.0)}),
}
PHASE_GROUPS = tuple(PHASE_SHIFTS)

from copilot.sim.grain_frames import GRAIN_GROUPS  # noqa: E402 (grains: etched polycrystals, own module)

GROUPS_BY_TASK: dict[str, tuple[str, ...]] = {"particles": PARTICLE_GROUPS, "phases": PHASE_GROUPS,
                                             "grains": GRAIN_GROUPS}
GROUPS_BY_TASK["defects"] = ("in-domain", "over-focus", "defocus", "thickness", "dose", "magnification",
                             "loop-density")  # copilot.sim.irradiation.DEFECT_SHIFTS


def groups_for(task: str = "particles") -> tuple[str, ...]:
    """The domain groups of a task ("particles" | "phases"); the first is always ``in-domain``.

    >>> groups_for("phases")[0], "detector" in groups_for("phases"), "detector" in groups_for("particles")
    ('in-domain', True, False)
    """
    if task not in GROUPS_BY_TASK:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return GROUPS_BY_TASK[task]


def domain_params(group: str, rng: np.random.Generator, size_px: int = 512, task: str = "particles",
                  modality: str | None = None) -> Any:
    """The simulator parameters of one frame of ``group``: ``SimParams`` (particles) or ``SemParams`` (phases).

    ``modality`` (particles only) forces "haadf" or "bf-tem"; by default the group decides (in-domain: either)."""
    groups = groups_for(task)
    if group not in groups:
        raise KeyError(f"unknown domain group {group!r} for task {task!r}; known: {', '.join(groups)}")
    if task == "defects":
        from copilot.sim.irradiation import defect_domain_params

        return defect_domain_params(group, rng, size_px)
    if task == "grains":
        from copilot.sim.grain_frames import grain_domain_params

        return grain_domain_params(group, rng, size_px)
    if task == "phases":
        from copilot.sim.sem import random_sem_params

        return replace(random_sem_params(rng, size_px=size_px), **PHASE_SHIFTS[group](rng))
    mod = modality or MODALITY.get(group, "any")
    return replace(random_params(rng, size_px=size_px, modality=mod), **PARAM_SHIFTS[group](rng))


def sample_domain_frame(group: str, rng: np.random.Generator, size_px: int = 512, task: str = "particles",
                        modality: str | None = None, params: Any = None) -> SimFrame:
    """One simulated frame of ``group`` for ``task`` with exact ground truth; ``truth["domain"]`` names the group.

    particles: ``instances`` = particle instance labels; phases: ``instances`` = class map (see the module doc).
    ``params``: the imaging parameters to use (``domain_params``), e.g. one set for every frame of a stream — the
    specimen (particles, microstructure, noise) is new on every call; default: drawn for this frame.
    """
    params = domain_params(group, rng, size_px, task, modality) if params is None else params
    if task == "defects":
        from copilot.sim.irradiation import simulate_foil

        frame = simulate_foil(params, rng)
    elif task == "grains":
        from copilot.sim.grain_frames import simulate_grains

        frame = simulate_grains(params, rng)
    elif task == "phases":
        from copilot.sim.sem import simulate_sem

        frame = simulate_sem(params, rng)
    else:
        assert isinstance(params, SimParams)
        frame = simulate_frame(params, rng)
        frame = POST.get(group, lambda f: f)(frame)
    frame.truth["domain"] = group
    return frame
