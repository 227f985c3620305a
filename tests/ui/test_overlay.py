"""`copilot overlay` against a real daemon over ZeroMQ, drawn by Qt offscreen."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported anywhere

import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import timedelta  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PIL import Image  # noqa: E402

from copilot.publish.publisher import Publisher  # noqa: E402
from copilot.publish.subscriber import Subscriber  # noqa: E402
from copilot.ui import overlay  # noqa: E402
from copilot.ui.client import Client  # noqa: E402
from copilot.cli.overlay import add_overlay_parser  # noqa: E402
from copilot.ui.raster import label_colours  # noqa: E402
from tests.ui.conftest import endpoints  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return overlay.ensure_app(offscreen=True)


def open_window(app, *endpoints_, size=(1100, 680), **kw):
    client = Client(list(endpoints_), stale_s=kw.pop("stale_s", 6.0))
    win = overlay.OverlayWindow(client, start_timer=False, **kw)
    win.resize(*size)
    win.show()
    return win


def pump(app, win, until, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while not until():
        shown = [(n, p.shown_frame_id) for n, p in win.panels.items()]
        assert time.monotonic() < deadline, f"timed out; showing {shown}"
        app.processEvents()
        win.tick()
        time.sleep(0.02)


def close(win):
    win.close()
    win.client.close()


@contextmanager
def window_showing(doc, parts=None):
    """An offscreen overlay window that has received and drawn ``doc`` (with its binary ``parts``) from a real
    publisher; closed on exit."""
    app = overlay.ensure_app(offscreen=True)
    pub_ep, snap_ep = endpoints()
    with Publisher(pub_ep, snap_ep) as pub:
        win = open_window(app, f"{pub_ep},{snap_ep}")
        try:
            pub.publish_result(doc, parts)
            pump(app, win, lambda: win.displayed(doc.stream)[0])
            yield win
        finally:
            close(win)


def test_window_shows_the_published_count(app, daemon):
    win = open_window(app, daemon.endpoint)
    try:
        with Subscriber(daemon.pub, None, topics=("result.",)) as sub:
            time.sleep(0.2)
            daemon.write(1)
            published = next(sub.results(timeout_s=15)).doc
        pump(app, win, lambda: win.displayed("ui")[0] == published.frame_id)
        assert win.displayed("ui") == (published.frame_id, published.measurements.particles.count)
        panel = win.panels["ui"]
        assert panel.numbers.count.text().startswith(f"{published.measurements.particles.count} ")
        assert "D50" in panel.numbers.stats.text() and "sufficiency" in panel.numbers.stats.text()
        assert panel.header.verdict.text().endswith(f"{published.verdict.level.upper()}</span>")
        # the preview of that very frame arrived on preview.ui and is under the outlines
        pump(app, win, lambda: win.model.streams["ui"].preview() is not None)
        prev = win.model.streams["ui"].preview()
        assert prev.header["frame_id"] == published.frame_id and prev.header["frame_shape"] == [384, 320]
    finally:
        close(win)


def test_snapshot_png_has_outlines_on_the_particles(app, daemon, tmp_path):
    win = open_window(app, daemon.endpoint)
    try:
        daemon.write(1)  # a new frame, so its preview comes too (the snapshot holds results only)
        overlay.wait_for_result(win, timeout_s=15)
        path = overlay.save_snapshot(win, tmp_path / "overlay.png")
        st = win.model.streams["ui"]
        doc, panel = st.doc, win.panels["ui"]
        png = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert png.shape[:2] == (680, 1100)
        lut = label_colours(doc, int(st.labels.max()))
        k = panel.view_scale()  # screen px per frame px
        checked = 0
        for p in doc.measurements.particles.particles:
            if p.touches_edge:
                continue
            cx, cy = panel.frame_to_window(p.centroid_x_px, p.centroid_y_px)
            r = p.ecd / 2 / doc.calibration.nm_per_px * k  # radius on screen
            yy, xx = np.mgrid[: png.shape[0], : png.shape[1]]
            d = np.hypot(xx - cx, yy - cy)
            ring = png[(d > r - 3) & (d < r + 3)]
            centre = png[d < r / 3]
            near = np.abs(ring - lut[p.id, :3]).max(axis=1) <= 40
            assert near.mean() > 0.25, f"particle {p.id}: outline colour {lut[p.id, :3]} not on its edge"
            assert (np.abs(centre - lut[p.id, :3]).max(axis=1) > 40).all(), "the inside must show the image"
            checked += 1
        assert checked >= 8
        # the preview is drawn: the particles' insides are bright, the background dark
        assert centre.mean() > 180
    finally:
        close(win)


def test_burst_faster_than_paint_shows_the_newest(app, tmp_path):
    from tests.publish.conftest import make_doc

    pub_ep, snap_ep = endpoints()
    with Publisher(pub_ep, snap_ep) as pub:
        win = open_window(app, f"{pub_ep},{snap_ep}")
        try:
            labels = np.zeros((32, 40), np.uint16)
            labels[4:10, 4:10] = 1
            pub.publish_result(make_doc("burst", 0), {"labels": labels.copy()})
            pump(app, win, lambda: win.displayed("burst")[0] == "burst-00000")  # subscribed and painting
            paints = win.panels["burst"].paints
            n = 60
            for i in range(1, n + 1):  # far faster than the 10 Hz paint timer
                d = make_doc("burst", i)
                d.measurements.particles.count = i
                pub.publish_result(d, {"labels": labels.copy()})
            pump(app, win, lambda: win.displayed("burst")[0] == f"burst-{n:05d}")
            for _ in range(5):  # nothing older repaints over it
                app.processEvents()
                win.tick()
            assert win.displayed("burst") == (f"burst-{n:05d}", n)
            assert win.panels["burst"].paints - paints <= 3  # one paint per tick, not one per result
            assert win.model.streams["burst"].results >= n // 2
        finally:
            close(win)


@pytest.mark.parametrize("goodbye", [True, False], ids=["stopped", "crashed"])
def test_survives_a_daemon_restart(app, goodbye):
    from tests.publish.conftest import make_doc

    pub_ep, snap_ep = endpoints()
    pub = Publisher(pub_ep, snap_ep)
    win = open_window(app, f"{pub_ep},{snap_ep}", stale_s=30.0)  # a quick restart: no silence to notice
    try:
        pub.publish_result(make_doc("rs", 1))
        pump(app, win, lambda: win.displayed("rs")[0] == "rs-00001")
        pub.publish_status({"state": "running", "uptime_s": 100.0})
        if goodbye:
            pub.publish_status({"state": "stopped", "uptime_s": 101.0})
            pump(app, win, lambda: win.client.connections[0].state == "stopped")
        else:
            pump(app, win, lambda: win.client.connections[0]._uptime == 100.0)
        pub.close()
        pub = Publisher(pub_ep, snap_ep)  # the daemon is back on the same endpoints
        later = make_doc("rs", 2, processed_at=make_doc("rs", 2).processed_at + timedelta(hours=1))
        pub.publish_result(later)  # published before the view reconnected: only the snapshot has it
        deadline = time.monotonic() + 15
        while win.displayed("rs")[0] != "rs-00002":
            assert time.monotonic() < deadline, f"state {win.client.states()}"
            pub.publish_status({"state": "running", "uptime_s": 0.5})
            app.processEvents()
            win.tick()
            time.sleep(0.05)
        assert win.client.connections[0].state == "live"
    finally:
        close(win)
        pub.close()


def test_cli_snapshot_and_timeout(app, daemon, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_overlay_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli.png"
    args = parser.parse_args(["overlay", "--endpoint", daemon.endpoint, "--snapshot", str(out), "--timeout", "15",
                              "--size", "900x600"])
    daemon.write(1)
    assert args.func(args) == 0
    assert Image.open(out).size == (900, 600)
    pub_ep, snap_ep = endpoints()  # nobody there
    args = parser.parse_args(["overlay", "--endpoint", f"{pub_ep},{snap_ep}", "--snapshot", str(tmp_path / "x.png"),
                              "--timeout", "0.5"])
    assert args.func(args) == 2
    assert "no result from" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_click_through_window_flags_and_geometry(app, tmp_path):
    from PySide6 import QtCore

    store = overlay.GeometryStore(tmp_path / "overlay.json")
    store.save("click_through", [40, 50, 700, 500])
    pub_ep, snap_ep = endpoints()
    client = Client([f"{pub_ep},none"])
    try:
        win = overlay.OverlayWindow(client, click_through=True, opacity=0.5, geometry=store, start_timer=False)
        flags = win.windowFlags()
        for f in (QtCore.Qt.WindowType.WindowTransparentForInput, QtCore.Qt.WindowType.WindowStaysOnTopHint,
                  QtCore.Qt.WindowType.FramelessWindowHint):
            assert flags & f
        assert win.windowOpacity() == pytest.approx(0.5, abs=0.01)
        assert (win.width(), win.height()) == (700, 500)
        win.resize(640, 480)
        win.close()
        assert store.load("click_through")[2:] == [640, 480]
    finally:
        client.close()


def test_phases_and_uncalibrated_frames_render(app):
    from tests.publish.conftest import make_doc
    from copilot.document.schema import Calibration, Interval, Measurements, PhaseFraction, PhaseSummary

    pub_ep, snap_ep = endpoints()
    with Publisher(pub_ep, snap_ep) as pub:
        win = open_window(app, f"{pub_ep},{snap_ep}")
        try:
            phases = [PhaseFraction(name=n, area_fraction=f, ci=Interval(low=f - 0.02, high=f + 0.02), point_count=f)
                      for n, f in (("matrix", 0.6), ("gamma-prime", 0.3), ("pores", 0.1))]
            ph = make_doc("ph", 1, measurements=Measurements(task="phases", length_unit="nm", phases=PhaseSummary(
                phases=phases, grid_points=100, block_px=16)))
            classes = np.zeros((64, 80), np.uint16)
            classes[10:30, 10:40], classes[40:60, 50:70] = 1, 2
            pub.publish_result(ph, {"labels": classes})
            unc = make_doc("unc", 1, calibration=Calibration(nm_per_px=None, calibrated=False, source="none",
                                                             length_unit="px"))
            pub.publish_result(unc)  # no label mask: circles at the particle centroids
            pump(app, win, lambda: win.displayed("ph")[0] and win.displayed("unc")[0])
            assert win.panels["unc"].frame.bar.text.toPlainText().endswith("px (uncalibrated)")
            assert "30.0 %" in win.panels["ph"].numbers.count.text() and "gamma-prime" in win.panels["ph"].numbers.count.text()
            assert "gamma-prime 30.0 %" in win.panels["ph"].numbers.legend.text()
            assert win.panels["ph"].frame.outlines.image is not None
        finally:
            close(win)


def test_a_silent_daemon_greys_the_frame_and_says_since_when(app):
    from tests.publish.conftest import make_doc

    pub_ep, snap_ep = endpoints()
    pub = Publisher(pub_ep, snap_ep)
    win = open_window(app, f"{pub_ep},{snap_ep}")
    win.model.silent_after_s = 0.5  # three heartbeats, shortened for the test
    try:
        pub.publish_status({"state": "running", "uptime_s": 1.0})
        pub.publish_result(make_doc("live", 1))
        pump(app, win, lambda: win.displayed("live")[0] == "live-00001")
        panel = win.panels["live"]
        assert panel.shown_live and not panel.header.banner.isVisible() and panel.frame.image.opacity() == 1.0
        pub.close()  # killed: no goodbye, no heartbeat
        pump(app, win, lambda: panel.shown_live is False, timeout_s=10)
        text = panel.header.banner.text()
        assert text.startswith("no results since ") and "daemon stopped or unreachable" in text
        assert panel.header.banner.isVisible() and "NOT LIVE" in panel.header.verdict.text()
        assert panel.frame.image.opacity() < 0.5 and panel.frame.stale.isVisible()
        assert "unreachable" in win.status.text()
    finally:
        close(win)
        pub.close()


def test_fail_frame_withholds_the_headline_and_is_marked_in_the_trend(app):
    from tests.publish.conftest import make_doc
    from copilot.document.schema import Verdict

    pub_ep, snap_ep = endpoints()
    with Publisher(pub_ep, snap_ep) as pub:
        win = open_window(app, f"{pub_ep},{snap_ep}")
        try:
            pub.publish_result(make_doc("f", 1))
            pump(app, win, lambda: win.displayed("f")[0] == "f-00001")
            bad = make_doc("f", 2, verdict=Verdict(level="fail", reasons=["outlines inside the particles"]))
            pub.publish_result(bad)
            pump(app, win, lambda: win.displayed("f")[0] == "f-00002")
            stats = win.panels["f"].numbers.stats.text()
            assert "D50 withheld" in stats and "FAIL: outlines inside the particles" in stats
            assert " ± " not in stats and "FAIL frame: not counted" in stats
            assert "FAIL, left out" in win.panels["f"].trend.widget.getPlotItem().titleLabel.text
        finally:
            close(win)


def test_window_can_be_made_small(app):
    from tests.publish.conftest import make_doc

    pub_ep, snap_ep = endpoints()
    with Publisher(pub_ep, snap_ep) as pub:
        win = open_window(app, f"{pub_ep},{snap_ep}")
        try:
            pub.publish_result(make_doc("small", 1))
            pump(app, win, lambda: win.displayed("small")[0] == "small-00001")
            hint = win.minimumSizeHint()
            assert hint.width() <= 520 and hint.height() <= 480, (hint.width(), hint.height())
        finally:
            close(win)


def test_help_prints_plain_percent(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_overlay_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["overlay", "--help"])
    out = capsys.readouterr().out
    assert "95 % interval" in out and "%%" not in out
