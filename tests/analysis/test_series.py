from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from copilot.analysis.particles import measure_particles
from copilot.analysis.series import SeriesTracker, fit_slope
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.frame import Frame
from copilot.inference.segmentation import Segmentation
from copilot.sim.sintering import SinteringRun
from copilot.sim.stem import SimParams
from tests.analysis.test_particles import CLASSES, segmentation_from_instances

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def seg_at(instances, nm, t: datetime, stream="run") -> Segmentation:
    s = segmentation_from_instances(instances, nm)
    frame = Frame(s.frame.pixels, nm_per_px=nm, stream=stream, frame_id=t.isoformat(), origin="sim", acquired_at=t)
    return Segmentation(frame, s.probabilities, s.embedding, CLASSES, "m", "1", "test")


def test_sintering_slope_interval_contains_the_true_growth_rate():
    rate = 0.5  # nm/min of radius → the ECD (and D50) grows at 2·rate
    run = SinteringRun(seed=3, params=SimParams(size_px=384, nm_per_px=0.25, max_aspect=1.0, touching_fraction=0.0,
                                                area_fraction=0.12), growth_nm_per_min=rate, interval_s=30,
                       duration_s=600, start=T0)
    tracker = SeriesTracker(SeriesSettings(window_frames=21))
    cfg = AnalysisSettings(min_area_nm2=0.5)
    alerts = []
    for tf in run.frames(21):
        summary = tracker.update(measure_particles(seg_at(tf.frame.instances, 0.25, tf.acquired_at), cfg))
        alerts += summary.alerts
    d50 = next(t for t in summary.trends if t.quantity == "d50")
    assert d50.unit == "nm/min" and d50.n_frames == 21
    assert d50.slope_ci.low <= 2 * rate <= d50.slope_ci.high
    assert d50.trending and d50.slope > 0
    assert any(a.kind == "trend-start" and a.quantity == "d50" for a in alerts)
    assert summary.frames == 21 and summary.span_min == pytest.approx(10.0)
    assert sum(summary.cumulative_psd.counts) >= sum(summary.rolling_psd.counts) > 0
    assert summary.sufficiency.scope == "series"


def test_stable_series_raises_no_trend_and_a_jump_is_flagged():
    rng = np.random.default_rng(0)
    tracker = SeriesTracker(SeriesSettings(window_frames=20, min_trend_frames=6))

    def frame_with_radius(r, i):
        inst = np.zeros((300, 300), np.int32)
        yy, xx = np.mgrid[:300, :300]
        k = 0
        for cy in range(30, 300, 60):
            for cx in range(30, 300, 60):
                k += 1
                rr = r + rng.normal(0, 0.3)
                inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= rr**2] = k
        return seg_at(inst, 0.5, T0 + timedelta(minutes=i))

    cfg = AnalysisSettings(min_area_nm2=0)
    for i in range(10):
        s = tracker.update(measure_particles(frame_with_radius(10, i), cfg))
        assert not any(a.kind in ("trend-start", "jump") for a in s.alerts), s.alerts
    s = tracker.update(measure_particles(frame_with_radius(16, 10), cfg))
    jumps = [a for a in s.alerts if a.kind == "jump"]
    assert {a.quantity for a in jumps} >= {"d50"} and "jumped" in jumps[0].message


def test_streams_are_independent():
    tracker = SeriesTracker()
    inst = np.zeros((100, 100), np.int32)
    inst[40:60, 40:60] = 1
    a = tracker.update(measure_particles(seg_at(inst, 0.5, T0, "a")))
    b = tracker.update(measure_particles(seg_at(inst, 0.5, T0, "b")))
    a2 = tracker.update(measure_particles(seg_at(inst, 0.5, T0 + timedelta(minutes=1), "a")))
    assert a.frames == 1 and b.frames == 1 and a2.frames == 2


def test_fit_slope_known_line():
    t = np.arange(10.0)
    slope, ci, resid = fit_slope(t, 3 * t + 1)
    assert slope == pytest.approx(3) and ci.low == pytest.approx(3) and resid == pytest.approx(0, abs=1e-9)
    assert fit_slope(np.ones(5), np.arange(5.0)) is None


def test_constant_values_give_a_finite_document():
    tracker = SeriesTracker()
    inst = np.zeros((100, 100), np.int32)
    inst[40:60, 40:60] = 1
    for i in range(4):
        s = tracker.update(measure_particles(seg_at(inst, 0.5, T0 + timedelta(minutes=i))))
    d50 = next(t for t in s.trends if t.quantity == "d50")
    assert not d50.trending and (d50.slope_ci is None or np.isfinite(d50.slope_ci.low))
    s.model_dump_json()  # no NaN or inf anywhere
