"""`copilot demo`: a simulated microscope writes frames, the daemon analyses them, a live view shows the results."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from copilot.config import load_settings
from copilot.daemon import Daemon
from copilot.errors import UserError
from copilot.ui.top import TopModel

console = Console()
STAGES = ("read", "infer", "analyze", "assess", "end_to_end")


def latency_table(docs) -> Table:
    t = Table(title=f"per-stage latency over {len(docs)} frames (ms)")
    for col in ("stage", "p50", "p95", "max"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for stage in STAGES:
        v = np.array([d.timings_ms[stage] for d in docs if stage in d.timings_ms])
        if v.size:
            t.add_row(stage, f"{np.percentile(v, 50):.0f}", f"{np.percentile(v, 95):.0f}", f"{v.max():.0f}")
    return t


DEMO_ENTRIES = {"acquisition", "state"}


def clear_demo_folder(folder: Path) -> None:
    """Empty a previous demo's folder; refuse any other non-empty folder (the demo never deletes someone's data)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give --state-dir a new or empty folder")
    entries = {p.name for p in folder.iterdir()}
    if entries - DEMO_ENTRIES:
        raise UserError(f"{folder} holds more than a previous demo ({', '.join(sorted(entries - DEMO_ENTRIES)[:3])}"
                        "…): give --state-dir a new or empty folder")
    shutil.rmtree(folder)


def run_demo(frames: int = 40, interval_s: float = 0.5, size_px: int = 1024, live: bool = True,
             state_dir: Path = Path("demo-data"), seed: int = 0) -> int:
    from copilot.publish.subscriber import Subscriber
    from copilot.sim.microscope import run_microscope

    state_dir = Path(state_dir)
    clear_demo_folder(state_dir)
    acquisition = state_dir / "acquisition"
    acquisition.mkdir(parents=True)
    settings = load_settings(None, {
        "daemon": {"stream": "demo-stem", "state_dir": str(state_dir / "state")},
        "source": {"kind": "directory", "watch": str(acquisition), "settle_s": 0.2},
    })
    daemon = Daemon(settings)
    daemon_thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    daemon_thread.start()
    sub = Subscriber(settings.publish.pub_endpoint, settings.publish.snapshot_endpoint, topics=("result.", "status"))
    time.sleep(0.3)  # let the subscription reach the publisher before the first frame
    microscope = threading.Thread(
        target=run_microscope, args=(acquisition, frames, interval_s, seed), kwargs={"size_px": size_px}, daemon=True
    )
    microscope.start()
    console.print(f"simulated microscope: {frames} frames of {size_px}² every {interval_s:g} s → {acquisition}")
    model = TopModel()
    docs = []
    deadline = time.time() + frames * interval_s + 60
    try:
        with Live(model.render(), console=console, refresh_per_second=4, transient=False) if live else _Null() as view:
            while len(docs) < frames and time.time() < deadline:
                msg = sub.recv(timeout_s=0.25)
                if msg is None:
                    continue
                if msg.topic.startswith("result."):
                    docs.append(msg.doc)
                    model.add(msg.doc)
                else:
                    model.status = msg.doc
                if live:
                    view.update(model.render())
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        sub.close()
        daemon.request_stop()
        daemon_thread.join(30)
    if not docs:
        console.print("[red]no results received[/red]")
        return 1
    console.print(latency_table(docs))
    d50 = [(d.acquired_at.timestamp(), d.measurements.particles.d50) for d in docs
           if d.measurements.particles and d.measurements.particles.d50]
    verdicts = {lvl: sum(d.verdict.level == lvl for d in docs) for lvl in ("ok", "warn", "fail")}
    console.print(f"{len(docs)} frames analysed; verdicts {verdicts}; "
                  f"quarantined {daemon.pipeline.stats.quarantined}")
    if len(d50) >= 2:
        t, v = np.array(d50).T
        slope = np.polyfit((t - t[0]) / 60.0, v, 1)[0]
        console.print(f"D50 {v[0]:.2f} nm → {v[-1]:.2f} nm (fit slope {slope:+.2f} nm/min of acquisition time)")
    return 0 if len(docs) >= frames else 1


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
