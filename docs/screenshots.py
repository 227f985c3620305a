"""Retake the overlay screenshots in docs/: live, after the daemon is killed, across a restart, on a FAIL frame.

    PYTHONPATH=. python docs/screenshots.py [--out docs]

A real daemon (`copilot run`, the shipped particles-stem model) runs as a subprocess beside a simulated microscope;
the overlay is drawn offscreen in this process. Session 1 grows the particles slowly (the model is right); the daemon
is then killed with SIGKILL; session 2 (a restart, a new session epoch) starts like the first, then frames of
particles far larger than the model was trained on arrive, and FAIL.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from copilot.sim.microscope import run_microscope  # noqa: E402
from copilot.sim.stem import SimParams  # noqa: E402
from copilot.ui import overlay  # noqa: E402
from copilot.ui.client import Client  # noqa: E402

PUB, SNAP = "tcp://127.0.0.1:5655", "tcp://127.0.0.1:5656"
SIZE_PX = 768


def start_daemon(root: Path, acq: Path) -> subprocess.Popen:
    cfg = root / "copilot.toml"
    cfg.write_text(f'[daemon]\nstream = "in-situ"\nstate_dir = "{root / "state"}"\n'
                   f'[source]\nkind = "directory"\nwatch = "{acq}"\nsettle_s = 0.2\n'
                   f'[publish]\npub_endpoint = "{PUB}"\nsnapshot_endpoint = "{SNAP}"\n')
    return subprocess.Popen([sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=open(root / f"daemon-{time.time():.0f}.log", "wb"))


def microscope(acq: Path, frames: int, growth: float, seed: int) -> threading.Thread:
    t = threading.Thread(target=run_microscope, args=(acq, frames, 1.5, seed),
                         kwargs={"size_px": SIZE_PX, "growth_nm_per_min": growth, "time_scale": 30.0}, daemon=True)
    t.start()
    return t


def pump(app, win, until, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out; showing {[(n, p.shown_frame_id) for n, p in win.panels.items()]}")
        app.processEvents()
        win.tick()
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    app = overlay.ensure_app(offscreen=True)
    root = Path(tempfile.mkdtemp(prefix="copilot-shots-"))
    acq1, acq2 = root / "acq1", root / "acq2"
    acq1.mkdir()
    acq2.mkdir()
    win = overlay.OverlayWindow(Client([f"{PUB},{SNAP}"]), start_timer=False)
    win.resize(1280, 760)
    win.show()
    daemon = start_daemon(root, acq1)
    try:
        shown = lambda: win.panels["in-situ"].shown_frame_id if "in-situ" in win.panels else None  # noqa: E731
        microscope(acq1, 14, growth=0.1, seed=0)
        pump(app, win, lambda: shown() == "frame_00013", 180)
        overlay.save_snapshot(win, out / "overlay-live.png")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        pump(app, win, lambda: win.panels["in-situ"].shown_live is False, 60)
        overlay.listen(win, 4.0)  # "nothing heard for N s" counts on
        overlay.save_snapshot(win, out / "overlay-daemon-killed.png")
        daemon = start_daemon(root, acq2)  # a restart: a new session epoch
        microscope(acq2, 10, growth=0.1, seed=1)
        pump(app, win, lambda: shown() == "frame_00007" and win.panels["in-situ"].shown_live, 180)
        overlay.save_snapshot(win, out / "overlay-restart.png")
        pump(app, win, lambda: shown() == "frame_00009", 120)
        # then particles far larger than the model was trained on (D50 ~30 nm): its outlines fall inside them
        late = root / "late"
        big = SimParams(size_px=SIZE_PX, nm_per_px=0.2, d50_nm=30.0, max_diameter_nm=80.0, area_fraction=0.3,
                        touching_fraction=0.1)
        threading.Thread(target=run_microscope, args=(late, 6, 1.5, 2), kwargs={
            "params": big, "growth_nm_per_min": 0.0,
            "on_frame": lambda path, _: path.rename(acq2 / f"late_{path.name}")}, daemon=True).start()
        fails = lambda: sum(p.fail for p in win.model.streams["in-situ"].history)  # noqa: E731
        pump(app, win, lambda: fails() >= 2 and win.model.streams["in-situ"].doc.verdict.level == "fail", 240)
        overlay.save_snapshot(win, out / "overlay-fail.png")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        win.close()
        win.client.close()
    print(f"screenshots in {out}; daemon logs in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
