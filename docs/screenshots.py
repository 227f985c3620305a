"""Retake the overlay screenshots in docs/: live, after the daemon is killed, across a restart, on a FAIL frame.

    PYTHONPATH=. python docs/screenshots.py [--out docs]

A real daemon (`copilot run`, the shipped particles-stem model) runs as a subprocess beside a simulated microscope;
the overlay is drawn offscreen in this process. Session 1 grows the particles slowly (the model is right); the daemon
is then killed with SIGKILL; session 2 (a restart, a new session epoch) starts like the first, then a fast-growing
field arrives whose particles outgrow the model, and FAIL.
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
from copilot.sim.sintering import SinteringRun  # noqa: E402
from copilot.sim.stem import SimParams  # noqa: E402
from copilot.sim.tiff import write_tiff  # noqa: E402
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
        def shown() -> int:  # number of the frame on screen (-1: none yet); later ones may replace it within a tick
            fid = win.panels["in-situ"].shown_frame_id if "in-situ" in win.panels else None
            return int(fid.rsplit("_", 1)[1]) if fid and fid.startswith("frame_") else -1

        microscope(acq1, 14, growth=0.1, seed=0)
        pump(app, win, lambda: shown() >= 13, 180)
        overlay.save_snapshot(win, out / "overlay-live.png")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        pump(app, win, lambda: win.panels["in-situ"].shown_live is False, 60)
        overlay.listen(win, 4.0)  # "nothing heard for N s" counts on
        overlay.save_snapshot(win, out / "overlay-daemon-killed.png")
        daemon = start_daemon(root, acq2)  # a restart: a new session epoch
        microscope(acq2, 10, growth=0.1, seed=1)
        new = lambda: bool(win.model.streams["in-situ"].session_note)  # noqa: E731 (session 2 is on screen)
        pump(app, win, lambda: new() and shown() >= 7 and win.panels["in-situ"].shown_live, 180)
        overlay.save_snapshot(win, out / "overlay-restart.png")
        pump(app, win, lambda: new() and shown() >= 9, 120)
        # then a fast-growing field (3 nm/min of radius, 45 s apart): the particles outgrow what the model was
        # trained on, its outlines fall inside them, and the frames FAIL
        late = root / "late"
        late.mkdir()
        run = SinteringRun(seed=1, params=SimParams(size_px=SIZE_PX, nm_per_px=0.2, touching_fraction=0.1,
                                                    area_fraction=0.12), growth_nm_per_min=3.0, interval_s=45,
                           duration_s=15 * 45)

        def grow() -> None:
            for i in range(16):
                path = write_tiff(late / f"late_{i:05d}.tif", run.frame_at(i * 45.0))
                path.rename(acq2 / path.name)
                time.sleep(1.5)

        threading.Thread(target=grow, daemon=True).start()
        fails = lambda: sum(p.fail for p in win.model.streams["in-situ"].history)  # noqa: E731
        pump(app, win, lambda: fails() >= 3 and win.model.streams["in-situ"].doc.verdict.level == "fail", 300)
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
