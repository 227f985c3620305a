from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from copilot.analysis.particles import measure_particles
from copilot.accumulator import Accumulator
from copilot.result import measurements_document
from copilot.analysis.series import SeriesTracker, fit_slope, point_from_measurements
from copilot.result import series_document
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
    assert d50.low <= 2 * rate <= d50.high
    assert d50.trending and d50.slope > 0
    starts = [a for a in alerts if a.kind == "trend-start"]
    assert [a.quantity for a in starts if a.quantity == "ecd_mean"] == ["ecd_mean"]  # one change, one alert
    assert starts[0].message.startswith("mean particle size rising ") and "nm/min (95 % CI " in starts[0].message
    assert starts[0].severity == "warning" and starts[0].frame_id
    assert summary.frames == 21 and summary.span_min == pytest.approx(10.0)
    assert sum(summary.cumulative_psd.counts) >= sum(summary.rolling_psd.counts) > 0
    doc = series_document(summary)
    assert doc.sufficiency.scope == "series" and doc.trends[0].name == "median particle size (D50)"


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
    assert {a.quantity for a in jumps} == {"ecd_mean"}
    assert jumps[0].message.startswith("mean particle size jumped up to ") and " nm (expected " in jumps[0].message
    later = []
    for i in range(11, 25):  # the new level holds: no trend alert out of the step, no second jump
        later += tracker.update(measure_particles(frame_with_radius(16, i), cfg)).alerts
    assert later == []


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
    slope, low, high, _, resid = fit_slope(t, 3 * t + 1)
    assert slope == pytest.approx(3) and low == pytest.approx(3) and resid == pytest.approx(0, abs=1e-9)
    assert fit_slope(np.ones(5), np.arange(5.0)) is None


def test_constant_values_give_a_finite_document():
    tracker = SeriesTracker()
    inst = np.zeros((100, 100), np.int32)
    inst[40:60, 40:60] = 1
    for i in range(4):
        s = tracker.update(measure_particles(seg_at(inst, 0.5, T0 + timedelta(minutes=i))))
    d50 = next(t for t in s.trends if t.quantity == "d50")
    assert not d50.trending and (d50.low is None or np.isfinite(d50.low))
    series_document(s).model_dump_json()  # no NaN or inf anywhere


def test_fail_frames_are_left_out_of_the_series():
    tracker = SeriesTracker()
    inst = np.zeros((100, 100), np.int32)
    inst[40:60, 40:60] = 1
    ok = tracker.update(measure_particles(seg_at(inst, 0.5, T0)), "ok")
    big = np.zeros((100, 100), np.int32)
    big[10:90, 10:90] = 1
    r = tracker.update(measure_particles(seg_at(big, 0.5, T0 + timedelta(minutes=1))), "fail")
    assert r.frames == 2 and r.frames_excluded == 1 and r.window_frames == 1
    assert r.pooled.estimate == ok.pooled.estimate and not r.pooled.enough_allowed
    assert r.cumulative_psd == ok.cumulative_psd


def test_trend_stop_is_information_and_needs_the_dwell():
    """A rise, then a plateau: one 'rising' warning, then one 'no longer changing' info, nothing in between."""
    tracker = SeriesTracker(SeriesSettings(window_frames=8, min_trend_frames=6, dwell_frames=3))
    alerts = []
    for i in range(40):
        r = 10 + min(i, 15) * 0.4  # radius grows for 15 min, then stays
        inst = np.zeros((200, 200), np.int32)
        yy, xx = np.mgrid[:200, :200]
        for k, (cy, cx) in enumerate([(50, 50), (50, 150), (150, 50), (150, 150)]):
            inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 0.2 * ((i * 7 + k) % 3 - 1)) ** 2] = k + 1
        alerts += tracker.update(measure_particles(seg_at(inst, 0.5, T0 + timedelta(minutes=i)),
                                                   AnalysisSettings(min_area_nm2=0))).alerts
    size = [a for a in alerts if a.quantity == "ecd_mean"]
    assert [a.kind for a in size] == ["trend-start", "trend-stop"], [a.message for a in size]
    assert size[1].severity == "info" and size[1].message.startswith("mean particle size no longer changing")


def test_accumulator_protocol_rebuild_and_merge():
    run = SinteringRun(seed=1, params=SimParams(size_px=256, nm_per_px=0.25, touching_fraction=0.0,
                                                area_fraction=0.12), growth_nm_per_min=0.5, interval_s=30,
                       duration_s=300, start=T0)
    cfg = AnalysisSettings(min_area_nm2=0.5)
    live = SeriesTracker()
    assert isinstance(live, Accumulator)
    docs, points = [], []
    for tf in run.frames(10):
        fm = measure_particles(seg_at(tf.frame.instances, 0.25, tf.acquired_at), cfg)
        last = live.update(fm)
        points.append(point_from_measurements(fm))
        docs.append({"frame_id": tf.acquired_at.isoformat(), "acquired_at": tf.acquired_at.isoformat(),
                     "measurements": measurements_document(fm).model_dump(mode="json"), "verdict": {"level": "ok"}})
    rebuilt = SeriesTracker()
    rebuilt.rebuild("run", docs)
    again = rebuilt.results("run")
    assert again.frames == last.frames and again.cumulative_psd == last.cumulative_psd
    assert [t.slope for t in again.trends] == pytest.approx([t.slope for t in last.trends])
    first, second = SeriesTracker(), SeriesTracker()
    first.rebuild_points("run", points[:5])
    second.rebuild_points("run", points[5:])
    first.merge(second)
    merged = first.results("run")
    assert merged.frames == 10 and merged.cumulative_psd == last.cumulative_psd
    assert merged.trends[0].slope == pytest.approx(last.trends[0].slope)
    with pytest.raises(TypeError):
        first.merge(object())
