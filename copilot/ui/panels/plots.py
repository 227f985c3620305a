"""The two plots beside the numbers: the frame's size distribution (or phase fractions) and the headline against
time for this daemon session, FAIL frames marked and left out of the line."""

from __future__ import annotations

import math

import numpy as np

from copilot.ui.qt import ACCENT, DIM, FG, QtCore, esc, pg
from copilot.ui.raster import label_colours
from copilot.ui.text import VERDICT_COLOURS, headline, log_ticks


class _Once:
    """Calls a setter only when its value changed: some pyqtgraph setters leak references to None in PySide6 on
    every call (axis labels and ticks from 6.10 on; a curve's pen and brush in 6.9 too)."""

    def __init__(self):
        self.last: dict[str, object] = {}

    def __call__(self, key: str, value, setter) -> None:
        if self.last.get(key, ...) != value:
            self.last[key] = value
            setter(value)


def _plot(title: str) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setMinimumHeight(70)
    w.setMouseEnabled(False, False)
    w.hideButtons()
    w.setMenuEnabled(False)
    w.getPlotItem().setTitle(title, size="10pt")
    for ax in ("bottom", "left"):
        w.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)
    return w


class SizeDistribution:
    """Histogram of the frame's ECDs on the daemon's fixed bins (phases: fractions with their intervals).

    Its plot items are made once and updated in place (``setData``): re-creating pyqtgraph's PlotDataItem on every
    paint leaks references to ``None`` in PySide6, and this view repaints all day.
    """

    def __init__(self):
        self.widget = _plot("size distribution")
        plot = self.widget.getPlotItem()
        self.hist = pg.PlotCurveItem()  # stepMode with the first data: empty step data is refused
        self.d50 = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff", width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        plot.addItem(self.hist)
        plot.addItem(self.d50)
        self.bars: pg.BarGraphItem | None = None
        self.errors: pg.ErrorBarItem | None = None
        self.once = _Once()

    def paint(self, doc, withheld: str) -> None:
        plot = self.widget.getPlotItem()
        p = doc.measurements.particles
        if p is None:
            self.hist.hide()
            self.d50.hide()
            self._phases(plot, doc)
            return
        unit = doc.measurements.length_unit
        hist = p.psd
        title = f"size distribution (ECD, {unit})" + (" — FAIL frame, not counted" if withheld else "")
        plot.setTitle(esc(title), size="10pt", color=DIM if withheld else FG)
        if hist is None or not hist.counts:
            self.hist.hide()
            self.d50.hide()
            return
        edges = np.asarray(hist.edges, float)
        counts = np.asarray(hist.counts, float)
        log_x = bool(hist.scale == "log" and (edges > 0).all())
        nz = np.nonzero(counts)[0]
        if nz.size:  # show the occupied part of the (fixed, wide) bin range
            a, b = max(nz[0] - 2, 0), min(nz[-1] + 3, len(counts))
            edges, counts = edges[a:b + 1], counts[a:b]
        colour = (138, 147, 156) if withheld else (79, 195, 247)
        x = np.log10(edges) if log_x else edges  # the axis is labelled in plain numbers by log_ticks
        self.once("colour", colour, lambda c: (self.hist.setPen(pg.mkPen(c, width=1.5)),
                                               self.hist.setBrush(pg.mkBrush(*c, 120))))
        self.hist.setData(x, counts, stepMode="center", fillLevel=0)
        self.hist.show()
        if p.d50 is not None and not withheld:
            self.d50.setPos(math.log10(p.d50) if log_x else p.d50)
            self.d50.show()
        else:
            self.d50.hide()
        self.once("ticks", [log_ticks(edges[0], edges[-1])] if log_x else None, plot.getAxis("bottom").setTicks)
        self.once("left", "count", lambda v: plot.setLabel("left", v))

    def _phases(self, plot, doc) -> None:
        ph = doc.measurements.phases
        if ph is None:
            return
        plot.setTitle("phase fractions (95 % interval)", size="10pt")
        x = np.arange(len(ph.phases), dtype=float)
        y = np.array([q.area_fraction for q in ph.phases])
        lut = label_colours(doc, max(len(ph.phases) - 1, 1))
        brushes = [pg.mkBrush("#555555")] + [pg.mkBrush(*lut[k, :3]) for k in range(1, len(ph.phases))]
        lo = np.array([q.area_fraction - q.ci.low if q.ci else 0 for q in ph.phases])
        hi = np.array([q.ci.high - q.area_fraction if q.ci else 0 for q in ph.phases])
        if self.bars is None:
            self.bars = pg.BarGraphItem(x=x, height=y, width=0.7, brushes=brushes)
            self.errors = pg.ErrorBarItem(x=x, y=y, top=hi, bottom=lo, beam=0.2, pen=pg.mkPen(FG))
            plot.addItem(self.bars)
            plot.addItem(self.errors)
        else:
            self.bars.setOpts(x=x, height=y, width=0.7, brushes=brushes)
            self.errors.setData(x=x, y=y, top=hi, bottom=lo)
        self.once("ticks", [[(i, q.name) for i, q in enumerate(ph.phases)]], plot.getAxis("bottom").setTicks)


class TrendPlot:
    """The headline against acquisition time, this session only; FAIL frames as red crosses off the line.

    Items made once, updated in place (see :class:`SizeDistribution`)."""

    def __init__(self):
        self.widget = _plot("trend")
        plot = self.widget.getPlotItem()
        self.errors = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0), beam=0,
                                      pen=pg.mkPen(DIM))
        self.line = pg.PlotCurveItem(pen=pg.mkPen(ACCENT, width=1.5))
        self.dots = pg.ScatterPlotItem(size=5, brush=pg.mkBrush(ACCENT), pen=None)
        self.fails = pg.ScatterPlotItem(symbol="x", size=9, pen=pg.mkPen(VERDICT_COLOURS["fail"], width=2), brush=None)
        for item in (self.errors, self.line, self.dots, self.fails):
            plot.addItem(item)
        self.once = _Once()

    def paint(self, st) -> None:
        plot = self.widget.getPlotItem()
        doc = st.doc
        h = headline(doc)
        unit = f" ({h.unit})" if h.unit else ""
        pts = list(st.history)
        marked = " · × FAIL, left out" if any(q.fail for q in pts) else ""
        plot.setTitle(f"{esc(h.label)}{unit} vs time, this session{marked}", size="10pt")
        if not pts:
            for item in (self.errors, self.line, self.dots, self.fails):
                item.hide()
            return
        t0 = pts[0].t
        x = np.array([(q.t - t0).total_seconds() for q in pts])
        minutes = x[-1] >= 120
        if minutes:
            x = x / 60.0
        y = np.array([q.value for q in pts], float)
        fail = np.array([q.fail for q in pts])
        good = ~fail
        lo = np.array([q.value - q.low if q.low is not None else 0.0 for q in pts])[good]
        hi = np.array([q.high - q.value if q.high is not None else 0.0 for q in pts])[good]
        self.errors.setData(x=x[good], y=y[good], top=hi, bottom=lo)
        self.errors.setVisible(bool(good.any() and ((lo > 0).any() or (hi > 0).any())))
        self.line.setData(x[good], y[good])
        self.dots.setData(x[good], y[good])
        self.fails.setData(x[fail], y[fail])
        for item in (self.line, self.dots, self.fails):
            item.show()
        self.once("bottom", "minutes" if minutes else "seconds", lambda v: plot.setLabel("bottom", v))
