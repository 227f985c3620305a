"""`copilot top`: a live terminal view of every stream a daemon publishes (works over SSH).

The same information as ``copilot overlay``, without the image: per stream the count, D50 (or the phase fraction)
± its 95 % interval, density, sparkline and slope of the trend, sufficiency, end-to-end latency, the verdict with its
reasons; below, the last alerts and the daemon's status. The state is :class:`copilot.ui.state.ViewModel`, so what
``top`` says and what the overlay draws come from one place.
"""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from copilot.document.schema import ResultDocument
from copilot.ui.state import (
    ViewModel,
    fmt_num,
    headline,
    sufficiency_of,
    sufficiency_text,
    trend_of,
    trend_text,
)

SPARK = "▁▂▃▄▅▆▇█"
VERDICT_STYLE = {"ok": "bold green", "warn": "bold yellow", "fail": "bold red"}


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


class TopModel:
    """What the terminal shows; fed with result documents (``add``) or subscriber messages (``ingest``)."""

    def __init__(self, streams: list[str] | None = None) -> None:
        self.view = ViewModel(streams)
        self.status: dict | None = None
        self.connections: dict[str, str] = {}

    @property
    def streams(self):
        return self.view.streams

    def add(self, doc: ResultDocument, labels=None) -> None:
        self.view.add_result(doc, labels)

    def ingest(self, msg, source: str = "") -> None:
        if msg.kind == "status":
            self.status = msg.doc
        self.view.ingest(msg, source)

    def stream_panel(self, name: str) -> Panel:
        """One stream as a key/value table in a box titled with its name, frame and verdict (fits 80 columns)."""
        st = self.view.streams[name]
        d = st.doc
        if d is None:
            return Panel(Text("waiting for the first result", style="dim"), title=name, title_align="left")
        p = d.measurements.particles
        h = headline(d)
        g = Table.grid(padding=(0, 2))
        g.add_column(style="dim", no_wrap=True)
        g.add_column()
        if p is not None:
            edge = f" ({p.count_edge} cut by the edge: counted, not sized)" if p.count_edge else ""
            g.add_row("count", Text.assemble((str(p.count), "bold"), edge))
        value = Text(h.plus_minus(), style="bold")
        if h.low is not None and h.high is not None:
            value.append(f"   95 % interval {fmt_num(h.low)}–{fmt_num(h.high)}", style="default")
        g.add_row(h.label, value)
        if p is not None:
            density = f"{fmt_num(p.density_per_um2)} /µm²" if p.density_per_um2 is not None else "– (uncalibrated)"
            g.add_row("density", density)
        trend = trend_of(d, h.quantity)
        line = Text(sparkline([q.value for q in st.history], width=32), style="cyan")
        line.append(("  " if line.plain else "") + trend_text(trend),
                    style="bold" if trend is not None and trend.trending else "default")
        g.add_row("trend", line)
        s = sufficiency_of(d)
        g.add_row("sufficiency", Text(sufficiency_text(d), style="green" if s is not None and s.enough else "yellow"))
        lat = f"{np.median(st.latency_ms):.0f} ms frame→result (median of {len(st.latency_ms)})" if st.latency_ms \
            else "–"
        if st.delivery_ms is not None and 0 <= st.delivery_ms < 60_000 and not st.from_snapshot:
            lat += f", +{st.delivery_ms:.0f} ms to here"
        g.add_row("latency", lat)
        verdict = Text(d.verdict.level.upper(), style=VERDICT_STYLE[d.verdict.level])
        verdict.append(": " + "; ".join(d.verdict.reasons) if d.verdict.reasons else "  no concerns", style="default")
        g.add_row("verdict", verdict)
        cal = f"{fmt_num(d.calibration.nm_per_px)} nm/px" if d.calibration.calibrated else "uncalibrated (px)"
        g.add_row("frame", Text(f"{d.frame_id} · {cal} · {d.model.name} {d.model.version} · {st.results} received",
                                style="dim"))
        title = Text.assemble((name, "bold"), "  ", (f"● {d.verdict.level.upper()}", VERDICT_STYLE[d.verdict.level]))
        return Panel(g, title=title, title_align="left", border_style=VERDICT_STYLE[d.verdict.level].split()[-1])

    def table(self) -> Group:
        """Every stream's panel (kept under its old name: ``demo`` and scripts call it)."""
        return Group(*(self.stream_panel(n) for n in sorted(self.view.streams)))

    def alerts(self, n: int = 5) -> Table | None:
        rows = [(a.get("received_at", 0.0), name, a) for name, st in self.view.streams.items() for a in st.alerts]
        if not rows:
            return None
        t = Table(title="last alerts", title_justify="left", expand=True, show_edge=False, box=None)
        t.add_column("time", no_wrap=True, style="dim")
        t.add_column("stream", no_wrap=True)
        t.add_column("frame", no_wrap=True, style="dim")
        t.add_column("alert")
        for at, name, a in sorted(rows, key=lambda r: r[0])[-n:]:
            when = datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else ""
            style = "yellow" if a.get("kind") in ("jump", "trend-start") else "default"
            t.add_row(when, name, str(a.get("frame_id") or ""), Text(str(a.get("message", a.get("kind"))), style=style))
        return t

    def render(self):
        parts = [Text("microscope co-pilot", style="bold")] + [self.stream_panel(n) for n in sorted(self.view.streams)]
        if not self.view.streams:
            parts.append(Text("waiting for results…", style="dim"))
        alerts = self.alerts()
        if alerts is not None:
            parts.append(alerts)
        line = Text(style="dim")
        if self.status:
            s = self.status
            state = f"{s['state']}, " if s.get("state") else ""
            line.append(f"daemon: {state}{s.get('processed', 0)} processed, {s.get('quarantined', 0)} quarantined, "
                        f"{s.get('failed', 0)} failed, queues {s.get('queues')}")
            dropped = (s.get("publisher") or {}).get("dropped")
            if dropped:
                line.append(f", {dropped} dropped by the publisher")
        if getattr(self, "skipped", 0):
            line.append(f"  view skipped {self.skipped} older result(s) (newest shown)")
        for name, state in self.connections.items():
            if state != "live":
                line.append(f"  {name}: {state}", style="yellow")
        if line.plain:
            parts.append(line)
        return Group(*parts)


def run_top(endpoint: str, snapshot: str | None, stream: str | None = None, exit_after: int | None = None,
            console: Console | None = None, stale_s: float = 6.0) -> int:
    """Live view until Ctrl+C (or ``exit_after`` results); reconnects and refetches the snapshot after restarts."""
    from copilot.ui.client import Client, Endpoint

    streams = [stream] if stream else None
    model = TopModel(streams)
    client = Client([Endpoint(endpoint, snapshot)], streams, kinds=("result", "alert"), model=model.view,
                    stale_s=stale_s)
    try:
        with Live(model.render(), console=console, refresh_per_second=4, transient=False) as live:
            while exit_after is None or sum(st.results for st in model.streams.values()) < exit_after:
                changed = False
                for c in client.connections:
                    for msg in c.drain():
                        model.ingest(msg, c.name)
                        changed = True
                model.connections = client.states()
                model.skipped = client.skipped()
                if changed:
                    live.update(model.render())
                else:
                    time.sleep(0.1)
            live.update(model.render())
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0
