"""Series: what a stream of frames says together — trends with uncertainty, rolling/cumulative PSD, alerts, and
whether enough has been measured.

Like a LiberTEM UDF, each frame is a ``process`` step into per-stream state, and the state ``merge``s into one
summary per frame; the same object runs over a folder (``copilot analyze``) or a live stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy import stats

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.analysis.stats import median_interval, sufficiency
from copilot.document.schema import Alert, Histogram, Interval, Measurements, SeriesSummary, Trend


@dataclass
class _Point:
    t_min: float
    values: dict[str, float | None]
    sized: np.ndarray
    psd: np.ndarray | None


@dataclass
class _StreamState:
    t0: datetime | None = None
    frames: int = 0
    window: deque = field(default_factory=deque)
    cumulative_psd: np.ndarray | None = None
    psd_edges: list[float] | None = None
    psd_scale: str = "log"
    trending: dict[str, bool] = field(default_factory=dict)


def frame_quantities(fm: FrameMeasurements) -> tuple[dict[str, float | None], dict[str, str]]:
    """The per-frame numbers whose trends matter, and the unit of each one's slope."""
    return measurement_quantities(fm.summary)


def measurement_quantities(m: Measurements) -> tuple[dict[str, float | None], dict[str, str]]:
    """:func:`frame_quantities` from a document's measurements."""
    unit = m.length_unit
    if m.particles is not None:
        p = m.particles
        return ({"d50": p.d50, "ecd_mean": p.ecd_mean, "density": p.density_per_um2},
                {"d50": f"{unit}/min", "ecd_mean": f"{unit}/min", "density": "1/µm²/min"})
    phases = m.phases.phases[1:] if m.phases is not None else []
    return ({f"fraction:{ph.name}": ph.area_fraction for ph in phases}, {f"fraction:{ph.name}": "1/min" for ph in phases})


def fit_slope(t: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, Interval, float] | None:
    """OLS slope of y on t, its t-interval and the residual SD; None when t has no spread or n < 3."""
    if len(t) < 3 or np.ptp(t) <= 0:
        return None
    res = stats.linregress(t, y)
    if not (np.isfinite(res.slope) and np.isfinite(res.stderr)):
        return None
    dof = len(t) - 2
    half = stats.t.ppf(0.5 + level / 2, dof) * res.stderr
    resid = y - (res.intercept + res.slope * t)
    return float(res.slope), Interval(low=res.slope - half, high=res.slope + half, level=level, method="OLS t-interval"), \
        float(np.sqrt((resid**2).sum() / dof)) if dof > 0 else 0.0


class SeriesTracker:
    """Per-stream state across frames; ``update`` returns the stream's summary after this frame."""

    def __init__(self, settings: SeriesSettings | None = None, analysis: AnalysisSettings | None = None):
        self.settings = settings or SeriesSettings()
        self.analysis = analysis or AnalysisSettings()
        self.streams: dict[str, _StreamState] = {}

    def update(self, fm: FrameMeasurements) -> SeriesSummary:
        frame = fm.segmentation.frame
        st = self.streams.setdefault(frame.stream, _StreamState(window=deque(maxlen=self.settings.window_frames)))
        if st.t0 is None:
            st.t0 = frame.acquired_at
        values, units = frame_quantities(fm)
        p = fm.summary.particles
        sized = np.array([q.ecd for q in p.particles if not q.touches_edge]) if p is not None else np.zeros(0)
        psd = np.array(p.psd.counts) if p is not None and p.psd is not None else None
        history = list(st.window)
        point = _Point((frame.acquired_at - st.t0).total_seconds() / 60.0, values, sized, psd)
        alerts = [a for q in values if (a := self._jump(q, history, point)) is not None]
        st.window.append(point)
        st.frames += 1
        if psd is not None:
            st.cumulative_psd = psd if st.cumulative_psd is None else st.cumulative_psd + psd
            st.psd_edges, st.psd_scale = p.psd.edges, p.psd.scale
        trends = []
        for q, unit in units.items():
            trend = self._trend(q, unit, list(st.window))
            was = st.trending.get(q, False)
            if trend.trending and not was:
                alerts.append(Alert(kind="trend-start", quantity=q, value=trend.slope,
                                    message=f"{q} is {'rising' if trend.slope > 0 else 'falling'} at "
                                            f"{trend.slope:+.3g} {unit} (95 % CI {trend.slope_ci.low:+.3g} … "
                                            f"{trend.slope_ci.high:+.3g})"))
            elif was and not trend.trending:
                alerts.append(Alert(kind="trend-stop", quantity=q, value=trend.slope,
                                    message=f"{q} is no longer changing significantly"))
            st.trending[q] = trend.trending
            trends.append(trend)
        window = list(st.window)
        return SeriesSummary(
            frames=st.frames,
            window_frames=len(window),
            span_min=window[-1].t_min - window[0].t_min,
            trends=trends,
            rolling_psd=self._psd(sum(w.psd for w in window if w.psd is not None) if psd is not None else None, st),
            cumulative_psd=self._psd(st.cumulative_psd, st),
            sufficiency=self._pooled_sufficiency(fm, window),
            alerts=alerts,
        )

    # Accumulator protocol (copilot.accumulator): the series survives a restart
    def rebuild(self, stream: str, documents) -> None:
        """Restore ``stream``'s window, cumulative PSD, frame count and trend states from its recent result
        documents (JSON dicts, oldest first)."""
        docs = list(documents)[-self.settings.window_frames:]
        st = _StreamState(window=deque(maxlen=self.settings.window_frames))
        for d in docs:
            m = Measurements.model_validate(d["measurements"])
            t = datetime.fromisoformat(d["acquired_at"])
            st.t0 = st.t0 or t
            values, _ = measurement_quantities(m)
            p = m.particles
            sized = np.array([q.ecd for q in p.particles if not q.touches_edge]) if p is not None else np.zeros(0)
            psd = np.array(p.psd.counts) if p is not None and p.psd is not None else None
            st.window.append(_Point((t - st.t0).total_seconds() / 60.0, values, sized, psd))
        series = docs[-1].get("series") if docs else None
        if series:
            st.frames = int(series["frames"])
            cum = series.get("cumulative_psd")
            if cum:
                st.cumulative_psd = np.array(cum["counts"])
                st.psd_edges, st.psd_scale = cum["edges"], cum["scale"]
            st.trending = {tr["quantity"]: bool(tr.get("trending")) for tr in series.get("trends", [])}
        else:
            st.frames = len(docs)
        if docs:
            self.streams[stream] = st

    def _trend(self, q: str, unit: str, window: list[_Point]) -> Trend:
        pts = [(w.t_min, w.values.get(q)) for w in window if w.values.get(q) is not None]
        last = pts[-1][1] if pts else None
        fit = fit_slope(*map(np.array, zip(*pts))) if len(pts) >= 3 else None
        if fit is None:
            return Trend(quantity=q, unit=unit, slope=None, n_frames=len(pts), last_value=last)
        slope, ci, _ = fit
        trending = len(pts) >= self.settings.min_trend_frames and (ci.low > 0 or ci.high < 0)
        return Trend(quantity=q, unit=unit, slope=slope, slope_ci=ci, n_frames=len(pts), last_value=last,
                     trending=trending)

    def _jump(self, q: str, history: list[_Point], point: _Point) -> Alert | None:
        value = point.values.get(q)
        pts = [(w.t_min, w.values[q]) for w in history if w.values.get(q) is not None]
        if value is None or len(pts) < self.settings.min_trend_frames:
            return None
        t, y = map(np.array, zip(*pts))
        fit = fit_slope(t, y)
        if fit is None:
            predicted, spread = float(y.mean()), float(y.std(ddof=1))
        else:
            slope, _, spread = fit
            predicted = float(y.mean() + slope * (point.t_min - t.mean()))
        off = abs(value - predicted)
        if off > self.settings.jump_sigma * max(spread, 1e-9) and off > self.settings.jump_rel * abs(predicted):
            return Alert(kind="jump", quantity=q, value=value,
                         message=f"{q} jumped to {value:.3g} (expected {predicted:.3g} from the last {len(pts)} frames)")
        return None

    @staticmethod
    def _psd(counts, st: _StreamState) -> Histogram | None:
        if counts is None or st.psd_edges is None or np.isscalar(counts):
            return None
        return Histogram(edges=st.psd_edges, counts=[int(c) for c in counts], scale=st.psd_scale)

    def _pooled_sufficiency(self, fm: FrameMeasurements, window: list[_Point]):
        target = self.analysis.target_precision_rel
        if fm.summary.particles is not None:
            pooled = np.concatenate([w.sized for w in window]) if window else np.zeros(0)
            d50 = float(np.median(pooled)) if pooled.size else None
            ci = median_interval(pooled)
            per_frame = pooled.size / len(window) if window else None
            return sufficiency("d50", d50, ci, int(pooled.size), target, per_frame, scope="series")
        heads = [s.quantity for s in fm.summary.sufficiency if s.quantity.startswith("fraction:")]
        if not heads:
            return None
        q = heads[0]  # the frame's headline phase
        y = np.array([w.values[q] for w in window if w.values.get(q) is not None])
        if y.size < 2:
            return sufficiency(q, float(y.mean()) if y.size else None, None, int(y.size), target, 1, scope="series")
        half = stats.t.ppf(0.975, y.size - 1) * y.std(ddof=1) / np.sqrt(y.size)
        ci = Interval(low=float(y.mean() - half), high=float(y.mean() + half), method="t-interval over frames")
        return sufficiency(q, float(y.mean()), ci, int(y.size), target, 1, scope="series")
