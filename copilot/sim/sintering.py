"""In-situ sintering: the same field of view over time, particles growing at a known rate, slow stage drift.

Every particle's semi-axes grow as ``r(t) = r0 + rate * t`` (Ostwald-like ripening seen as a constant radius growth
rate, ``growth_nm_per_min``), so the mean equivalent radius grows with slope ``growth_nm_per_min`` and a later
analysis can be checked against it. Particles are placed with enough room to grow for ``duration_s`` without
touching (pairs placed touching stay touching).

>>> run = SinteringRun(seed=1, params=SimParams(size_px=128, nm_per_px=0.3), growth_nm_per_min=1.0, interval_s=30)
>>> [round(s.t_s) for s in run.frames(3)]
[0, 30, 60]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np

from copilot.sim.stem import (SimFrame, SimParams, _truth, acquire, form_image, particle_strengths, place_particles,
                              render_particles, support_texture)


@dataclass
class TimedFrame:
    """One frame of a run: seconds since the start, wall-clock acquisition time, the simulated frame."""

    index: int
    t_s: float
    acquired_at: datetime
    frame: SimFrame


class SinteringRun:
    """Successive frames of one field of view while particles grow.

    ``drift_nm_per_s`` is the stage drift (x, y) between frames; the support moves with the particles.
    """

    def __init__(self, seed: int = 0, params: SimParams | None = None, growth_nm_per_min: float = 0.2,
                 interval_s: float = 10.0, duration_s: float = 1800.0,
                 drift_nm_per_s: tuple[float, float] = (0.01, -0.005), start: datetime | None = None) -> None:
        self.seed = seed
        self.params = params if params is not None else SimParams(touching_fraction=0.0)
        self.growth_nm_per_min = float(growth_nm_per_min)
        self.interval_s = float(interval_s)
        self.duration_s = float(duration_s)
        self.drift_nm_per_s = (float(drift_nm_per_s[0]), float(drift_nm_per_s[1]))
        self.start = start or datetime.now(timezone.utc)
        rng = np.random.default_rng(seed)
        H, W = self.params.shape
        nmpp = self.params.nm_per_px
        self._margin_px = int(np.ceil(np.hypot(*self.drift_nm_per_s) * self.duration_s / nmpp)) + 2
        m = self._margin_px
        growth_total = max(self.growth_nm_per_min, 0.0) * self.duration_s / 60.0
        ext = ((H + 2 * m) * nmpp, (W + 2 * m) * nmpp)
        self.particles = place_particles(self.params, rng, extent_nm=ext, origin_nm=(-m * nmpp, -m * nmpp),
                                         extra_gap_nm=2 * growth_total)
        self._support = support_texture((H + 2 * m, W + 2 * m), nmpp, self.params, rng)
        self._strengths = particle_strengths(len(self.particles), self.params, rng)
        self._rng = rng

    def radius_delta_nm(self, t_s: float) -> float:
        return self.growth_nm_per_min * t_s / 60.0

    def frame_at(self, t_s: float, rng: np.random.Generator | None = None) -> SimFrame:
        """The field of view at time ``t_s`` (noise from ``rng`` or the run's own generator)."""
        rng = rng if rng is not None else self._rng
        p = self.params
        H, W = p.shape
        nmpp = p.nm_per_px
        dx_nm, dy_nm = self.drift_nm_per_s[0] * t_s, self.drift_nm_per_s[1] * t_s
        # the stage drifts by (dx, dy): content moves by -(dx, dy) in the frame; support follows in whole pixels
        delta = self.radius_delta_nm(t_s)
        parts = [q.grown(delta) for q in self.particles]
        sx, sy = int(round(dx_nm / nmpp)), int(round(dy_nm / nmpp))
        m = self._margin_px
        ys, xs = m + sy, m + sx
        support = self._support[ys:ys + H, xs:xs + W]
        signal, inst = render_particles(parts, (H, W), nmpp, p, offset_nm=(sy * nmpp, sx * nmpp),
                                        strengths=self._strengths)
        signal = form_image(signal, support, p)
        image, inst = acquire(signal, inst, p, rng)
        truth = _truth(parts, inst, p)
        truth.update(t_s=float(t_s), growth_nm_per_min=self.growth_nm_per_min, radius_delta_nm=delta,
                     drift_px=(sx, sy))
        return SimFrame(image=image, instances=inst, nm_per_px=nmpp, truth=truth)

    def frames(self, n: int | None = None) -> Iterator[TimedFrame]:
        """Yield frames every ``interval_s`` of simulated time (not wall-clock: see copilot.sim.microscope)."""
        n = n if n is not None else int(self.duration_s // self.interval_s) + 1
        for i in range(n):
            t = i * self.interval_s
            yield TimedFrame(i, t, self.start + timedelta(seconds=t), self.frame_at(t))

    __iter__ = frames
