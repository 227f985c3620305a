"""EdsCube: an EDS spectrum image (counts per pixel and channel) with its energy axis and pixel size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copilot.errors import UserError

_LENGTH_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "mm": 1e6, "m": 1e9, "Å": 0.1, "A": 0.1}


@dataclass(frozen=True)
class EdsCube:
    """``counts`` is (height, width, channels); channel i is at ``offset_kev + i · scale_kev``."""

    counts: np.ndarray
    offset_kev: float
    scale_kev: float
    nm_per_px: float | None = None
    elements: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self):
        if self.counts.ndim != 3 or min(self.counts.shape) < 1:
            raise ValueError(f"an EDS cube is (height, width, channels), got shape {self.counts.shape}")
        if not self.scale_kev > 0:
            raise ValueError(f"energy scale must be positive, got {self.scale_kev} keV/channel")

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape[:2]

    @property
    def energies(self) -> np.ndarray:
        return self.offset_kev + self.scale_kev * np.arange(self.counts.shape[2])

    def channel(self, energy_kev: float) -> int:
        return int(round((energy_kev - self.offset_kev) / self.scale_kev))


class EdsReadError(UserError):
    """The file holds no EDS spectrum image we can read."""


def read_eds(path: str | Path) -> EdsCube:
    """The EDS spectrum image of a Bruker BCF or a Velox/EMD file (rosettasciio), counts kept as stored."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".bcf":
            from rsciio.bruker import file_reader

            signals = file_reader(str(path), select_type="spectrum_image")
        elif suffix == ".emd":
            from rsciio.emd import file_reader

            signals = file_reader(str(path))
        else:
            raise EdsReadError(f"{path.name}: EDS spectrum images are read from .bcf or .emd files, not {suffix!r}")
    except EdsReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
        raise EdsReadError(f"{path.name}: cannot read an EDS spectrum image ({type(exc).__name__}: {exc})") from exc
    for sig in signals:
        axes = sig.get("axes", [])
        data = sig.get("data")
        if data is None or np.ndim(data) != 3 or len(axes) != 3:
            continue
        energy = axes[-1]
        if str(energy.get("units", "")).lower() not in ("kev", "ev"):
            continue
        to_kev = 1.0 if str(energy["units"]).lower() == "kev" else 1e-3
        unit = str(axes[0].get("units", ""))
        scale = axes[0].get("scale")
        nm = float(scale) * _LENGTH_TO_NM[unit] if unit in _LENGTH_TO_NM and scale else None
        sample = sig.get("metadata", {}).get("Sample", {})
        elements = tuple(sample.get("elements", ()))
        return EdsCube(np.asarray(data), float(energy.get("offset", 0.0)) * to_kev, float(energy["scale"]) * to_kev,
                       nm, elements, str(path))
    raise EdsReadError(f"{path.name}: no EDS spectrum image (3-D signal with an energy axis) in the file")
