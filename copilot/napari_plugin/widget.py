"""The dock widget: endpoint, stream, connect; shows the newest frame of a running daemon with its labels coloured by
ECD. Subscribing happens on a background thread (``live.LiveFeed``); the viewer polls it on a Qt timer."""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QLabel, QLineEdit, QPushButton, QWidget

from copilot.napari_plugin.live import LiveFeed, show_newest

POLL_MS = 250


class LiveWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.feed: LiveFeed | None = None
        self.endpoint = QLineEdit("tcp://127.0.0.1:5555")
        self.snapshot = QLineEdit("tcp://127.0.0.1:5556")
        self.stream = QLineEdit()
        self.stream.setPlaceholderText("all streams")
        self.button = QPushButton("Connect")
        self.button.clicked.connect(self.toggle)
        self.status = QLabel("not connected")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("publish", self.endpoint)
        form.addRow("snapshot", self.snapshot)
        form.addRow("stream", self.stream)
        form.addRow(self.button)
        form.addRow(self.status)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    def toggle(self) -> None:
        if self.feed is None:
            self.feed = LiveFeed(self.endpoint.text().strip(), self.snapshot.text().strip() or None,
                                 self.stream.text().strip() or None).start()
            self.timer.start()
            self.button.setText("Disconnect")
            self.status.setText(f"waiting for results from {self.feed.endpoint}")
        else:
            self.disconnect_feed()

    def disconnect_feed(self) -> None:
        self.timer.stop()
        if self.feed is not None:
            self.feed.stop()
            self.feed = None
        self.button.setText("Connect")
        self.status.setText("not connected")

    def poll(self) -> None:
        """Qt timer tick: take the newest result, if any, and show it (never waits)."""
        if self.feed is None:
            return
        if self.feed.error:
            self.status.setText(self.feed.error)
            return
        newest = self.feed.take()
        if newest is None:
            return
        show_newest(self.viewer, newest)
        d = newest.doc
        p = d.measurements.particles
        size = f", D50 {p.d50:.3g} {d.measurements.length_unit}" if p is not None and p.d50 else ""
        count = f"{p.count} particles" if p is not None else d.measurements.task
        self.status.setText(f"{d.stream} {d.frame_id}: {count}{size}; verdict {d.verdict.level}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.disconnect_feed()
        super().closeEvent(event)
