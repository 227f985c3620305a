"""Qt for the overlay (the optional ``overlay`` extra): the imports, the palette and small label helpers."""

from __future__ import annotations

import os

MISSING_QT = ("copilot overlay needs the 'overlay' extra (PySide6-Essentials and pyqtgraph):\n"
              "    pip install 'copilot[overlay]'      (or: .venv/bin/pip install PySide6-Essentials pyqtgraph)\n"
              "`copilot top` shows the same numbers in a terminal without it.")

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
try:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtGui, QtWidgets
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(MISSING_QT) from exc

BG = "#101214"
FG = "#d8dde3"
DIM = "#8a939c"
ACCENT = "#4fc3f7"
AMBER = "#f5b700"
STALE_BG = "#5c1a1b"  # the banner behind "no results since …"
pg.setConfigOptions(imageAxisOrder="row-major", antialias=True, background=BG, foreground=FG)

__all__ = ["pg", "QtCore", "QtGui", "QtWidgets", "MISSING_QT", "BG", "FG", "DIM", "ACCENT", "AMBER", "STALE_BG",
           "label", "esc", "hex_rgb"]


def label(text: str = "", size: int = 11, bold: bool = False, colour: str = FG, wrap: bool = False) -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(text)
    f = lab.font()
    f.setPointSize(size)
    f.setBold(bold)
    lab.setFont(f)
    lab.setStyleSheet(f"color: {colour};")
    lab.setWordWrap(wrap)
    lab.setTextFormat(QtCore.Qt.TextFormat.RichText)
    return lab


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def hex_rgb(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb[:3])
