"""What every simulated acquisition shares: the frame's geometry, and for scanned-beam instruments (STEM, SEM) the
scan and detector parameters that ``copilot.sim.stem.acquire`` reads. The specimen's parameter classes extend
these (``SimParams``, ``SemParams``, ``GrainSemParams``; the TEM foil of ``copilot.sim.irradiation`` has a camera,
not a scan, and takes the geometry only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameGeometry:
    size_px: int | tuple[int, int] = 512  # edge, or (rows, columns)
    nm_per_px: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        s = self.size_px
        return (int(s), int(s)) if np.isscalar(s) else (int(s[0]), int(s[1]))


@dataclass(frozen=True)
class ScanInstrument(FrameGeometry):
    """A scanned probe and its detector (defaults: a STEM; an SEM's specimen class overrides the first four)."""

    probe_blur_nm: float = 0.15  # Gaussian sigma of probe + focus
    dose: float = 60.0  # expected counts per pixel at unit signal
    line_jitter_px: float = 0.4  # std of per-line horizontal jitter (px, rounded)
    detector_offset: float = 1000.0
    read_noise: float = 0.5  # counts
    scanline_noise: float = 0.01  # std of per-line additive offset (signal units)
    drift_shear: float = 0.0  # px of x shift per row (linear drift during the scan)
    detector_full_scale: float = 30000.0  # output value of unit signal (before noise)
    scan_wobble_px: float = 0.0  # amplitude of a periodic line displacement (mains pick-up), px
    scan_wobble_period_px: float = 40.0  # its period in scan lines
    charging: float = 0.0  # amplitude of charging streaks (signal units); see copilot.sim.artifacts
    charging_decay_px: float = 60.0  # length of the streak tails along the scan direction
