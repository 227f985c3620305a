"""Result: the one type that leaves reliability — the document plus its binary parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.series import PooledEstimate, SeriesResult, SizeCounts
from copilot.analysis.stats import sufficiency
from copilot.frame import Frame
from copilot.document.schema import (
    Alert,
    Calibration,
    Histogram,
    ImageInfo,
    Interval,
    ModelRef,
    Reliability,
    ResultDocument,
    SeriesSummary,
    Sufficiency,
    Trend,
    Verdict,
)


@dataclass
class Result:
    doc: ResultDocument
    parts: dict[str, np.ndarray | bytes] = field(default_factory=dict)
    arrived_at: float = 0.0
    frame: Frame | None = field(default=None, repr=False)  # for the preview; never serialized


def build_result(
    fm: FrameMeasurements,
    reliability: Reliability,
    verdict: Verdict,
    timings_ms: dict[str, float],
    *,
    series: SeriesResult | SeriesSummary | None = None,
    session_epoch: str | None = None,
    uncertainty: np.ndarray | None = None,
    send_labels: bool = True,
) -> Result:
    seg = fm.segmentation
    frame = seg.frame
    if isinstance(series, SeriesResult):
        series = series_document(series)
    doc = ResultDocument(
        stream=frame.stream,
        session_epoch=session_epoch,
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
        measurements=fm.summary,
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
    return Result(doc=doc, parts=parts, frame=frame)


# -- series (analysis' plain types) → document -----------------------------------------------------------------
def series_document(r: SeriesResult) -> SeriesSummary:
    return SeriesSummary(
        frames=r.frames,
        frames_excluded=r.frames_excluded,
        window_frames=r.window_frames,
        span_min=r.span_min,
        trends=[Trend(quantity=t.quantity, name=t.name, unit=t.unit, slope=t.slope, n_frames=t.n_frames,
                      slope_ci=Interval(low=t.low, high=t.high, level=t.level, method="OLS t-interval")
                      if t.low is not None and t.high is not None else None,
                      last_value=t.last_value, trending=t.trending) for t in r.trends],
        rolling_psd=_histogram(r.rolling_psd),
        cumulative_psd=_histogram(r.cumulative_psd),
        sufficiency=pooled_sufficiency(r.pooled) if r.pooled is not None else None,
        alerts=[Alert(kind=a.kind, severity=a.severity, quantity=a.quantity, message=a.message, value=a.value,
                      frame_id=a.frame_id, acquired_at=a.acquired_at) for a in r.alerts],
    )


def pooled_sufficiency(p: PooledEstimate) -> Sufficiency:
    """Sufficiency of the pooled estimate; never "enough" when the frame itself sized too few objects."""
    ci = Interval(low=p.low, high=p.high, method="pooled over the window") if p.low is not None else None
    s = sufficiency(p.quantity, p.estimate, ci, p.n_objects, p.target_rel, p.objects_per_frame, scope="series")
    return s if p.enough_allowed or not s.enough else s.model_copy(update={"enough": False})


def _histogram(c: SizeCounts | None) -> Histogram | None:
    return None if c is None else Histogram(edges=list(c.edges), counts=list(c.counts), scale=c.scale)
