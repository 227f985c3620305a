"""Outcome → Result: the only place where measurements and reliability become the ``copilot.result/1`` document.

``Outcome`` is what the pipeline hands its sink for one frame (measurements, reliability, verdict, series state);
``Result`` is the document plus its binary parts (label mask, uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timezone

import numpy as np

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.series import PooledEstimate, SeriesResult, SizeCounts
from copilot.analysis.stats import sufficiency
from copilot.analysis.morphology import Estimate, Morphology
from copilot.document.schema import (
    Alert,
    Calibration,
    Histogram,
    ImageInfo,
    Inclusion,
    InclusionClassCount,
    InclusionSummary,
    Interval,
    Measurements,
    ModelRef,
    MorphologySummary,
    PhaseMorphology,
    Reliability,
    ResultDocument,
    SeriesSummary,
    Sufficiency,
    Trend,
    Verdict,
)
from copilot.frame import Frame
from copilot.reliability.types import FrameReliability
from copilot.reliability.types import Verdict as FrameVerdict


@dataclass(frozen=True)
class Outcome:
    """One frame, measured and judged: what leaves the measure stage and enters the sink."""

    measurements: FrameMeasurements
    reliability: FrameReliability
    verdict: FrameVerdict
    series: SeriesResult | SeriesSummary | None = None

    @property
    def frame(self) -> Frame:
        return self.measurements.segmentation.frame


@dataclass
class Result:
    doc: ResultDocument
    parts: dict[str, np.ndarray | bytes] = field(default_factory=dict)
    arrived_at: float = 0.0
    frame: Frame | None = field(default=None, repr=False)  # for the preview; never serialized
    frame_labels: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # --save-masks; never serialized


def reliability_document(r: FrameReliability) -> Reliability:
    return Reliability(
        predicted_f1=r.predicted_f1,
        predicted_precision=r.predicted_precision,
        predicted_recall=r.predicted_recall,
        predicted_per_class=dict(r.predicted_per_class),
        image_confidence=r.image_confidence,
        shift_score=r.shift_score,
        shift_window_mmd2=r.shift_window_mmd2,
        quality=r.quality,
        features=r.features,
        embedding=None if r.embedding is None else [round(float(v), 5) for v in r.embedding],
    )


def _interval(e: Estimate | None) -> Interval | None:
    return None if e is None or e.low is None else Interval(low=float(e.low), high=float(e.high), method=e.method)


def _value(e: Estimate | None) -> float | None:
    return None if e is None else float(e.value)


def morphology_document(m: Morphology) -> MorphologySummary:
    """Plain morphology → the document's ``phases.morphology``."""
    return MorphologySummary(
        phases=[
            PhaseMorphology(
                name=p.name, width_samples=p.width_samples,
                width_median=_value(p.width_median), width_median_ci=_interval(p.width_median),
                width_mean=p.width_mean, width_p10=p.width_p10, width_p90=p.width_p90,
                mean_intercept=_value(p.mean_intercept), mean_intercept_ci=_interval(p.mean_intercept),
                mean_free_path=_value(p.mean_free_path), mean_free_path_ci=_interval(p.mean_free_path),
                lamellar_spacing=_value(p.lamellar_spacing), lamellar_spacing_ci=_interval(p.lamellar_spacing),
            )
            for p in m.phases
        ],
        anisotropy=None if m.anisotropy is None or not np.isfinite(m.anisotropy) else float(m.anisotropy),
        orientation_deg=m.orientation_deg,
        line_spacing_px=m.line_spacing_px,
        n_angles=m.n_angles,
    )


def measurements_document(fm: FrameMeasurements) -> Measurements:
    """Analysis' own measurements (``copilot.analysis.measurements``) as the document's ``measurements``, with the
    phase morphology added when it was measured."""
    doc = Measurements.model_validate(fm.summary, from_attributes=True)
    if fm.inclusions is not None:
        doc = doc.model_copy(update={"inclusions": inclusions_document(fm.inclusions)})
    if fm.morphology is None or doc.phases is None:
        return doc
    return doc.model_copy(update={"phases": doc.phases.model_copy(update={"morphology": morphology_document(fm.morphology)})})


def inclusions_document(fi) -> InclusionSummary:
    """``copilot.eds.frame_eds.FrameInclusions`` → the document's ``measurements.inclusions``."""
    r = fi.report
    if r is None:
        from copilot.eds.inclusions import SEMI_QUANT

        return InclusionSummary(basis="atomic", note=SEMI_QUANT, unavailable=fi.unavailable)
    return InclusionSummary(
        basis=r.basis, note=r.note, eds_shape=list(fi.eds_shape) if fi.eds_shape else None,
        counts_per_px=fi.counts_per_px, field_area_mm2=r.field_area_mm2,
        classes=[InclusionClassCount(name=c.name, count=c.count, area_px=c.area_px, count_per_mm2=c.count_per_mm2,
                                     area_fraction=c.area_fraction) for c in r.classes],
        inclusions=[Inclusion(id=o.id, inclusion_class=o.inclusion_class, confidence=o.confidence, area_px=o.area_px,
                              centroid_x_px=o.centroid_yx_px[1], centroid_y_px=o.centroid_yx_px[0], counts=o.counts,
                              fractions=o.fractions, fraction_sigma=o.fraction_sigma) for o in r.objects],
    )


def build_result(outcome: Outcome, timings_ms: dict[str, float], *, send_labels: bool = True,
                 send_uncertainty: bool = True) -> Result:
    fm = outcome.measurements
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
        model=ModelRef(name=seg.model_name, version=seg.model_version, backend=seg.backend),
        timings_ms=timings_ms,
        measurements=measurements_document(fm),
        series=series_document(outcome.series) if isinstance(outcome.series, SeriesResult) else outcome.series,
        reliability=reliability_document(outcome.reliability),
        verdict=Verdict(level=outcome.verdict.level, reasons=list(outcome.verdict.reasons)),
    )
    parts: dict[str, np.ndarray | bytes] = {}
    if send_labels:
        dtype = np.uint16 if fm.instances.max(initial=0) < 65536 else np.uint32
        parts["labels"] = np.ascontiguousarray(fm.instances.astype(dtype))
    uncertainty = outcome.reliability.uncertainty
    if send_uncertainty and uncertainty is not None:
        # normalized entropy, 0 (certain) … 255 (uniform over the classes), on the analysis grid
        scaled = np.clip(uncertainty, 0, 1)  # × 255, rounded half to even: np.round's values, in one buffer
        np.multiply(scaled, 255, out=scaled)
        parts["uncertainty"] = np.rint(scaled, out=scaled).astype(np.uint8)
    return Result(doc=doc, parts=parts, frame=frame, frame_labels=fm.frame_labels)


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
    s = Sufficiency.model_validate(sufficiency(p.quantity, p.estimate, ci, p.n_objects, p.target_rel,
                                               p.objects_per_frame, scope="series"), from_attributes=True)
    return s if p.enough_allowed or not s.enough else s.model_copy(update={"enough": False})


def _histogram(c: SizeCounts | None) -> Histogram | None:
    return None if c is None else Histogram(edges=list(c.edges), counts=list(c.counts), scale=c.scale)
