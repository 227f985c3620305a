"""`copilot overlay`: the newest frame of each stream with its particle outlines, numbers, PSD and trend, on screen.

Needs the ``overlay`` extra (PySide6-Essentials, pyqtgraph). Everything it decides — which result is newest, the
text lines, the colours, the outline image — lives in :mod:`copilot.ui.state` (plain Python); this module only
lays it out. A 10 Hz timer drains the subscribers (:class:`copilot.ui.client.Client`) and repaints a stream only
when its newest result changed, so a burst of results paints once, showing the last one.

Modes:

- a normal window (geometry remembered);
- ``click_through``: translucent, always on top, frameless and transparent for mouse input, to sit over the
  vendor's live view (its own remembered geometry; place it once with ``adjust=True``, which shows the same
  translucent window with a title bar so it can be moved and resized);
- ``snapshot``: connect, wait for the first result, render offscreen, save a PNG, exit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

MISSING_QT = ("copilot overlay needs the 'overlay' extra (PySide6-Essentials and pyqtgraph):\n"
              "    pip install 'copilot[overlay]'      (or: .venv/bin/pip install PySide6-Essentials pyqtgraph)\n"
              "`copilot top` shows the same numbers in a terminal without it.")

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
try:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtGui, QtWidgets
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(MISSING_QT) from exc

from copilot.ui.client import Client, Endpoint  # noqa: E402
from copilot.ui.state import (  # noqa: E402
    EDGE_RGB,
    PHASE_FILL_ALPHA,
    ViewModel,
    fmt_num,
    headline,
    label_colours,
    render_outlines,
    scale_bar,
    size_colour,
    size_range,
    trend_of,
    trend_text,
    verdict_colour,
)

log = logging.getLogger(__name__)

BG = "#101214"
FG = "#d8dde3"
DIM = "#8a939c"
ACCENT = "#4fc3f7"
VERDICT_OK = verdict_colour("ok")
pg.setConfigOptions(imageAxisOrder="row-major", antialias=True, background=BG, foreground=FG)


class OverlayError(RuntimeError):
    """Something the user must fix (no result within the timeout, no display, ...)."""


# -- geometry memory ---------------------------------------------------------------------------------------------
def config_dir() -> Path:
    """Where the overlay remembers its geometry: $COPILOT_CONFIG_DIR, else the platform's user config dir."""
    if os.environ.get("COPILOT_CONFIG_DIR"):
        return Path(os.environ["COPILOT_CONFIG_DIR"])
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "copilot"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "copilot"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "copilot"


class GeometryStore:
    """``overlay.json``: ``{"window": [x, y, w, h], "click_through": [x, y, w, h]}`` — one per mode."""

    def __init__(self, path: Path | None = None):
        self.path = path or config_dir() / "overlay.json"

    def load(self, key: str) -> list[int] | None:
        try:
            g = json.loads(self.path.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            return None
        if isinstance(g, list) and len(g) == 4 and all(isinstance(v, int) for v in g) and g[2] > 50 and g[3] > 50:
            return g
        return None

    def save(self, key: str, geometry: list[int]) -> None:
        try:
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = [int(v) for v in geometry]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            log.warning("could not remember the overlay geometry in %s: %s", self.path, exc)


# -- widgets -----------------------------------------------------------------------------------------------------
def _label(text: str = "", size: int = 11, bold: bool = False, colour: str = FG,
           wrap: bool = False) -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(text)
    f = lab.font()
    f.setPointSize(size)
    f.setBold(bold)
    lab.setFont(f)
    lab.setStyleSheet(f"color: {colour};")
    lab.setWordWrap(wrap)
    lab.setTextFormat(QtCore.Qt.TextFormat.RichText)
    return lab


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb[:3])


def log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Ticks at 1, 2, 5 × 10^k between ``lo`` and ``hi`` for a log10 axis, labelled in plain numbers."""
    ticks = []
    for k in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**k
            if lo <= v <= hi:
                ticks.append((math.log10(v), f"{v:g}"))
    return ticks


class ScaleBar(pg.ScaleBar):
    """pyqtgraph's scale bar with its label right-aligned to the bar, so a long label stays inside the view."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.text.setAnchor((1, 1))

    def updateBar(self):  # noqa: N802 (Qt naming)
        super().updateBar()
        self.text.setPos(0, 0)


class StreamPanel(QtWidgets.QFrame):
    """One stream: verdict light and reasons, the frame with outlines and a scale bar, numbers, PSD, trend."""

    def __init__(self, model: ViewModel, name: str, parent=None):
        super().__init__(parent)
        self.model = model
        self.name = name
        self.paints = 0
        self.shown_frame_id: str | None = None
        self.shown_count: int | None = None
        self._painted_version = -1
        self._outline_key = None
        self._frame_shape: tuple[int, int] | None = None
        self.setStyleSheet(f"StreamPanel {{ background: {BG}; }}")

        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(8, 6, 8, 6)
        root.setSpacing(4)

        head = QtWidgets.QHBoxLayout()
        self.light = QtWidgets.QLabel()
        self.light.setFixedSize(26, 26)
        self.verdict = _label("", 16, bold=True)
        self.title = _label(_esc(name), 13, bold=True)
        self.latency = _label("", 11, colour=DIM)
        head.addWidget(self.light)
        head.addWidget(self.verdict)
        head.addSpacing(10)
        head.addWidget(self.title, 1)
        head.addWidget(self.latency)
        root.addLayout(head)
        self.reasons = _label("waiting for the first result…", 11, colour=DIM, wrap=True)
        root.addWidget(self.reasons)

        body = QtWidgets.QHBoxLayout()
        body.setSpacing(8)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumSize(240, 240)
        self.vb = self.view.addViewBox(lockAspect=True, invertY=True, enableMouse=True)
        self.vb.setMenuEnabled(False)
        self.vb.setBackgroundColor("#000000")
        self.image = pg.ImageItem()
        self.outlines = pg.ImageItem()
        self.outlines.setZValue(5)
        self.markers = pg.ScatterPlotItem(pxMode=False, brush=None)
        self.markers.setZValue(6)
        for item in (self.image, self.outlines, self.markers):
            self.vb.addItem(item)
        self.bar = ScaleBar(size=100, width=6, brush="#ffffff", pen=pg.mkPen("#000000", width=1),
                            suffix="", offset=(-16, -14))
        self.bar.setParentItem(self.vb)
        self.bar.text.setColor("#ffffff")
        bf = QtGui.QFont()
        bf.setPointSize(12)
        bf.setBold(True)
        self.bar.text.setFont(bf)
        self.bar.text.fill = pg.mkBrush(0, 0, 0, 150)
        self.bar.hide()
        self.vb.sigResized.connect(self._resized)
        body.addWidget(self.view, 3)

        side = QtWidgets.QVBoxLayout()
        side.setSpacing(4)
        self.count = _label("", 22, bold=True)
        self.stats = _label("", 12, wrap=True)
        self.stats.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = _label("", 10, colour=DIM, wrap=True)
        side.addWidget(self.count)
        side.addWidget(self.stats)
        side.addWidget(self.legend)
        self.psd = pg.PlotWidget()
        self.psd.setMinimumHeight(120)
        self.psd.setMouseEnabled(False, False)
        self.psd.hideButtons()
        self.psd.setMenuEnabled(False)
        self.psd.getPlotItem().setTitle("size distribution", size="10pt")
        self.trend = pg.PlotWidget()
        self.trend.setMinimumHeight(120)
        self.trend.setMouseEnabled(False, False)
        self.trend.hideButtons()
        self.trend.setMenuEnabled(False)
        self.trend.getPlotItem().setTitle("trend", size="10pt")
        for w in (self.psd, self.trend):
            for ax in ("bottom", "left"):
                w.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)
        side.addWidget(self.psd, 1)
        side.addWidget(self.trend, 1)
        side_w = QtWidgets.QWidget()
        side_w.setLayout(side)
        side_w.setFixedWidth(380)
        body.addWidget(side_w)
        root.addLayout(body, 1)
        self._set_light(None)

    # -- coordinates (tests, snapshot checks) -------------------------------------------------------------------
    def frame_to_window(self, x_px: float, y_px: float) -> tuple[float, float]:
        """A point in frame pixels → the window's pixel coordinates (where it is drawn)."""
        scene = self.vb.mapViewToScene(QtCore.QPointF(x_px, y_px))
        p = self.view.mapFromScene(scene)
        g = self.view.mapTo(self.window(), p)
        return float(g.x()), float(g.y())

    def view_scale(self) -> float:
        """Screen pixels per frame pixel."""
        (x0, y0), (x1, _) = self.frame_to_window(0, 0), self.frame_to_window(100, 0)
        return abs(x1 - x0) / 100.0

    # -- painting -----------------------------------------------------------------------------------------------
    def _set_light(self, level: str | None) -> None:
        c = verdict_colour(level)
        self.light.setStyleSheet(f"background: {c}; border-radius: 13px; border: 2px solid #000000;")
        self.verdict.setText(f'<span style="color:{c}">{(level or "…").upper()}</span>')

    def _resized(self, *_):
        self._outline_key = None
        st = self.model.streams.get(self.name)
        if st is not None and st.doc is not None:
            self._paint_outlines(st)

    def refresh(self, force: bool = False) -> bool:
        """Repaint if the stream's newest result (or its preview) changed; returns whether it painted."""
        st = self.model.streams.get(self.name)
        if st is None or st.doc is None or (st.version == self._painted_version and not force):
            return False
        if not force and not st.ready():
            return False  # its preview is a few ms behind: paint both together on the next tick
        self._painted_version = st.version
        self.paints += 1
        doc = st.doc
        self.shown_frame_id = doc.frame_id
        self.shown_count = doc.measurements.particles.count if doc.measurements.particles else None
        lines = self.model.lines(self.name)

        self._set_light(doc.verdict.level)
        self.title.setText(f"<b>{_esc(self.name)}</b> <span style='color:{DIM}'>· {_esc(doc.frame_id)}</span>")
        self.reasons.setText(_esc(lines["reasons"]))
        self.reasons.setStyleSheet(f"color: {FG if doc.verdict.reasons else DIM};")
        self.latency.setText(_esc(lines["latency"]))

        H, W = doc.image.height_px, doc.image.width_px
        if self._frame_shape != (H, W):
            self._frame_shape = (H, W)
            self.vb.setRange(xRange=(0, W), yRange=(0, H), padding=0.0)
        prev = st.preview()
        if prev is not None:
            img = prev.image()
            self.image.setImage(img, levels=(0, 255), autoLevels=False)
            self.image.setRect(QtCore.QRectF(0, 0, img.shape[1] * prev.scale, img.shape[0] * prev.scale))
            self.image.show()
        else:
            self.image.hide()
        self._paint_outlines(st)
        self._paint_scale_bar(doc)
        self._paint_text(st, lines)
        self._paint_psd(doc)
        self._paint_trend(st)
        return True

    def _paint_outlines(self, st) -> None:
        doc = st.doc
        H, W = doc.image.height_px, doc.image.width_px
        vw, vh = self.vb.width(), self.vb.height()
        k = min(vw / W, vh / H) if vw > 0 and vh > 0 else 1.0
        target = int(max(64, min(2048, max(H, W) * k * self.devicePixelRatioF())))
        key = (doc.frame_id, target, st.labels is not None)
        if key == self._outline_key:
            return
        self._outline_key = key
        if st.labels is not None:
            labels = st.labels
            n = int(labels.max(initial=0))
            lut = label_colours(doc, n)
            fill = PHASE_FILL_ALPHA if doc.measurements.task == "phases" else 0
            rgba, s = render_outlines(labels, lut, doc.image.grid_frame_px, (H, W), target, fill_alpha=fill)
            self.outlines.setImage(rgba, levels=(0, 255), autoLevels=False)
            self.outlines.setRect(QtCore.QRectF(0, 0, rgba.shape[1] * s, rgba.shape[0] * s))
            self.outlines.show()
            self.markers.clear()
            return
        # No label mask on the wire (publish.send_labels = false): circles of the particle's ECD at its centroid.
        self.outlines.hide()
        p = doc.measurements.particles
        self.markers.clear()
        if p is None or not p.particles:
            return
        unit_per_px = doc.calibration.nm_per_px if doc.measurements.length_unit == "nm" else 1.0
        rng = size_range(doc)
        spots = []
        for q in p.particles:
            t = 0.5 if rng is None else (q.ecd - rng[0]) / (rng[1] - rng[0])
            colour = EDGE_RGB if q.touches_edge else tuple(int(v) for v in size_colour(t))
            spots.append({"pos": (q.centroid_x_px, q.centroid_y_px), "size": q.ecd / unit_per_px,
                          "pen": pg.mkPen(colour, width=2), "brush": None})
        self.markers.addPoints(spots)

    def _paint_scale_bar(self, doc) -> None:
        nm_per_px = doc.calibration.nm_per_px if doc.calibration.calibrated else None
        _, length_px, label = scale_bar(nm_per_px, doc.image.width_px)
        self.bar.size = length_px
        self.bar.text.setText(label)
        self.bar.show()
        self.bar.updateBar()

    def _paint_text(self, st, lines: dict[str, str]) -> None:
        doc = st.doc
        p = doc.measurements.particles
        h = headline(doc)
        if p is not None:
            self.count.setText(f"{p.count} <span style='font-size:12pt; font-weight:normal'>particles</span>")
        elif h.value is not None:
            self.count.setText(f"{h.value * 100:.1f} % <span style='font-size:12pt; font-weight:normal'>"
                               f"{_esc(h.label)}</span>")
        else:
            self.count.setText("–")
        suff = lines["sufficiency"]
        suff_colour = VERDICT_OK if suff.startswith("enough") else "#f5b700"
        rows = [
            f"<span style='font-size:15pt'><b>{_esc(h.label)} {_esc(h.plus_minus())}</b></span>"
            + (f"<br><span style='color:{DIM}'>95 % interval {fmt_num(h.low)}–{fmt_num(h.high)} {_esc(h.unit)}"
               f"</span>" if h.low is not None and h.high is not None else ""),
        ]
        if p is not None:
            rows.append(f"{_esc(lines['edge'])} · density {_esc(lines['density'])}")
        rows.append(f"sufficiency: <b style='color:{suff_colour}'>{_esc(suff)}</b>")
        rows.append(f"{_esc(lines['trend'])}")
        rows.append(f"<span style='color:{DIM}'>{_esc(lines['calibration'])} · {_esc(lines['model'])}</span>")
        if st.alerts:
            a = st.alerts[-1]
            rows.append(f"<span style='color:#f5b700'>⚠ {_esc(str(a.get('message', a.get('kind', ''))))}</span>")
        self.stats.setText("<br>".join(rows))
        self.legend.setText(self._legend_html(doc, st))

    def _legend_html(self, doc, st) -> str:
        if doc.measurements.task == "phases" and doc.measurements.phases is not None:
            n = len(doc.measurements.phases.phases)
            lut = label_colours(doc, max(n - 1, 1))
            items = []
            for k, ph in enumerate(doc.measurements.phases.phases):
                sw = "&nbsp;" * 4
                colour = "transparent" if k == 0 else _hex(lut[k])
                items.append(f"<span style='background:{colour}; border:1px solid {DIM}'>{sw}</span> "
                             f"{_esc(ph.name)} {ph.area_fraction * 100:.1f} %")
            return " &nbsp; ".join(items)
        rng = size_range(doc)
        if rng is None or st.labels is None and not doc.measurements.particles.particles:
            return ""
        unit = doc.measurements.length_unit
        swatches = "".join(f"<span style='background:{_hex(size_colour(t))}'>&nbsp;&nbsp;&nbsp;</span>"
                           for t in np.linspace(0, 1, 7))
        return (f"outline colour = ECD: {fmt_num(rng[0])} {swatches} {fmt_num(rng[1])} {unit}"
                f" &nbsp;<span style='background:{_hex(EDGE_RGB)}'>&nbsp;&nbsp;&nbsp;</span> cut by the edge")

    def _paint_psd(self, doc) -> None:
        plot = self.psd.getPlotItem()
        plot.clear()
        p = doc.measurements.particles
        if p is None:
            ph = doc.measurements.phases
            if ph is None:
                return
            plot.setTitle("phase fractions (95 % interval)", size="10pt")
            x = np.arange(len(ph.phases))
            lut = label_colours(doc, max(len(ph.phases) - 1, 1))
            brushes = [pg.mkBrush("#555555")] + [pg.mkBrush(*lut[k, :3]) for k in range(1, len(ph.phases))]
            plot.addItem(pg.BarGraphItem(x=x, height=[q.area_fraction for q in ph.phases], width=0.7, brushes=brushes))
            lo = [q.area_fraction - q.ci.low if q.ci else 0 for q in ph.phases]
            hi = [q.ci.high - q.area_fraction if q.ci else 0 for q in ph.phases]
            plot.addItem(pg.ErrorBarItem(x=x, y=np.array([q.area_fraction for q in ph.phases]), top=np.array(hi),
                                         bottom=np.array(lo), beam=0.2, pen=pg.mkPen(FG)))
            plot.getAxis("bottom").setTicks([[(i, q.name) for i, q in enumerate(ph.phases)]])
            plot.setLogMode(x=False)
            return
        unit = doc.measurements.length_unit
        hist = p.psd
        plot.setTitle(f"size distribution (ECD, {unit})", size="10pt")
        if hist is None or not hist.counts:
            return
        edges = np.asarray(hist.edges, float)
        counts = np.asarray(hist.counts, float)
        log_x = bool(hist.scale == "log" and (edges > 0).all())
        plot.setLogMode(x=log_x)
        nz = np.nonzero(counts)[0]
        if nz.size:  # show the occupied part of the (fixed, wide) bin range
            a, b = max(nz[0] - 2, 0), min(nz[-1] + 3, len(counts))
            edges, counts = edges[a:b + 1], counts[a:b]
        plot.plot(edges, counts, stepMode="center", fillLevel=0, brush=pg.mkBrush(79, 195, 247, 120),
                  pen=pg.mkPen(ACCENT, width=1.5))
        if p.d50 is not None:
            x = math.log10(p.d50) if log_x else p.d50
            plot.addItem(pg.InfiniteLine(pos=x, angle=90, pen=pg.mkPen("#ffffff", width=1.5,
                                                                        style=QtCore.Qt.PenStyle.DashLine)))
        plot.getAxis("bottom").setTicks([log_ticks(edges[0], edges[-1])] if log_x else None)
        plot.setLabel("left", "count")

    def _paint_trend(self, st) -> None:
        plot = self.trend.getPlotItem()
        plot.clear()
        doc = st.doc
        h = headline(doc)
        trend = trend_of(doc, h.quantity)
        unit = f" ({h.unit})" if h.unit else ""
        plot.setTitle(f"{_esc(h.label)}{unit} vs time · {_esc(trend_text(trend))}", size="10pt")
        pts = list(st.history)
        if not pts:
            return
        t0 = pts[0].t
        x = np.array([(q.t - t0).total_seconds() for q in pts])
        minutes = x[-1] >= 120
        if minutes:
            x = x / 60.0
        y = np.array([q.value for q in pts])
        lo = np.array([q.value - q.low if q.low is not None else 0.0 for q in pts])
        hi = np.array([q.high - q.value if q.high is not None else 0.0 for q in pts])
        if (lo > 0).any() or (hi > 0).any():
            plot.addItem(pg.ErrorBarItem(x=x, y=y, top=hi, bottom=lo, beam=0, pen=pg.mkPen(DIM)))
        plot.plot(x, y, pen=pg.mkPen(ACCENT, width=1.5), symbol="o", symbolSize=5, symbolBrush=ACCENT,
                  symbolPen=None)
        plot.setLabel("bottom", "minutes" if minutes else "seconds")



class OverlayWindow(QtWidgets.QWidget):
    """Panels for every stream the client hears, a status line, and the drain-and-repaint timer."""

    TICK_MS = 100

    def __init__(self, client: Client, *, click_through: bool = False, adjust: bool = False, opacity: float = 0.7,
                 geometry: GeometryStore | None = None, start_timer: bool = True):
        super().__init__()
        self.client = client
        self.model = client.model
        self.panels: dict[str, StreamPanel] = {}
        self.geometry_store = geometry
        self.geometry_key = "click_through" if (click_through or adjust) else "window"
        self.setWindowTitle("microscope co-pilot")
        self.setStyleSheet(f"background: {BG}; color: {FG};")
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        self.row = QtWidgets.QHBoxLayout()
        root.addLayout(self.row, 1)
        ends = ", ".join(c.name for c in client.connections)
        self.waiting = _label(f"waiting for results from {_esc(ends)} …", 14, colour=DIM)
        self.waiting.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.row.addWidget(self.waiting)
        self.status = _label("", 9, colour=DIM)
        root.addWidget(self.status)

        if click_through or adjust:
            flags = QtCore.Qt.WindowType.WindowStaysOnTopHint
            if click_through and not adjust:
                flags |= QtCore.Qt.WindowType.FramelessWindowHint | QtCore.Qt.WindowType.WindowTransparentForInput
                flags |= QtCore.Qt.WindowType.Tool  # no task-bar entry
            self.setWindowFlags(self.windowFlags() | flags)
            self.setWindowOpacity(opacity)
            if click_through and not adjust:
                self.setAttribute(QtCore.Qt.WidgetAttribute.WA_ShowWithoutActivating)
        g = geometry.load(self.geometry_key) if geometry is not None else None
        if g:
            self.setGeometry(*g)
        else:
            self.resize(1280, 760)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(self.TICK_MS)
        self.timer.timeout.connect(self.tick)
        if start_timer:
            self.timer.start()

    def panel(self, name: str) -> StreamPanel:
        p = self.panels.get(name)
        if p is None:
            if self.waiting is not None:
                self.waiting.hide()
                self.row.removeWidget(self.waiting)
                self.waiting.deleteLater()
                self.waiting = None
            p = self.panels[name] = StreamPanel(self.model, name)
            names = sorted(self.panels)
            self.row.insertWidget(names.index(name), p, 1)
        return p

    def tick(self) -> int:
        """Drain every subscriber, then repaint each stream whose newest result changed; returns the paints."""
        try:
            self.client.poll()
        except Exception:  # a view must never die of one bad message or a network hiccup
            log.exception("overlay: receiving failed")
        painted = 0
        for name, st in sorted(self.model.streams.items()):
            if st.doc is not None:
                painted += self.panel(name).refresh()
        self._status_line()
        return painted

    def _status_line(self) -> None:
        parts = []
        for c in self.client.connections:
            s = self.model.status.get(c.name) or {}
            extra = f", daemon {s.get('processed', 0)} processed" if s else ""
            parts.append(f"{c.name}: {c.state}{extra}")
        for name, st in sorted(self.model.streams.items()):
            if st.results:
                parts.append(f"{name}: {st.results} results, {st.stale} skipped as stale")
        self.status.setText(_esc(" · ".join(parts)))

    def displayed(self, stream: str) -> tuple[str | None, int | None]:
        """(frame id, particle count) of what the stream's panel shows now."""
        p = self.panels.get(stream)
        return (p.shown_frame_id, p.shown_count) if p is not None else (None, None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        if self.geometry_store is not None:
            g = self.geometry()
            self.geometry_store.save(self.geometry_key, [g.x(), g.y(), g.width(), g.height()])
        self.timer.stop()
        super().closeEvent(event)


# -- entry points ------------------------------------------------------------------------------------------------
def _qt_messages(mode, context, message: str) -> None:
    if "propagateSizeHints" in message or "This plugin does not support" in message:  # offscreen platform noise
        return
    level = {QtCore.QtMsgType.QtDebugMsg: logging.DEBUG, QtCore.QtMsgType.QtInfoMsg: logging.INFO}.get(mode,
                                                                                                     logging.WARNING)
    log.log(level, "Qt: %s", message)


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def ensure_app(offscreen: bool = False) -> QtWidgets.QApplication:
    """The QApplication (created once); ``offscreen`` when asked or when there is no display to draw on."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        if offscreen or _no_display():
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        QtCore.qInstallMessageHandler(_qt_messages)
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setApplicationName("copilot-overlay")
    return app


def listen(window: OverlayWindow, seconds: float) -> None:
    """Keep receiving (and painting) for ``seconds``, e.g. so the trend has points before a snapshot."""
    app = QtWidgets.QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        window.tick()
        time.sleep(0.05)


def wait_for_result(window: OverlayWindow, timeout_s: float, preview_wait_s: float = 10.0) -> None:
    """Tick until a result is shown with its preview image, or time out.

    Previews are published per frame and are not in the daemon's snapshot: a late joiner gets the image with the
    next frame. So after the first result this waits up to ``preview_wait_s`` more for a frame with its preview,
    then goes on without the image (outlines on black) and says so.
    """
    app = QtWidgets.QApplication.instance()
    deadline = time.monotonic() + timeout_s
    first_at = None
    while True:
        app.processEvents()
        window.tick()
        states = [st for st in window.model.streams.values() if st.doc is not None]
        now = time.monotonic()
        if states:
            first_at = first_at or now
            if all(st.preview() is not None for st in states):
                return
            if now - first_at > preview_wait_s or now > deadline:
                log.warning("no preview image arrived with the newest result (previews come with each new frame; "
                            "the daemon's snapshot has none): drawing the outlines without the image")
                return
        elif now > deadline:
            ends = ", ".join(c.name for c in window.client.connections)
            raise OverlayError(f"no result from {ends} within {timeout_s:g} s — is the daemon running and "
                               f"publishing there (copilot run … / publish.pub_endpoint)?")
        time.sleep(0.03)


def save_snapshot(window: OverlayWindow, path: Path) -> Path:
    app = QtWidgets.QApplication.instance()
    for _ in range(3):  # let the layout settle: outlines are re-drawn at the view's final size
        app.processEvents()
        for p in window.panels.values():
            p.refresh(force=True)
    app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path)):
        raise OverlayError(f"could not write {path}")
    return path


def run_overlay(endpoints: Sequence[str | Endpoint], streams: Sequence[str] | None = None, *,
                click_through: bool = False, adjust: bool = False, opacity: float = 0.7,
                snapshot: Path | None = None, timeout_s: float = 30.0, size: tuple[int, int] = (1280, 760),
                stale_s: float = 6.0, listen_s: float = 0.0) -> int:
    """``copilot overlay``: returns the exit status."""
    if snapshot is None and QtWidgets.QApplication.instance() is None and _no_display() \
            and os.environ.get("QT_QPA_PLATFORM", "") != "offscreen":
        raise OverlayError("no display to draw on (DISPLAY/WAYLAND_DISPLAY unset): over SSH use `copilot top`, "
                           "or `copilot overlay --snapshot FILE.png` to render to a file")
    app = ensure_app(offscreen=snapshot is not None)
    opacity = min(1.0, max(0.1, opacity))
    client = Client(endpoints, streams, stale_s=stale_s)
    try:
        if snapshot is not None:
            window = OverlayWindow(client, start_timer=False)
            window.resize(*size)
            window.show()
            wait_for_result(window, timeout_s)
            if listen_s > 0:
                listen(window, listen_s)
                wait_for_result(window, timeout_s)  # end on a frame whose preview is there
            out = save_snapshot(window, snapshot)
            log.info("overlay snapshot written to %s", out)
            window.close()
            return 0
        window = OverlayWindow(client, click_through=click_through, adjust=adjust, opacity=opacity,
                               geometry=GeometryStore())
        window.show()
        signal.signal(signal.SIGINT, lambda *_: app.quit())  # Ctrl+C in the terminal closes a click-through window
        app.aboutToQuit.connect(window.close)
        app.exec()
        return 0
    finally:
        client.close()
