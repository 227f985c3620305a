"""Series: what a stream of frames says together — trends with uncertainty, rolling/cumulative PSD, alerts a person
reads, and the pooled estimate sufficiency is judged on.

:class:`SeriesTracker` follows the :class:`copilot.accumulator.Accumulator` protocol: ``process`` one
:class:`FramePoint` per frame, ``results`` for the stream now, ``merge`` another tracker, ``rebuild`` from stored
documents. It returns its own plain types (:class:`SeriesResult`); ``copilot.result`` turns them into the document.

Frames whose verdict is FAIL are counted but left out of everything else (trends, PSDs, pooled estimates): the
model was wrong on them, so their numbers say nothing about the specimen.

Alerts: one change gives one alert. A trend starts when the slope's 95 % interval excludes zero, and stops only when
a narrower (68 %) interval includes it (hysteresis); either must hold for ``dwell_frames`` frames in a row. A jump
restarts that quantity's trend window at the jump (a step is not a slope). "No longer changing" is information.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Literal

import numpy as np
from scipy import special

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.analysis.stats import median_interval

STOP_LEVEL = 0.68  # a trend stops when this (narrower) interval of the slope includes zero
ALERTING = ("ecd_mean", "density", "swelling", "density:cavity", "density:loop", "g")  # d50 moves with ecd_mean; g: grain growth


# -- plain types ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FramePoint:
    """What one frame contributes to its stream's series."""

    frame_id: str
    acquired_at: datetime
    values: dict[str, float | None]  # d50, ecd_mean, density or fraction:<phase>
    length_unit: str  # "nm" or "px"
    sized: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ECDs of the sized particles
    psd_counts: np.ndarray | None = None
    psd_edges: tuple[float, ...] | None = None
    psd_scale: str = "log"
    verdict: str = "ok"  # ok | warn | fail
    dose: float | None = None  # defects: the frame's dose from its metadata (copilot.analysis.defect_series)


@dataclass(frozen=True)
class TrendFit:
    quantity: str
    name: str  # "mean particle size"
    unit: str  # of the slope: "nm/min"
    slope: float | None
    low: float | None = None
    high: float | None = None
    level: float = 0.95
    n_frames: int = 0
    last_value: float | None = None
    trending: bool = False  # declared (95 % interval excludes zero, held for the dwell; released with hysteresis)


@dataclass(frozen=True)
class SeriesAlert:
    kind: Literal["trend-start", "trend-stop", "jump"]
    severity: Literal["warning", "info"]
    quantity: str
    message: str
    value: float | None
    frame_id: str
    acquired_at: datetime


@dataclass(frozen=True)
class SizeCounts:
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    scale: str


@dataclass(frozen=True)
class PooledEstimate:
    """The headline pooled over the window's usable frames, for sufficiency."""

    quantity: str
    estimate: float | None
    low: float | None
    high: float | None
    n_objects: int
    objects_per_frame: float | None
    target_rel: float
    enough_allowed: bool  # False when this frame sized too few objects (or was a FAIL): never claim "enough" then


@dataclass(frozen=True)
class SeriesResult:
    frames: int  # frames of this stream processed in this session (FAIL frames included)
    frames_excluded: int  # FAIL frames left out
    window_frames: int  # usable frames in the rolling window
    span_min: float
    trends: list[TrendFit]
    rolling_psd: SizeCounts | None
    cumulative_psd: SizeCounts | None
    pooled: PooledEstimate | None
    alerts: list[SeriesAlert]


# -- names and units -----------------------------------------------------------------------------------------------
def quantity_name(q: str) -> str:
    """Human name: ``ecd_mean`` → ``mean particle size``; ``fraction:pore`` → ``pore area fraction``."""
    if q.startswith("fraction:"):
        return f"{q.split(':', 1)[1]} area fraction"
    if q.startswith("density:"):
        return f"{q.split(':', 1)[1]} density"
    return {"swelling": "swelling (ΔV/V)", "d50": "median particle size (D50)", "ecd_mean": "mean particle size",
            "density": "particle density", "g": "ASTM grain size number G"}[q]


def value_unit(q: str, length_unit: str) -> str:
    if q.startswith("fraction:") or q == "swelling":
        return "%"
    if q.startswith("density:"):
        return "/µm²"
    if q == "g":
        return "G"
    return "particles/µm²" if q == "density" else length_unit


def slope_unit(q: str, length_unit: str) -> str:
    return f"{value_unit(q, length_unit)}/min"


def _shown(q: str, v: float) -> float:
    return v * 100 if q.startswith("fraction:") or q == "swelling" else v  # fractions read as percent


def fmt(v: float) -> str:
    """Three significant figures, no exponent: ``fmt(238.4)`` → ``'238'``, ``fmt(0.0421)`` → ``'0.0421'``."""
    if not np.isfinite(v) or v == 0:
        return "0" if v == 0 else str(v)
    digits = max(0, 2 - int(np.floor(np.log10(abs(v)))))
    return f"{v:.{digits}f}"


def fmt_signed(v: float) -> str:
    return ("+" if v > 0 else "−" if v < 0 else "") + fmt(abs(v))


# -- inputs ----------------------------------------------------------------------------------------------------------
def point_from_measurements(fm: FrameMeasurements, verdict: str = "ok") -> FramePoint:
    frame = fm.segmentation.frame
    m = fm.summary
    p = m.particles
    if p is not None:
        values = {"d50": p.d50, "ecd_mean": p.ecd_mean, "density": p.density_per_um2}
        sized = np.asarray(p.table.ecd[~p.table.touches_edge], float)
        psd = p.psd
        return FramePoint(frame.frame_id, frame.acquired_at, values, m.length_unit, sized,
                          np.array(psd.counts) if psd else None, tuple(psd.edges) if psd else None,
                          psd.scale if psd else "log", verdict)
    if m.defects is not None:
        return FramePoint(frame.frame_id, frame.acquired_at, defect_values(m.defects), m.length_unit, verdict=verdict,
                          dose=m.defects.dose)
    if m.grains is not None:
        return FramePoint(frame.frame_id, frame.acquired_at, {"g": m.grains.g_planimetric}, m.length_unit,
                          verdict=verdict)
    phases = m.phases.phases[1:] if m.phases is not None else []
    return FramePoint(frame.frame_id, frame.acquired_at, {f"fraction:{ph.name}": ph.area_fraction for ph in phases},
                      m.length_unit, verdict=verdict)


def defect_values(d: Any) -> dict[str, float | None]:
    """Series values of a defects frame (DefectStats or its document dict): swelling and density per class."""
    get = (lambda o, k: o.get(k)) if isinstance(d, dict) else getattr
    values: dict[str, float | None] = {"swelling": get(d, "swelling")}
    for c in get(d, "classes") or []:
        values[f"density:{get(c, 'name')}"] = get(c, "density_per_um2")
    return values


def point_from_document(doc: dict[str, Any]) -> FramePoint:
    """The same point from a stored result document (a JSON dict), for :meth:`SeriesTracker.rebuild`."""
    m = doc["measurements"]
    verdict = (doc.get("verdict") or {}).get("level", "ok")
    at = doc["acquired_at"]
    at = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
    p = m.get("particles")
    if p is not None:
        psd = p.get("psd")
        return FramePoint(doc["frame_id"], at, {"d50": p.get("d50"), "ecd_mean": p.get("ecd_mean"),
                                                "density": p.get("density_per_um2")}, m["length_unit"],
                          np.array([q["ecd"] for q in p.get("particles", []) if not q["touches_edge"]], float),
                          np.array(psd["counts"]) if psd else None, tuple(psd["edges"]) if psd else None,
                          psd["scale"] if psd else "log", verdict)
    if m.get("defects") is not None:
        return FramePoint(doc["frame_id"], at, defect_values(m["defects"]), m["length_unit"], verdict=verdict,
                          dose=m["defects"].get("dose"))
    if m.get("grains") is not None:
        return FramePoint(doc["frame_id"], at, {"g": m["grains"].get("g_planimetric")}, m["length_unit"],
                          verdict=verdict)
    phases = (m.get("phases") or {}).get("phases", [])[1:]
    return FramePoint(doc["frame_id"], at, {f"fraction:{ph['name']}": ph["area_fraction"] for ph in phases},
                      m["length_unit"], verdict=verdict)


def fit_slope(t: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float, float] | None:
    """OLS slope of y on t: (slope, low, high, stderr, residual SD) at ``level``; None when n < 3 or no spread.

    Closed form (what scipy.stats.linregress computes, without its per-call argument checks).
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    if len(t) < 3 or np.ptp(t) <= 0:
        return None
    dt = t - t.mean()
    sxx = float(dt @ dt)
    slope = float(dt @ (y - y.mean())) / sxx
    intercept = y.mean() - slope * t.mean()
    resid = y - (intercept + slope * t)
    dof = len(t) - 2
    rss = float(resid @ resid)
    stderr = np.sqrt(rss / dof / sxx)
    if not (np.isfinite(slope) and np.isfinite(stderr)):
        return None
    half = t_quantile(0.5 + level / 2, dof) * stderr
    return (float(slope), float(slope - half), float(slope + half), float(stderr), float(np.sqrt(rss / dof)))


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile (scipy.special.stdtrit: stats.t.ppf without its ~0.3 ms of argument checks)."""
    return float(special.stdtrit(dof, p))


# -- state -------------------------------------------------------------------------------------------------------------
@dataclass
class _Latch:
    """Declared trend state of one quantity with its hysteresis counters."""

    direction: int = 0  # -1 falling, 0 steady, +1 rising
    pending: int = 0  # the direction the last frames argue for
    held: int = 0  # frames in a row it has argued for it
    since: datetime | None = None  # trend window starts here (after a jump)
    quiet_until: int = 0  # no jump alert before this frame number


@dataclass
class _Stream:
    window: deque
    t0: datetime | None = None
    frames: int = 0
    excluded: int = 0
    cumulative: np.ndarray | None = None
    edges: tuple[float, ...] | None = None
    scale: str = "log"
    length_unit: str = "nm"
    latches: dict[str, _Latch] = field(default_factory=dict)
    last: FramePoint | None = None


class SeriesTracker:
    """Per-stream series state; an :class:`~copilot.accumulator.Accumulator` of :class:`FramePoint`."""

    def __init__(self, settings: SeriesSettings | None = None, analysis: AnalysisSettings | None = None):
        self.settings = settings or SeriesSettings()
        self.analysis = analysis or AnalysisSettings()
        self.streams: dict[str, _Stream] = {}

    def _state(self, stream: str) -> _Stream:
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = _Stream(deque(maxlen=self.settings.window_frames))
        return st

    # -- protocol ------------------------------------------------------------------------------------------------
    def update(self, fm: FrameMeasurements, verdict: str = "ok") -> SeriesResult:
        """``process`` the frame's point under its own stream and return the stream's results with its alerts."""
        return self.process(fm.segmentation.frame.stream, point_from_measurements(fm, verdict))

    def process(self, stream: str, item: FramePoint) -> SeriesResult:
        st = self._state(stream)
        st.frames += 1
        st.last = item
        st.length_unit = item.length_unit
        if item.verdict == "fail":
            st.excluded += 1
            return self.results(stream)
        if st.t0 is None:
            st.t0 = item.acquired_at
        history = list(st.window)
        alerts = [a for q in item.values if q in ALERTING or q.startswith("fraction:")
                  if (a := self._jump(st, q, history, item)) is not None]
        st.window.append(item)
        if item.psd_counts is not None:
            st.cumulative = item.psd_counts if st.cumulative is None else st.cumulative + item.psd_counts
            st.edges, st.scale = item.psd_edges, item.psd_scale
        trends = []
        for q in item.values:
            trend, alert = self._trend(st, q, item)
            trends.append(trend)
            if alert is not None:
                alerts.append(alert)
        return self._result(st, trends, alerts)

    def results(self, stream: str) -> SeriesResult | None:
        st = self.streams.get(stream)
        if st is None:
            return None
        qs = st.window[-1].values if st.window else {}
        return self._result(st, [self._fit(st, q) for q in qs], [])

    def merge(self, other: "SeriesTracker") -> None:
        """Fold another tracker in: streams it alone has are taken over; shared streams pool their frames by time
        (duplicates by frame id dropped), cumulative PSDs add up. Declared trends are re-derived, without alerts."""
        if not isinstance(other, SeriesTracker):
            raise TypeError(f"cannot merge {type(other).__name__} into SeriesTracker")
        for name, theirs in other.streams.items():
            mine = self.streams.get(name)
            if mine is None:
                self.streams[name] = theirs
                continue
            seen = {p.frame_id for p in mine.window}
            points = sorted([*mine.window, *(p for p in theirs.window if p.frame_id not in seen)],
                            key=lambda p: p.acquired_at)
            frames, excluded = mine.frames + theirs.frames, mine.excluded + theirs.excluded
            cumulative = _add(mine.cumulative, theirs.cumulative)
            self.rebuild_points(name, points)
            st = self.streams[name]
            st.frames, st.excluded, st.cumulative = frames, excluded, cumulative

    def rebuild(self, stream: str, documents: Iterable[dict]) -> None:
        """Restore the stream from its recent result documents (oldest first, JSON dicts), raising no alerts."""
        self.rebuild_points(stream, [point_from_document(d) for d in documents])

    def rebuild_points(self, stream: str, points: Iterable[FramePoint]) -> None:
        self.streams.pop(stream, None)
        for p in points:
            self.process(stream, p)

    # -- internals -------------------------------------------------------------------------------------------------
    def _result(self, st: _Stream, trends: list[TrendFit], alerts: list[SeriesAlert]) -> SeriesResult:
        window = list(st.window)
        if any(w.dose is not None for w in window):
            from copilot.analysis.defect_series import dose_trends

            trends = trends + dose_trends(window)
        rolling = _sum([w.psd_counts for w in window if w.psd_counts is not None])
        return SeriesResult(
            frames=st.frames, frames_excluded=st.excluded, window_frames=len(window),
            span_min=(window[-1].acquired_at - window[0].acquired_at).total_seconds() / 60 if window else 0.0,
            trends=trends,
            rolling_psd=_counts(rolling, st), cumulative_psd=_counts(st.cumulative, st),
            pooled=self._pooled(st, window), alerts=alerts)

    def _series(self, st: _Stream, q: str) -> tuple[np.ndarray, np.ndarray]:
        latch = st.latches.get(q)
        since = latch.since if latch is not None else None
        pts = [((w.acquired_at - st.t0).total_seconds() / 60, w.values[q]) for w in st.window
               if w.values.get(q) is not None and (since is None or w.acquired_at >= since)]
        if not pts:
            return np.zeros(0), np.zeros(0)
        t, y = (np.array(v, float) for v in zip(*pts))
        return t, y

    def _fit(self, st: _Stream, q: str, known: tuple | None = None) -> TrendFit:
        """The trend of ``q`` as reported; ``known``: its series (t, y) and ``fit_slope`` of it, when the caller has
        them already."""
        if known is None:
            t, y = self._series(st, q)
            fit = fit_slope(t, y)
        else:
            t, y, fit = known
        latch = st.latches.get(q, _Latch())
        last = float(y[-1]) if y.size else None
        name, unit = quantity_name(q), slope_unit(q, st.length_unit)
        if fit is None:
            return TrendFit(q, name, unit, None, n_frames=int(y.size), last_value=last)
        slope, low, high, _, _ = fit
        return TrendFit(q, name, unit, slope, low, high, 0.95, int(y.size), last, latch.direction != 0)

    def _trend(self, st: _Stream, q: str, point: FramePoint) -> tuple[TrendFit, SeriesAlert | None]:
        latch = st.latches.setdefault(q, _Latch())
        t, y = self._series(st, q)
        fit = fit_slope(t, y) if y.size >= self.settings.min_trend_frames else None
        if fit is None:
            latch.pending, latch.held = latch.direction, 0
            return self._fit(st, q), None
        known = (t, y, fit)  # what _fit would compute again: the latch's window (``since``) does not move here
        slope, low, high, se, _ = fit
        half_stop = t_quantile(0.5 + STOP_LEVEL / 2, y.size - 2) * se
        if low > 0 or high < 0:
            argued = 1 if slope > 0 else -1
        elif abs(slope) <= half_stop:
            argued = 0
        else:
            argued = latch.direction  # between the two intervals: hysteresis keeps what was declared
        if argued == latch.direction:
            latch.pending, latch.held = argued, 0
            return self._fit(st, q, known), None
        latch.held = latch.held + 1 if argued == latch.pending else 1
        latch.pending = argued
        if latch.held < self.settings.dwell_frames:
            return self._fit(st, q, known), None
        was, latch.direction, latch.held = latch.direction, argued, 0
        alert = None
        if q in ALERTING or q.startswith("fraction:"):
            alert = self._trend_alert(st, q, slope, low, high, was, argued, point)
        return self._fit(st, q, known), alert

    def _trend_alert(self, st: _Stream, q: str, slope: float, low: float, high: float, was: int, now: int,
                     point: FramePoint) -> SeriesAlert:
        name, unit = quantity_name(q), slope_unit(q, st.length_unit)
        s, lo, hi = (_shown(q, v) for v in (slope, low, high))
        if now == 0:
            return SeriesAlert("trend-stop", "info", q, f"{name} no longer changing ({fmt_signed(s)} {unit}, "
                               f"95 % CI {fmt_signed(lo)} to {fmt_signed(hi)})", slope, point.frame_id,
                               point.acquired_at)
        word = "rising" if now > 0 else "falling"
        lo, hi = sorted((abs(lo), abs(hi)))
        return SeriesAlert("trend-start", "warning", q,
                           f"{name} {word} {fmt(abs(s))} {unit} (95 % CI {fmt(lo)}–{fmt(hi)})", slope, point.frame_id,
                           point.acquired_at)

    def _jump(self, st: _Stream, q: str, history: list[FramePoint], point: FramePoint) -> SeriesAlert | None:
        value = point.values.get(q)
        latch = st.latches.setdefault(q, _Latch())
        pts = [((w.acquired_at - st.t0).total_seconds() / 60, w.values[q]) for w in history
               if w.values.get(q) is not None and (latch.since is None or w.acquired_at >= latch.since)]
        if value is None or len(pts) < self.settings.min_trend_frames or st.frames < latch.quiet_until:
            return None
        t, y = (np.array(v, float) for v in zip(*pts))
        fit = fit_slope(t, y)
        t_now = (point.acquired_at - st.t0).total_seconds() / 60
        if fit is None:
            predicted, spread = float(y.mean()), float(y.std(ddof=1))
        else:
            slope, _, _, _, spread = fit
            predicted = float(y.mean() + slope * (t_now - t.mean()))
        off = abs(value - predicted)
        if not (off > self.settings.jump_sigma * max(spread, 1e-9) and off > self.settings.jump_rel * abs(predicted)):
            return None
        # a step is not a slope: this quantity's trend starts again from here, without a trend alert of its own
        st.latches[q] = _Latch(since=point.acquired_at, quiet_until=st.frames + self.settings.dwell_frames)
        name, unit = quantity_name(q), value_unit(q, st.length_unit)
        word = "jumped up" if value > predicted else "dropped"
        now, expected = fmt(_shown(q, value)), fmt(_shown(q, predicted))
        return SeriesAlert("jump", "warning", q, f"{name} {word} to {now} {unit} (expected {expected} {unit} from the "
                           f"last {len(pts)} frames)", value, point.frame_id, point.acquired_at)

    def _pooled(self, st: _Stream, window: list[FramePoint]) -> PooledEstimate | None:
        last = st.last
        if last is None or not window:
            return None
        target = self.analysis.target_precision_rel
        usable = last.verdict != "fail"
        if "d50" in last.values:
            pooled = np.concatenate([w.sized for w in window])
            ci = median_interval(pooled)
            return PooledEstimate("d50", float(np.median(pooled)) if pooled.size else None,
                                  ci.low if ci else None, ci.high if ci else None, int(pooled.size),
                                  pooled.size / len(window), target,
                                  usable and last.sized.size >= self.settings.min_sized_per_frame)
        heads = [q for q in last.values if q.startswith("fraction:") or q == "swelling"]
        if not heads:
            return None
        q = heads[0]  # the frame's headline phase
        y = np.array([w.values[q] for w in window if w.values.get(q) is not None])
        if y.size < 2:
            return PooledEstimate(q, float(y.mean()) if y.size else None, None, None, int(y.size), 1, target, usable)
        half = t_quantile(0.975, y.size - 1) * y.std(ddof=1) / np.sqrt(y.size)
        return PooledEstimate(q, float(y.mean()), float(y.mean() - half), float(y.mean() + half), int(y.size), 1,
                              target, usable)


def _sum(arrays: list[np.ndarray]) -> np.ndarray | None:
    return np.sum(arrays, axis=0) if arrays else None


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return b if a is None else a if b is None else a + b


def _counts(counts: np.ndarray | None, st: _Stream) -> SizeCounts | None:
    if counts is None or st.edges is None:
        return None
    return SizeCounts(tuple(st.edges), tuple(int(c) for c in counts), st.scale)
