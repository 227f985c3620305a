"""`copilot demo`: a simulated microscope writes frames, the daemon analyses them, a live view shows the results.

The simulated sintering run grows the particles by ``GROWTH_BUDGET_NM`` of radius over the whole demo, however many
frames it has: that keeps the particles in the size range the shipped model was trained on (D50 about 6 → 10 nm),
so the demo shows the product working. The closing summary leaves FAIL frames out, as the live view does.
"""

from __future__ import annotations

import re
import signal
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from copilot.analysis.series import fit_slope
from copilot.config import load_settings
from copilot.errors import UserError
from copilot.ui.top import TopModel

console = Console()
STAGES = ("read", "infer", "analyze", "assess", "end_to_end")
GROWTH_BUDGET_NM = 2.0  # radius growth over the whole demo: D50 ≈ 6 → 10 nm, inside the shipped model's range
TIME_SCALE = 30.0  # simulated seconds per wall-clock second


class DemoError(RuntimeError):
    """Something the user must fix before the demo can run (one line, exit status 2)."""


def latency_table(docs) -> Table:
    t = Table(title=f"per-stage latency over {len(docs)} frames (ms)")
    for col in ("stage", "p50", "p95", "max"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for stage in STAGES:
        v = np.array([d.timings_ms[stage] for d in docs if stage in d.timings_ms])
        if v.size:
            t.add_row(stage, f"{np.percentile(v, 50):.0f}", f"{np.percentile(v, 95):.0f}", f"{v.max():.0f}")
    return t


def growth_rate(frames: int, interval_s: float) -> float:
    """Radius growth (nm per simulated minute) that spends ``GROWTH_BUDGET_NM`` over the demo."""
    minutes = max(frames - 1, 1) * interval_s * TIME_SCALE / 60.0
    return GROWTH_BUDGET_NM / minutes


def check_free(endpoint: str) -> None:
    """A tcp endpoint another process (a running demo or daemon) already holds → :class:`DemoError`."""
    m = re.fullmatch(r"tcp://([^:]+):(\d+)", endpoint)
    if not m:
        return
    with socket.socket() as s:
        try:
            s.bind((m.group(1), int(m.group(2))))
        except OSError:
            raise DemoError(f"{endpoint} is in use — another `copilot demo` or daemon is running; stop it first "
                            f"(or watch it with `copilot top`)") from None


def summary_lines(docs) -> list[str]:
    """The closing summary: verdicts, and D50 growth from the frames that stand (FAIL frames left out)."""
    verdicts = {lvl: sum(d.verdict.level == lvl for d in docs) for lvl in ("ok", "warn", "fail")}
    out = [f"{len(docs)} frames analysed; verdicts {verdicts}"]
    good = [(d.acquired_at.timestamp(), d.measurements.particles.d50) for d in docs
            if d.verdict.level != "fail" and d.measurements.particles and d.measurements.particles.d50]
    left_out = f" ({verdicts['fail']} FAIL frames left out)" if verdicts["fail"] else ""
    if len(good) >= 3:
        t, v = np.array(good).T
        fit = fit_slope((t - t[0]) / 60.0, v)
        if fit is not None:
            slope, low, high, _, _ = fit
            out.append(f"D50 {v[0]:.2f} nm → {v[-1]:.2f} nm over {len(good)} frames{left_out}; growth "
                       f"{slope:+.2f} nm/min of acquisition time (95 % CI {low:+.2f} to {high:+.2f})")
    elif good:
        out.append(f"D50 {good[-1][1]:.2f} nm (too few frames that stand for a growth rate){left_out}")
    else:
        out.append(f"no frame stood (all FAIL): no size to report{left_out}")
    return out


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
    from copilot.daemon import Daemon
    from copilot.publish.subscriber import Subscriber
    from copilot.sim.microscope import run_microscope

    settings = load_settings(None, {
        "daemon": {"stream": "demo-stem", "state_dir": str(Path(state_dir) / "state")},
        "source": {"kind": "directory", "watch": str(Path(state_dir) / "acquisition"), "settle_s": 0.2},
    })
    try:
        for ep in (settings.publish.pub_endpoint, settings.publish.snapshot_endpoint):
            check_free(ep)  # before anything is deleted: the state folder may be a running demo's
    except DemoError as exc:
        console.print(f"copilot demo: {exc}", highlight=False, soft_wrap=True)
        return 2
    state_dir = Path(state_dir)
    clear_demo_folder(state_dir)
    acquisition = state_dir / "acquisition"
    acquisition.mkdir(parents=True)
    daemon = Daemon(settings)
    daemon_thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    daemon_thread.start()
    sub = Subscriber(settings.publish.pub_endpoint, settings.publish.snapshot_endpoint, topics=("result.", "status"))
    time.sleep(0.3)  # let the subscription reach the publisher before the first frame
    stop = threading.Event()
    growth = growth_rate(frames, interval_s)
    microscope = threading.Thread(
        target=run_microscope, args=(acquisition, frames, interval_s, seed),
        kwargs={"size_px": size_px, "growth_nm_per_min": growth, "time_scale": TIME_SCALE, "stop": stop}, daemon=True)
    microscope.start()
    console.print(f"simulated microscope: {frames} frames of {size_px}² every {interval_s:g} s → {acquisition} "
                  f"(particles grow {growth:.2g} nm/min in radius)")
    previous = _on_sigterm()
    model = TopModel()
    docs = []
    deadline = time.time() + frames * interval_s + 60
    try:
        with Live(model.render(), console=console, auto_refresh=False, transient=False) if live else _Null() as view:
            drawn = 0.0
            while len(docs) < frames and time.time() < deadline:
                msg = sub.recv(timeout_s=0.25)
                if msg is not None:
                    if msg.topic.startswith("result."):
                        docs.append(msg.doc)
                    model.ingest(msg, settings.publish.pub_endpoint)
                if live and time.time() - drawn >= 0.5:  # on a timer, so silence shows as silence
                    view.update(model.render(), refresh=True)
                    drawn = time.time()
    except KeyboardInterrupt:
        console.print("interrupted: summary of what was analysed so far")
    finally:
        stop.set()
        sub.close()
        daemon.request_stop()
        daemon_thread.join(30)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not docs:
        console.print("[red]no results received[/red]")
        return 1
    console.print(latency_table(docs))
    lines = summary_lines(docs)
    lines[0] += f"; quarantined {daemon.pipeline.stats.quarantined}"
    for line in lines:
        console.print(line, highlight=False)
    return 0 if len(docs) >= frames else 1


def _on_sigterm():
    """SIGTERM ends the demo like Ctrl+C (with its summary); returns the previous handler, or None off the main
    thread."""
    def interrupt(*_):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
