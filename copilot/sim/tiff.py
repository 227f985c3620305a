"""Calibrated TIFF output for simulated frames (what a microscope PC would drop into an acquisition folder)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import tifffile

from copilot.sim.stem import SimFrame


def write_tiff(path: str | Path, frame: SimFrame, acquired_at: datetime | None = None) -> Path:
    """Write ``frame.image`` as an ImageJ-style TIFF calibrated in nm, atomically.

    A generic reader sees XResolution/YResolution in pixels per nm and ``unit=nm`` in the ImageJ description
    (``tifffile.TiffFile(p).imagej_metadata["unit"]``); acquisition time is in the DateTime tag and, with the
    ground-truth summary, in the ImageJ description as ``copilot_sim`` (JSON). The file is written under a hidden
    temporary name in the same folder and renamed into place, so a folder watcher never sees a partial file.
    """
    path = Path(path)
    acquired_at = acquired_at or datetime.now(timezone.utc)
    px_per_nm = 1.0 / frame.nm_per_px
    sim_meta = {
        "acquired_at": acquired_at.isoformat(),
        "nm_per_px": frame.nm_per_px,
        "n_particles": frame.truth.get("n_particles"),
        "d50_nm": frame.truth.get("d50_nm"),
        "t_s": frame.truth.get("t_s"),
    }
    tmp = path.with_name(f".{path.name}.partial")
    tifffile.imwrite(
        tmp,
        frame.image,
        imagej=True,
        resolution=(px_per_nm, px_per_nm),
        metadata={"unit": "nm", "copilot_sim": json.dumps(sim_meta)},
        datetime=acquired_at.strftime("%Y:%m:%d %H:%M:%S"),
    )
    os.replace(tmp, path)
    return path
