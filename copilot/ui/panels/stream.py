"""One stream's panel: the header above the frame view, the numbers and the two plots beside it."""

from __future__ import annotations

import time

from copilot.ui.model import ViewModel
from copilot.ui.panels.frame_view import FrameView
from copilot.ui.panels.header import Header
from copilot.ui.panels.numbers import Numbers
from copilot.ui.panels.plots import SizeDistribution, TrendPlot
from copilot.ui.qt import BG, QtWidgets


class StreamPanel(QtWidgets.QFrame):
    def __init__(self, model: ViewModel, name: str, parent=None):
        super().__init__(parent)
        self.model = model
        self.name = name
        self.paints = 0
        self.shown_frame_id: str | None = None
        self.shown_count: int | None = None
        self.shown_live: bool | None = None
        self._painted_version = -1
        self._liveness_text: str | None = None
        self.setStyleSheet(f"StreamPanel {{ background: {BG}; }}")

        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(8, 6, 8, 6)
        root.setSpacing(4)
        self.header = Header(name)
        root.addWidget(self.header)
        body = QtWidgets.QHBoxLayout()
        body.setSpacing(8)
        self.frame = FrameView()
        body.addWidget(self.frame, 3)
        side = QtWidgets.QVBoxLayout()
        side.setSpacing(4)
        self.numbers = Numbers()
        self.psd = SizeDistribution()
        self.trend = TrendPlot()
        side.addWidget(self.numbers)
        side.addWidget(self.psd.widget, 1)
        side.addWidget(self.trend.widget, 1)
        side_w = QtWidgets.QWidget()
        side_w.setLayout(side)
        side_w.setMinimumWidth(200)
        side_w.setMaximumWidth(400)
        body.addWidget(side_w, 2)
        root.addLayout(body, 1)

    # kept on the panel for tests and snapshot checks
    def frame_to_window(self, x_px: float, y_px: float) -> tuple[float, float]:
        return self.frame.frame_to_window(x_px, y_px)

    def view_scale(self) -> float:
        """Screen pixels per frame pixel."""
        (x0, _), (x1, _) = self.frame_to_window(0, 0), self.frame_to_window(100, 0)
        return abs(x1 - x0) / 100.0

    def refresh(self, force: bool = False, now: float | None = None) -> bool:
        """Repaint if the newest result (or its preview) or the daemon's liveness changed; returns whether it did."""
        now = time.time() if now is None else now
        st = self.model.streams.get(self.name)
        if st is None or st.doc is None:
            return False
        live = self.model.stream_liveness(self.name, now)
        if st.version == self._painted_version and live.live == self.shown_live and not force:
            if not live.live and live.text(now) != self._liveness_text:  # "nothing heard for N s" counts on
                self._show_liveness(live.text(now))
            return False
        if not force and not st.ready(now) and live.live == self.shown_live:
            return False  # its preview is a few ms behind: paint both together on the next tick
        self._painted_version = st.version
        self.paints += 1
        doc = st.doc
        self.shown_frame_id = doc.frame_id
        self.shown_count = doc.measurements.particles.count if doc.measurements.particles else None
        self.shown_live = live.live
        lines = self.model.lines(self.name, now)
        self.header.paint(doc, lines, live.live)
        self.frame.paint(st, live.live, lines["liveness"])
        self.numbers.paint(st, lines, self.model.alerts(self.name, now), live.live)
        self.psd.paint(doc, lines["withheld"])
        self.trend.paint(st)
        self._liveness_text = lines["liveness"]
        return True

    def _show_liveness(self, text: str) -> None:
        self._liveness_text = text
        self.header.show_liveness(text)
        self.frame.set_live(False, text)
