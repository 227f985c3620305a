"""`copilot top`: a live terminal table of every stream a daemon publishes (works over SSH)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from copilot.publish.schema import ResultDocument

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


@dataclass
class StreamView:
    frames: int = 0
    last: ResultDocument | None = None
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=50))
    d50: deque = field(default_factory=lambda: deque(maxlen=200))


class TopModel:
    """What the view shows, updated from result documents; independent of the terminal."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamView] = {}
        self.status: dict | None = None

    def add(self, doc: ResultDocument) -> None:
        view = self.streams.setdefault(doc.stream, StreamView())
        view.frames += 1
        view.last = doc
        if "end_to_end" in doc.timings_ms:
            view.latency_ms.append(doc.timings_ms["end_to_end"])
        p = doc.measurements.particles
        if p is not None and p.d50 is not None:
            view.d50.append(p.d50)

    def table(self) -> Table:
        t = Table(title="microscope co-pilot", expand=True)
        for col in ("stream", "frames", "latency p50", "count", "D50", "D50 trend", "verdict"):
            t.add_column(col, no_wrap=col != "verdict")
        for name, v in sorted(self.streams.items()):
            d = v.last
            p = d.measurements.particles
            unit = d.measurements.length_unit
            lat = f"{np.median(v.latency_ms):.0f} ms" if v.latency_ms else "–"
            count = f"{p.count} ({p.count_edge} at edge)" if p else "–"
            d50 = f"{p.d50:.2f} {unit}" if p and p.d50 is not None else "–"
            verdict = Text(d.verdict.level.upper(), style=VERDICT_STYLE[d.verdict.level])
            if d.verdict.reasons:
                verdict.append(": " + "; ".join(d.verdict.reasons), style="default")
            t.add_row(name, str(v.frames), lat, count, d50, sparkline(list(v.d50)), verdict)
        return t

    def render(self):
        parts = [self.table()]
        if self.status:
            s = self.status
            parts.append(Text(f"daemon: {s.get('processed', 0)} processed, {s.get('quarantined', 0)} quarantined, "
                              f"{s.get('failed', 0)} failed, queues {s.get('queues')}", style="dim"))
        return Group(*parts)


def run_top(endpoint: str, snapshot: str | None, stream: str | None = None, exit_after: int | None = None,
            console: Console | None = None) -> int:
    from copilot.publish.subscriber import Subscriber

    topics = (f"result.{stream}" if stream else "result.", "status")
    model = TopModel()
    received = 0
    sub = Subscriber(endpoint, snapshot, topics=topics)
    try:
        with Live(model.render(), console=console, refresh_per_second=4, transient=False) as live:
            while exit_after is None or received < exit_after:
                msg = sub.recv(timeout_s=0.25)
                if msg is None:
                    continue
                if msg.topic.startswith("result."):
                    model.add(msg.doc)
                    received += 1
                else:
                    model.status = msg.doc
                live.update(model.render())
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0
