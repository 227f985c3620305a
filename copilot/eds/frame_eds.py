"""EDS per frame in the daemon: when the config has an ``[eds]`` section and a frame comes from a file that also
holds an EDS spectrum image (Bruker .bcf, Velox .emd), its inclusions are analysed beside the image's segmentation.

Objects are segmented from the EDS signal itself (``segment_inclusions``: the non-matrix lines' counts above the
field), so the classes do not depend on the image model. Frames from other files, or from the socket, carry no EDS
and get no inclusions section; a file whose EDS cube cannot be read gets a one-line note instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copilot.eds.cube import EdsReadError, read_eds
from copilot.eds.inclusions import InclusionReport, analyse_inclusions, segment_inclusions
from copilot.eds.settings import EdsSettings

EDS_SUFFIXES = (".bcf", ".emd")


@dataclass(frozen=True)
class FrameInclusions:
    """One frame's inclusions (``report``), or why there are none (``unavailable``)."""

    report: InclusionReport | None
    eds_shape: tuple[int, int] | None = None
    counts_per_px: float | None = None
    unavailable: str | None = None


def frame_inclusions(origin: str, cfg: EdsSettings) -> FrameInclusions | None:
    """The inclusions of the EDS spectrum image in the file ``origin``; None for a file kind without EDS."""
    path = Path(origin)
    if path.suffix.lower() not in EDS_SUFFIXES or not path.is_file():
        return None
    try:
        cube = read_eds(path)
        labels = segment_inclusions(cube, cfg)
    except (EdsReadError, ValueError) as exc:
        return FrameInclusions(None, unavailable=str(exc))
    report = analyse_inclusions(cube, labels, cfg)
    h, w = cube.shape
    step = max(1, int(np.sqrt(h * w / 4096)))  # the mean counts per pixel from a subsample of ≥ 4096 spectra
    counts = float(cube.counts[::step, ::step].sum(dtype=np.int64)) / cube.counts[::step, ::step, 0].size
    return FrameInclusions(report, (h, w), counts)
