"""The views' plain Python (no Qt): newest result per stream, liveness, sessions, alerts, texts, colours, outlines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.publish.preview import decode_preview, make_preview
from copilot.document.schema import (
    Alert, Calibration, ImageInfo, Interval, Measurements, ModelRef, Particle, ParticleSummary, Reliability,
    ResultDocument, SeriesSummary, Sufficiency, Trend, Verdict,
)
from copilot.publish.subscriber import Message
from copilot.ui.client import parse_endpoint
from copilot.ui.model import ViewModel
from copilot.ui.raster import EDGE_RGB, label_colours, render_outlines, size_colour
from copilot.ui.text import alert_text, scale_bar, sufficiency_text, trend_text

T0 = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


def particle(i: int, x: float, y: float, ecd: float, edge: bool = False) -> Particle:
    return Particle(id=i, centroid_x_px=x, centroid_y_px=y, area=ecd**2, ecd=ecd, feret_max=ecd, feret_min=ecd,
                    aspect_ratio=1, circularity=1, solidity=1, mean_intensity=1, confidence=0.9, touches_edge=edge)


def doc(n: int = 0, stream: str = "s", particles=(), suff: Sufficiency | None = None, level: str = "warn",
        reasons=("model less sure than usual",), count_sized: int | None = None, **kw) -> ResultDocument:
    ps = list(particles)
    kw.setdefault("processed_at", T0 + timedelta(seconds=n, milliseconds=300))
    return ResultDocument(
        stream=stream, frame_id=f"f{n:03d}", origin="mem", acquired_at=T0 + timedelta(seconds=n),
        calibration=Calibration(nm_per_px=0.5, calibrated=True, source="test", length_unit="nm"),
        image=ImageInfo(height_px=40, width_px=60, dtype="uint16", grid_frame_px=2.0),
        model=ModelRef(name="m", version="1", backend="cpu"), timings_ms={"end_to_end": 420.0},
        measurements=Measurements(task="particles", length_unit="nm", particles=ParticleSummary(
            count=len(ps), count_edge=sum(p.touches_edge for p in ps),
            count_sized=len(ps) if count_sized is None else count_sized, d50=10.0 + n,
            d50_ci=Interval(low=9.5 + n, high=10.6 + n), particles=ps), sufficiency=[suff] if suff else []),
        reliability=Reliability(), verdict=Verdict(level=level, reasons=list(reasons)), **kw)


def status(**kw) -> Message:
    return Message("status", {"state": "running", "uptime_s": 10.0, **kw}, {})


def test_keeps_the_newest_result_and_drops_older_ones():
    vm = ViewModel()
    assert vm.add_result(doc(2)) == "s"
    assert vm.add_result(doc(1)) is None  # older: counted, not shown
    assert vm.add_result(doc(2)) is None  # the same frame again (snapshot + live)
    assert vm.streams["s"].frame_id == "f002" and vm.streams["s"].stale == 2 and vm.streams["s"].results == 3
    assert vm.add_result(doc(3)) == "s" and vm.streams["s"].frame_id == "f003"
    assert [round(p.value) for p in vm.streams["s"].history] == [12, 13]


def test_stream_filter_and_preview_matching():
    vm = ViewModel(["s"])
    assert vm.add_result(doc(1, stream="other")) == "other"  # add_result is unconditional; ingest filters
    msg = Message("result.other", doc(2, stream="other"), {})
    assert vm.ingest(msg) is None
    vm.add_result(doc(1))
    assert vm.add_preview("s", {"frame_id": "f000", "scale": 2.0}, b"\xff\xd8\xff") is None  # another frame's
    assert vm.streams["s"].preview() is None  # never draw outlines on another frame's image
    assert vm.add_preview("s", {"frame_id": "f001", "scale": 2.0}, b"\xff\xd8\xff") == "s"
    assert vm.streams["s"].preview().scale == 2.0
    vm.add_result(doc(2), now=100.0)  # previews flow: hold the paint until its own preview arrives…
    assert not vm.streams["s"].ready(now=100.1)
    assert vm.streams["s"].ready(now=101.0)  # …or for half a second at most
    vm.add_preview("s", {"frame_id": "f002"}, b"\xff\xd8\xff")
    assert vm.streams["s"].ready(now=100.1)


def test_text_lines():
    s_more = Sufficiency(quantity="d50", estimate=10, half_width_rel=0.08, target_rel=0.02, enough=False,
                         more_objects_needed=240, more_frames_needed=3, scope="series")
    vm = ViewModel()
    vm.add_result(doc(0, particles=[particle(1, 5, 5, 10), particle(2, 50, 30, 12, edge=True)], suff=s_more))
    lines = vm.lines("s")
    assert lines["count"] == "2 particles, 1 cut by the edge (not sized)"
    assert lines["headline"] == "D50 10.0 nm (95 % interval 9.50–10.6 nm)"  # bounds, never a "±"
    assert lines["value"] == "10.0 nm" and lines["interval"] == "95 % interval 9.50–10.6 nm"
    assert lines["sufficiency"] == "~240 more particles / ~3 frames (for ±2 %)"
    assert lines["verdict"] == "WARN" and "less sure" in lines["reasons"]
    assert lines["latency"].startswith("420 ms frame→result")
    enough = s_more.model_copy(update={"enough": True, "half_width_rel": 0.015, "more_objects_needed": 0})
    assert sufficiency_text(doc(0, particles=[particle(1, 5, 5, 10)], suff=enough)) == "enough (±1.5 % ≤ 2 %)"
    tr = Trend(quantity="d50", unit="nm/min", slope=0.42, n_frames=8, trending=True,
               slope_ci=Interval(low=0.31, high=0.53))
    assert trend_text(tr) == "+0.42 nm/min ▲ (95 % CI +0.31 to +0.53)"
    wide = tr.model_copy(update={"slope_ci": Interval(low=-63, high=67)})
    assert trend_text(wide) == "no clear trend (95 % CI −63 to +67 nm/min)"  # stated only when it excludes 0
    assert trend_text(tr.model_copy(update={"slope_ci": None})) == "no clear trend"


def test_fail_frame_withholds_its_numbers():
    enough = Sufficiency(quantity="d50", estimate=10, half_width_rel=0.01, target_rel=0.02, enough=True,
                         more_objects_needed=0, more_frames_needed=0, scope="series")
    vm = ViewModel()
    vm.add_result(doc(0, particles=[particle(1, 5, 5, 10)], suff=enough, level="ok", reasons=()))
    assert vm.lines("s")["sufficiency"].startswith("enough")
    vm.add_result(doc(1, particles=[particle(1, 5, 5, 10)], suff=enough, level="fail",
                      reasons=["particles larger than the model was trained on"]))
    lines = vm.lines("s")
    assert lines["headline"] == "D50 withheld" and lines["value"] == "withheld" and lines["interval"] == ""
    assert lines["withheld"] == "FAIL: particles larger than the model was trained on"
    assert lines["sufficiency"] == "– (FAIL frame: not counted)" and lines["density"] == "withheld"
    assert [p.fail for p in vm.streams["s"].history] == [False, True]  # plotted, marked
    # too few sized: never "enough", whatever the pooled estimate says
    assert not sufficiency_text(doc(2, suff=enough, level="warn", count_sized=0)).startswith("enough")


def test_liveness_from_heartbeats():
    vm = ViewModel(silent_after_s=6.0)
    vm.watch("d")
    assert vm.liveness("d", now=0.0).state == "waiting"
    vm.ingest(status(), "d", now=100.0)
    vm.ingest(Message("result.s", doc(0), {}), "d", now=101.0)
    assert vm.liveness("d", now=105.0).live and vm.lines("s", now=105.0)["liveness"] == ""
    vm.ingest(status(), "d", now=106.0)
    live = vm.liveness("d", now=113.0)  # 7 s without a heartbeat: more than three missed
    assert live.state == "unreachable"
    text = live.text(now=113.0)
    assert text.startswith("no results since ") and "daemon stopped or unreachable, nothing heard for 7 s" in text
    assert vm.stream_liveness("s", now=113.0).state == "unreachable"
    vm.ingest(status(state="stopped"), "d", now=114.0)
    assert vm.liveness("d", now=114.5).text().endswith("— daemon stopped")


def test_sessions_are_kept_apart_and_alerts_carry_frame_and_time():
    vm = ViewModel(alert_max_age_s=600)
    series = SeriesSummary(frames=1, window_frames=1, span_min=0, alerts=[Alert(
        kind="trend-start", quantity="ecd_mean", message="mean particle size rising 2.1 nm/min (95 % CI 1.4–2.8)")])
    vm.add_result(doc(0, session_epoch="A"), now=1000.0)
    vm.add_result(doc(1, session_epoch="A", series=series), now=1001.0)
    st = vm.streams["s"]
    assert len(st.history) == 2 and len(vm.alerts("s", now=1002.0)) == 1
    a = vm.alerts("s", now=1002.0)[0]
    assert a["frame_id"] == "f001" and alert_text(a).endswith(" · f001 · mean particle size rising 2.1 nm/min "
                                                               "(95 % CI 1.4–2.8)")
    assert vm.alerts("s", now=1001.0 + 601) == []  # aged out
    # the daemon restarts: its heartbeat says so before its first result, and the old frame is not shown as live
    vm.ingest(status(session_epoch="B"), "", now=1099.0)
    assert vm.stream_liveness("s", now=1099.5).state == "restarted"
    assert "daemon restarted (a new session)" in vm.lines("s", now=1099.5)["liveness"]
    # its first result: a new epoch, an earlier frame number — shown, and the old session is no longer plotted
    vm.add_result(doc(0, session_epoch="B", processed_at=T0 + timedelta(hours=1)), now=1100.0)
    assert st.frame_id == "f000" and len(st.history) == 1 and vm.alerts("s", now=1100.0) == []
    assert st.session == "B" and st.session_note.startswith("new daemon session since ")
    # a late result of the old session is dropped as stale
    assert vm.add_result(doc(2, session_epoch="A"), now=1101.0) is None and st.session == "B"


def test_scale_bar_is_round_and_says_uncalibrated():
    assert scale_bar(0.2, 2048) == (50.0, 250.0, "50 nm")
    assert scale_bar(5.0, 2048)[2] == "2 µm"
    assert scale_bar(None, 1000)[2] == "200 px (uncalibrated)"


def test_outlines_line_up_with_the_frame():
    """A label mask on a grid of 2 frame px, drawn at 1 frame px per pixel: the outline sits on the particle edge."""
    labels = np.zeros((20, 30), np.uint16)
    labels[5:10, 5:10] = 1  # frame px 10..19
    labels[12:16, 20:26] = 2  # cut by nothing, larger
    d = doc(0, particles=[particle(1, 14.5, 14.5, 5.6), particle(2, 45.5, 27.5, 8.0)])
    lut = label_colours(d, 2)
    assert tuple(lut[0]) == (0, 0, 0, 0) and lut[1, 3] == lut[2, 3] == 255
    assert tuple(lut[1, :3]) == tuple(size_colour(0.0)) and tuple(lut[2, :3]) == tuple(size_colour(1.0))
    rgba, frame_px = render_outlines(labels, lut, 2.0, (40, 60), target_px=60)
    assert rgba.shape == (40, 60, 4) and frame_px == 1.0
    drawn = rgba[..., 3] > 0
    assert drawn[10, 10:20].all() and drawn[19, 10:20].all()  # the particle's own border rows
    assert drawn[9, 12] and not drawn[8, 12]  # plus one pixel outside: lines two pixels wide
    assert not drawn[12:18, 12:18].any()  # the inside stays clear: the image shows through
    assert (rgba[10, 12, :3] == lut[1, :3]).all() and (rgba[24, 45, :3] == lut[2, :3]).all()


def test_edge_particles_have_their_own_colour():
    d = doc(0, particles=[particle(1, 0, 0, 5, edge=True), particle(2, 10, 10, 6), particle(3, 20, 20, 7)])
    lut = label_colours(d, 3)
    assert tuple(lut[1, :3]) == EDGE_RGB
    assert all(np.abs(lut[1, :3].astype(int) - size_colour(t)).max() > 60 for t in np.linspace(0, 1, 21))


def test_preview_is_small_stretched_and_described():
    rng = np.random.default_rng(0)
    px = rng.normal(1000, 50, (1000, 600)).astype(np.float32)
    px[0, 0] = 60000  # a hot pixel must not wash out the stretch
    f = Frame(px, nm_per_px=0.3, stream="cam", frame_id="f7", origin="mem")
    header, jpeg = make_preview(f, max_px=256, quality=80)
    assert header["frame_id"] == "f7" and header["stream"] == "cam"
    assert header["scale"] == 4.0 and header["shape"] == [250, 150] and header["frame_shape"] == [1000, 600]
    assert header["nm_per_px"] == pytest.approx(1.2)
    img = decode_preview(jpeg)
    assert img.shape == (250, 150) and img.dtype == np.uint8
    assert 100 < img.mean() < 160 and img.std() > 10  # stretched around the noise, not around the hot pixel
    header, _ = make_preview(Frame(px[:100, :100], None, "cam", "u", "mem"))
    assert header["scale"] == 1.0 and header["nm_per_px"] is None


def test_endpoint_parsing():
    assert parse_endpoint("tcp://h:5555").snapshot == "tcp://h:5556"
    assert parse_endpoint("tcp://h:1,tcp://h:9").snapshot == "tcp://h:9"
    assert parse_endpoint("tcp://h:1,none").snapshot is None
    with pytest.raises(ValueError):
        parse_endpoint(",tcp://h:2")
