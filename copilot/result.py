"""Result: the one type that leaves reliability — the document plus its binary parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timezone

import numpy as np

from copilot.analysis.measurements import FrameMeasurements
from copilot.frame import Frame
from copilot.document.schema import (
    Calibration,
    ImageInfo,
    Measurements,
    ModelRef,
    Reliability,
    ResultDocument,
    SeriesSummary,
    Verdict,
)


@dataclass
class Result:
    doc: ResultDocument
    parts: dict[str, np.ndarray | bytes] = field(default_factory=dict)
    arrived_at: float = 0.0
    frame: Frame | None = field(default=None, repr=False)  # for the preview; never serialized
    frame_labels: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # --save-masks; never serialized


def measurements_document(fm: FrameMeasurements) -> Measurements:
    """Analysis' own measurements (``copilot.analysis.measurements``) as the document's ``measurements``."""
    return Measurements.model_validate(fm.summary, from_attributes=True)


def build_result(
    fm: FrameMeasurements,
    reliability: Reliability,
    verdict: Verdict,
    timings_ms: dict[str, float],
    *,
    series: SeriesSummary | None = None,
    uncertainty: np.ndarray | None = None,
    send_labels: bool = True,
) -> Result:
    seg = fm.segmentation
    frame = seg.frame
    doc = ResultDocument(
        stream=frame.stream,
        frame_id=frame.frame_id,
        origin=frame.origin,
        acquired_at=frame.acquired_at,
        processed_at=datetime.now(timezone.utc),
        calibration=Calibration(
            nm_per_px=frame.nm_per_px,
            calibrated=frame.calibrated,
            source=frame.calibration_source,
            length_unit=fm.summary.length_unit,
        ),
        image=ImageInfo(
            height_px=frame.shape[0],
            width_px=frame.shape[1],
            dtype=str(frame.pixels.dtype),
            data_bar_rows=int(frame.meta.get("data_bar_rows", 0)),
            signal=frame.meta.get("signal"),
            grid_frame_px=seg.frame_px_per_px,
        ),
        model=ModelRef(name=seg.model_name, version=seg.model_version, engine=seg.engine),
        timings_ms=timings_ms,
        measurements=measurements_document(fm),
        series=series,
        reliability=reliability,
        verdict=verdict,
    )
    parts: dict[str, np.ndarray | bytes] = {}
    if send_labels:
        dtype = np.uint16 if fm.instances.max(initial=0) < 65536 else np.uint32
        parts["labels"] = np.ascontiguousarray(fm.instances.astype(dtype))
    if uncertainty is not None:
        # normalized entropy, 0 (certain) … 255 (uniform over the classes), on the analysis grid
        parts["uncertainty"] = np.round(np.clip(uncertainty, 0, 1) * 255).astype(np.uint8)
    return Result(doc=doc, parts=parts, frame=frame, frame_labels=fm.frame_labels)
