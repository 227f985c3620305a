"""`copilot overlay`: the newest frame of each stream with its particle outlines, numbers, PSD and trend, on screen.

Needs the ``overlay`` extra (PySide6-Essentials, pyqtgraph). What it shows is decided in plain Python
(:mod:`copilot.ui.model`, :mod:`copilot.ui.text`, :mod:`copilot.ui.raster`); the widgets live in
:mod:`copilot.ui.panels`, one per panel. A 10 Hz timer drains the subscribers (:class:`copilot.ui.client.Client`)
and repaints a stream when its newest result or its daemon's liveness changed, so a burst of results paints once.

Modes:

- a normal window (geometry remembered);
- ``click_through``: translucent, always on top, frameless and transparent for mouse input, to sit over the
  vendor's live view (its own remembered geometry; place it once with ``adjust=True``, which shows the same
  translucent window with a title bar so it can be moved and resized);
- ``snapshot``: connect, wait for the first result, render offscreen, save a PNG, exit.

Closing the window (also through the window manager) ends the process; so do Ctrl+C and SIGTERM.
``health_log`` appends a JSON line every few seconds (None's reference count, paints, resident memory) so an
all-day run can be watched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from copilot.ui.qt import BG, DIM, FG, QtCore, QtWidgets, esc, label
from copilot.ui.client import Client, Endpoint
from copilot.ui.model import ViewModel
from copilot.ui.text import adaptation_text
from copilot.ui.panels.stream import StreamPanel

log = logging.getLogger(__name__)


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
        self.waiting = label(f"waiting for results from {esc(ends)} …", 14, colour=DIM, wrap=True)
        self.waiting.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.row.addWidget(self.waiting)
        self.status = label("", 9, colour=DIM, wrap=True)
        self.quit_on_close = False
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
        now = time.time()
        painted = 0
        for name, st in sorted(self.model.streams.items()):
            if st.doc is not None:
                painted += self.panel(name).refresh(now=now)
        self._status_line(now)
        return painted

    def _status_line(self, now: float) -> None:
        parts = []
        for c in self.client.connections:
            s = self.model.status.get(c.name) or {}
            live = self.model.liveness(c.name, now)
            extra = f", daemon {s.get('processed', 0)} processed" if s and live.live else ""
            parts.append(f"{c.name}: {live.state}{extra}")
            if live.live and (adapting := adaptation_text(s)):
                parts.append(adapting)
            if self.waiting is not None and not live.live:
                self.waiting.setText(esc(live.text(now)))
        for name, st in sorted(self.model.streams.items()):
            if st.results:
                parts.append(f"{name}: {st.results} results, {st.stale} skipped as stale")
        self.status.setText(esc(" · ".join(parts)))

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
        if self.quit_on_close:  # a click-through (Tool) window does not end the event loop by itself
            QtWidgets.QApplication.quit()


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


class HealthLog:
    """Appends ``{"t_s", "none_refs", "paints", "results", "rss_kb"}`` as a JSON line every ``interval_s``."""

    def __init__(self, path: Path, window: OverlayWindow, interval_s: float = 5.0):
        self.path = Path(path)
        self.window = window
        self.t0 = time.monotonic()
        self.timer = QtCore.QTimer()
        self.timer.timeout.connect(self.write)
        self.timer.start(int(interval_s * 1000))
        self.write()

    def write(self) -> None:
        rss = None
        try:
            rss = int(next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines()
                           if ln.startswith("VmRSS:")))
        except (OSError, StopIteration, ValueError):
            pass
        line = {"t_s": round(time.monotonic() - self.t0, 2), "none_refs": sys.getrefcount(None),
                "paints": sum(p.paints for p in self.window.panels.values()),
                "results": sum(st.results for st in self.window.model.streams.values()), "rss_kb": rss}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def run_overlay(endpoints: Sequence[str | Endpoint], streams: Sequence[str] | None = None, *,
                click_through: bool = False, adjust: bool = False, opacity: float = 0.7,
                snapshot: Path | None = None, timeout_s: float = 30.0, size: tuple[int, int] = (1280, 760),
                stale_s: float = 6.0, listen_s: float = 0.0, health_log: Path | None = None,
                history: int = 500) -> int:
    """``copilot overlay``: returns the exit status."""
    if snapshot is None and QtWidgets.QApplication.instance() is None and _no_display() \
            and os.environ.get("QT_QPA_PLATFORM", "") != "offscreen":
        raise OverlayError("no display to draw on (DISPLAY/WAYLAND_DISPLAY unset): over SSH use `copilot top`, "
                           "or `copilot overlay --snapshot FILE.png` to render to a file")
    app = ensure_app(offscreen=snapshot is not None)
    opacity = min(1.0, max(0.1, opacity))
    client = Client(endpoints, streams, stale_s=stale_s, model=ViewModel(streams, history_points=history))
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
        window.quit_on_close = True
        window.show()
        for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl+C in the terminal closes a click-through window too
            signal.signal(sig, lambda *_: app.quit())
        wake = QtCore.QTimer()  # Python runs signal handlers only when it runs: wake it even with no window shown
        wake.timeout.connect(lambda: None)
        wake.start(250)
        health = HealthLog(health_log, window) if health_log is not None else None
        app.aboutToQuit.connect(window.close)
        app.exec()
        wake.stop()
        if health is not None:
            health.write()
        return 0
    finally:
        client.close()
