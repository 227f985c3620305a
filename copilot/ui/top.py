"""`copilot top`: a live terminal view of every stream a daemon publishes (works over SSH).

The same information as ``copilot overlay``, without the image: whether the daemon is live (first), then per stream
the count, D50 (or the phase fraction) with its 95 % interval — withheld on a FAIL frame — density, sparkline and
trend, sufficiency, latency, the verdict with its reasons; below, this session's recent alerts with their time and
frame, the daemon's status, and the last log lines. It redraws on a timer (so a silent daemon shows as silent), and
log messages go into their own lines of the screen instead of through it.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from copilot.document.schema import ResultDocument
from copilot.ui.model import ViewModel
from copilot.ui.text import (adaptation_text, alert_text, clock, count_text, fmt_num, headline, is_enough,
                              sufficiency_text, trend_of)

SPARK = "▁▂▃▄▅▆▇█"
VERDICT_STYLE = {"ok": "bold green", "warn": "bold yellow", "fail": "bold red"}
REDRAW_S = 0.5
STALE_STYLE = "bold white on red"


def sparkline(values: list[float], width: int = 24) -> str:
    """Unicode sparkline of the last ``width`` values.

    >>> sparkline([1, 2, 3, 4])
    '▁▃▆█'
    """
    v = np.asarray([x for x in values if x is not None][-width:], float)
    if v.size == 0:
        return ""
    lo, hi = v.min(), v.max()
    idx = np.zeros(v.size, int) if hi - lo < 1e-12 else np.round((v - lo) / (hi - lo) * (len(SPARK) - 1)).astype(int)
    return "".join(SPARK[i] for i in idx)


class LogLines(logging.Handler):
    """Keeps the last log records for the screen's log area, instead of letting them scroll through it."""

    def __init__(self, n: int = 3):
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=n)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{clock(record.created)} {record.levelname.lower()}: {record.getMessage()}")


class TopModel:
    """What the terminal shows; fed with result documents (``add``) or subscriber messages (``ingest``)."""

    def __init__(self, streams: list[str] | None = None, view: ViewModel | None = None) -> None:
        self.view = view or ViewModel(streams)
        self.logs: LogLines | None = None

    @property
    def streams(self):
        return self.view.streams

    @property
    def status(self) -> dict | None:
        """The newest status heartbeat of any daemon."""
        if not self.view.status_at:
            return None
        return self.view.status[max(self.view.status_at, key=self.view.status_at.get)]

    def add(self, doc: ResultDocument, labels=None, source: str = "") -> None:
        self.view.add_result(doc, labels, source)

    def ingest(self, msg, source: str = "") -> None:
        self.view.ingest(msg, source)

    def stream_panel(self, name: str, now: float | None = None) -> Panel:
        """One stream as a key/value table in a box titled with its name, frame and verdict (fits 80 columns)."""
        now = time.time() if now is None else now
        st = self.view.streams[name]
        d = st.doc
        if d is None:
            return Panel(Text("waiting for the first result", style="dim"), title=name, title_align="left")
        lines = self.view.lines(name, now)
        live = self.view.stream_liveness(name, now).live or not st.source
        p = d.measurements.particles
        h = headline(d)
        g = Table.grid(padding=(0, 2))
        g.add_column(style="dim", no_wrap=True)
        g.add_column()
        if p is not None:
            edge = f" ({p.count_edge} cut by the edge: counted, not sized)" if p.count_edge else ""
            g.add_row("count", Text.assemble((str(p.count), "bold"), edge))
        elif d.measurements.defects is not None:
            g.add_row("count", count_text(d))
        elif d.measurements.grains is not None:
            g.add_row("grains", count_text(d))
        if lines["withheld"]:
            g.add_row(h.label, Text.assemble(("withheld", "bold dim"), "  ", (lines["withheld"], "red")))
        else:
            value = Text(lines["value"], style="bold")
            if lines["interval"]:
                value.append(f"   {lines['interval']}", style="default")
            g.add_row(h.label, value)
        if p is not None or d.measurements.defects is not None or d.measurements.grains is not None:
            g.add_row("density", lines["density"])
        if lines["dose"]:
            g.add_row("dose", lines["dose"])
        if lines["inclusions"]:
            g.add_row("inclusions", lines["inclusions"])
        predicted = d.reliability.predicted_per_class
        if any(k.endswith("_f1") for k in predicted):
            g.add_row("predicted F1", ", ".join(f"{k[:-3]} {v:.2f}" for k, v in predicted.items() if k.endswith("_f1")))
        if "g_abs_error" in predicted:
            g.add_row("predicted G error", f"±{predicted['g_abs_error']:.2f} (boundary F1 "
                                           f"{fmt_num(d.reliability.predicted_f1, 2)})")
        trend = trend_of(d, h.quantity)
        line = Text(sparkline([q.value for q in st.history if not q.fail], width=32), style="cyan")
        line.append(("  " if line.plain else "") + lines["trend"].split(" trend ", 1)[-1],
                    style="bold" if trend is not None and trend.trending else "default")
        g.add_row("trend", line)
        g.add_row("sufficiency", Text(sufficiency_text(d), style="green" if is_enough(d) else "yellow"))
        lat = f"{np.median(st.latency_ms):.0f} ms frame→result (median of {len(st.latency_ms)})" if st.latency_ms \
            else "–"
        if st.delivery_ms is not None and 0 <= st.delivery_ms < 60_000 and not st.from_snapshot:
            lat += f", +{st.delivery_ms:.0f} ms to here"
        g.add_row("latency", lat)
        verdict = Text(d.verdict.level.upper(), style=VERDICT_STYLE[d.verdict.level])
        verdict.append(": " + "; ".join(d.verdict.reasons) if d.verdict.reasons else "  no concerns", style="default")
        g.add_row("verdict", verdict)
        cal = f"{d.calibration.nm_per_px:.3g} nm/px" if d.calibration.calibrated else "uncalibrated (px)"
        g.add_row("frame", Text(f"{d.frame_id} · {cal} · {d.model.name} {d.model.version} · {st.results} received",
                                style="dim"))
        if st.session_note:
            g.add_row("session", Text(st.session_note, style="dim"))
        body = g if live else Group(Text(lines["liveness"], style=STALE_STYLE), Text(""), g)
        level = d.verdict.level if live else None
        title = Text.assemble((name, "bold"), "  ", (f"● {level.upper()}", VERDICT_STYLE[level]) if level
                              else ("● NOT LIVE", "bold white"))
        border = VERDICT_STYLE[level].split()[-1] if level else "red"
        return Panel(body, title=title, title_align="left", border_style=border if live else "red",
                     style="default" if live else "dim")

    def table(self) -> Group:
        """Every stream's panel (kept under its old name: scripts call it)."""
        return Group(*(self.stream_panel(n) for n in sorted(self.view.streams)))

    def alerts(self, n: int = 5, now: float | None = None) -> Table | None:
        """This session's alerts that have not aged out, newest last, with their time and frame."""
        now = time.time() if now is None else now
        rows = [(a["received_at"], name, a) for name in self.view.streams for a in self.view.alerts(name, now)]
        if not rows:
            return None
        t = Table(title="last alerts (this session)", title_justify="left", expand=True, show_edge=False, box=None)
        t.add_column("stream", no_wrap=True)
        t.add_column("alert")
        for _, name, a in sorted(rows, key=lambda r: r[0])[-n:]:
            style = "dim" if a.get("severity") == "info" else "yellow"
            t.add_row(name, Text(alert_text(a), style=style))
        return t

    def render(self, now: float | None = None):
        now = time.time() if now is None else now
        parts: list = [Text.assemble(("microscope co-pilot", "bold"), (f"   {clock(now)}", "dim"))]
        for source in sorted(self.view.heard_at):
            live = self.view.liveness(source, now)
            if not live.live and not any(st.source == source and st.doc is not None
                                         for st in self.view.streams.values()):
                parts.append(Text(f"{source}: {live.text(now)}", style=STALE_STYLE if live.state != "waiting"
                                  else "dim"))
        parts += [self.stream_panel(n, now) for n in sorted(self.view.streams)]
        if not self.view.streams:
            parts.append(Text("waiting for results…", style="dim"))
        alerts = self.alerts(now=now)
        if alerts is not None:
            parts.append(alerts)
        s = self.status
        if s and all(self.view.liveness(src, now).live for src in self.view.status):
            state = f"{s['state']}, " if s.get("state") else ""
            parts.append(Text(f"daemon: {state}{s.get('processed', 0)} processed, {s.get('quarantined', 0)} "
                              f"quarantined, {s.get('failed', 0)} failed, queues {s.get('queues')}", style="dim"))
            if adapting := adaptation_text(s):
                parts.append(Text(adapting, style="bold"))
        if self.logs is not None and self.logs.lines:
            parts.append(Text("\n".join(self.logs.lines), style="dim italic"))
        return Group(*parts)


def run_top(endpoint: str, snapshot: str | None, stream: str | None = None, exit_after: int | None = None,
            console: Console | None = None, stale_s: float = 6.0) -> int:
    """Live view until Ctrl+C (or ``exit_after`` results); redraws every ``REDRAW_S`` whatever arrives."""
    from copilot.ui.client import Client, Endpoint

    streams = [stream] if stream else None
    model = TopModel(streams)
    root = logging.getLogger()
    model.logs = LogLines()
    saved = root.handlers[:]
    root.handlers = [model.logs]  # log lines belong in the log area, not scrolled through the live screen
    client = None
    try:
        client = Client([Endpoint(endpoint, snapshot)], streams, kinds=("result", "alert"), model=model.view,
                        stale_s=stale_s)
        with Live(model.render(), console=console, auto_refresh=False, transient=False,
                  redirect_stderr=False, redirect_stdout=False) as live:
            drawn = 0.0
            while exit_after is None or sum(st.results for st in model.streams.values()) < exit_after:
                changed = bool(client.poll())
                now = time.time()
                if changed or now - drawn >= REDRAW_S:
                    live.update(model.render(now), refresh=True)
                    drawn = now
                time.sleep(0.05)
            live.update(model.render(), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        root.handlers = saved
        if client is not None:
            client.close()
    return 0
