"""FrameMeasurements: the one type that leaves analysis and enters reliability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from copilot.analysis.morphology import Morphology
from copilot.inference.segmentation import Segmentation
from copilot.document.schema import Measurements


@dataclass(frozen=True)
class FrameMeasurements:
    """What analysis found in one frame: the instance labels on the segmentation grid and the summary document."""

    segmentation: Segmentation
    instances: np.ndarray
    summary: Measurements
    morphology: Morphology | None = None  # phases: widths and intercepts (copilot.result documents it)
