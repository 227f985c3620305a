"""The two plots beside the numbers: the frame's size distribution (or phase fractions) and the headline against
time for this daemon session, FAIL frames marked and left out of the line."""

from __future__ import annotations

import math

import numpy as np

from copilot.ui.qt import ACCENT, DIM, FG, QtCore, esc, pg
from copilot.ui.raster import label_colours
from copilot.ui.text import VERDICT_COLOURS, headline, log_ticks, trend_of, trend_text


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
    """Histogram of the frame's ECDs on the daemon's fixed bins (phases: fractions with their intervals)."""

    def __init__(self):
        self.widget = _plot("size distribution")

    def paint(self, doc, withheld: str) -> None:
        plot = self.widget.getPlotItem()
        plot.clear()
        p = doc.measurements.particles
        if p is None:
            self._phases(plot, doc)
            return
        unit = doc.measurements.length_unit
        hist = p.psd
        title = f"size distribution (ECD, {unit})" + (" — FAIL frame, not counted" if withheld else "")
        plot.setTitle(esc(title), size="10pt", color=DIM if withheld else FG)
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
        colour = (138, 147, 156) if withheld else (79, 195, 247)
        plot.plot(edges, counts, stepMode="center", fillLevel=0, brush=pg.mkBrush(*colour, 120),
                  pen=pg.mkPen(colour, width=1.5))
        if p.d50 is not None and not withheld:
            x = math.log10(p.d50) if log_x else p.d50
            plot.addItem(pg.InfiniteLine(pos=x, angle=90, pen=pg.mkPen("#ffffff", width=1.5,
                                                                        style=QtCore.Qt.PenStyle.DashLine)))
        plot.getAxis("bottom").setTicks([log_ticks(edges[0], edges[-1])] if log_x else None)
        plot.setLabel("left", "count")

    @staticmethod
    def _phases(plot, doc) -> None:
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


class TrendPlot:
    """The headline against acquisition time, this session only; FAIL frames as red crosses off the line."""

    def __init__(self):
        self.widget = _plot("trend")

    def paint(self, st) -> None:
        plot = self.widget.getPlotItem()
        plot.clear()
        doc = st.doc
        h = headline(doc)
        unit = f" ({h.unit})" if h.unit else ""
        pts = list(st.history)
        marked = " · × FAIL, left out" if any(q.fail for q in pts) else ""
        plot.setTitle(f"{esc(h.label)}{unit} vs time · {esc(trend_text(trend_of(doc, h.quantity)))}{marked}",
                      size="10pt")
        if not pts:
            return
        t0 = pts[0].t
        x = np.array([(q.t - t0).total_seconds() for q in pts])
        minutes = x[-1] >= 120
        if minutes:
            x = x / 60.0
        y = np.array([q.value for q in pts], float)
        fail = np.array([q.fail for q in pts])
        good = ~fail
        if good.any():
            lo = np.array([q.value - q.low if q.low is not None else 0.0 for q in pts])[good]
            hi = np.array([q.high - q.value if q.high is not None else 0.0 for q in pts])[good]
            if (lo > 0).any() or (hi > 0).any():
                plot.addItem(pg.ErrorBarItem(x=x[good], y=y[good], top=hi, bottom=lo, beam=0, pen=pg.mkPen(DIM)))
            plot.plot(x[good], y[good], pen=pg.mkPen(ACCENT, width=1.5), symbol="o", symbolSize=5,
                      symbolBrush=ACCENT, symbolPen=None)
        if fail.any():
            plot.plot(x[fail], y[fail], pen=None, symbol="x", symbolSize=9, symbolPen=pg.mkPen(VERDICT_COLOURS["fail"],
                                                                                                  width=2),
                      name="FAIL (left out)")
        plot.setLabel("bottom", "minutes" if minutes else "seconds")
