"""Header: the verdict light, the stream and frame, latency — and, first of all, whether the daemon is live."""

from __future__ import annotations

from copilot.ui.qt import DIM, FG, STALE_BG, QtWidgets, esc, label
from copilot.ui.text import UNKNOWN_COLOUR, verdict_colour


class Header(QtWidgets.QWidget):
    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.name = name
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(2)
        self.banner = label("", 14, bold=True, colour="#ffffff", wrap=True)
        self.banner.setStyleSheet(f"color: #ffffff; background: {STALE_BG}; padding: 6px; border-radius: 4px;")
        self.banner.hide()
        root.addWidget(self.banner)
        row = QtWidgets.QHBoxLayout()
        self.light = QtWidgets.QLabel()
        self.light.setFixedSize(26, 26)
        self.verdict = label("", 16, bold=True)
        self.title = label(esc(name), 13, bold=True)
        self.title.setMinimumWidth(60)
        self.latency = label("", 11, colour=DIM)
        row.addWidget(self.light)
        row.addWidget(self.verdict)
        row.addSpacing(10)
        row.addWidget(self.title, 1)
        row.addWidget(self.latency)
        root.addLayout(row)
        self.reasons = label("waiting for the first result…", 11, colour=DIM, wrap=True)
        self.session = label("", 10, colour=DIM, wrap=True)
        self.session.hide()
        root.addWidget(self.reasons)
        root.addWidget(self.session)
        self.set_light(None)

    def set_light(self, level: str | None, live: bool = True) -> None:
        c = verdict_colour(level) if live else UNKNOWN_COLOUR
        self.light.setStyleSheet(f"background: {c}; border-radius: 13px; border: 2px solid #000000;")
        text = (level or "…").upper() if live else "NOT LIVE"
        self.verdict.setText(f'<span style="color:{c}">{text}</span>')

    def show_liveness(self, text: str) -> None:
        """The banner: empty text hides it."""
        self.banner.setText(esc(text))
        self.banner.setVisible(bool(text))

    def paint(self, doc, lines: dict[str, str], live: bool) -> None:
        self.set_light(doc.verdict.level, live)
        self.title.setText(f"<b>{esc(self.name)}</b> <span style='color:{DIM}'>· {esc(doc.frame_id)}</span>")
        self.reasons.setText(esc(lines["reasons"]))
        self.reasons.setStyleSheet(f"color: {FG if doc.verdict.reasons else DIM};")
        self.latency.setText(esc(lines["latency"]) if live else "")
        self.session.setText(esc(lines.get("session", "")))
        self.session.setVisible(bool(lines.get("session")))
        self.show_liveness(lines.get("liveness", ""))
