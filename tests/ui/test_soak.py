"""Soak: `copilot overlay` in a real X server (Xvfb) against a live daemon for two minutes.

PySide6 6.12.0 lost two references to ``None`` per repaint through a Python-overridden Qt method on Python 3.11,
and the overlay died with ``Fatal Python error: none_dealloc`` after 20–30 s. Here the overlay runs as its own
process, repainting several times a second, and logs ``sys.getrefcount(None)`` every 5 s (``--health-log``); the
test checks that it is still alive, painted all along, and that None's reference count did not drift.
(`make test` installs Xvfb and the X libraries where they are missing.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from tests.ui.conftest import RunningDaemon  # noqa: E402

SOAK_S = 120.0
FRAME_EVERY_S = 0.4
MAX_NONE_DRIFT = 200  # the leak was −2 per repaint: thousands in two minutes
HISTORY = 40  # trend points kept: the plot's per-point data (which holds None) is full after ~16 s


@pytest.fixture
def xserver(tmp_path):
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is not installed: `make xvfb` (part of `make test`) installs it with apt-get")
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "xvfb.log", "wb"))
    os.close(w)
    try:
        with os.fdopen(r) as f:
            display = f.readline().strip()
        assert display, f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text()}"
        yield f":{display}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_overlay_soaks_two_minutes_in_a_real_x_server(xserver, tmp_path, results_carry_frames):
    daemon = RunningDaemon(tmp_path / "daemon")
    health = tmp_path / "health.jsonl"
    env = {**os.environ, "DISPLAY": xserver, "QT_QPA_PLATFORM": "xcb", "COPILOT_CONFIG_DIR": str(tmp_path / "cfg"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    stderr = tmp_path / "overlay.err"
    overlay = None
    stop = threading.Event()

    def feed():
        while not stop.wait(FRAME_EVERY_S):
            daemon.write(1)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        daemon.write(1)
        daemon.wait_processed(1)
        overlay = subprocess.Popen([sys.executable, "-m", "copilot.cli", "overlay", "--endpoint", daemon.endpoint,
                                    "--health-log", str(health), "--history", str(HISTORY)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=open(stderr, "wb"))
        feeder.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < SOAK_S:
            assert overlay.poll() is None, f"overlay died ({overlay.returncode}): {stderr.read_text()[-2000:]}"
            time.sleep(1.0)
        stop.set()
        assert overlay.poll() is None, f"overlay died ({overlay.returncode}): {stderr.read_text()[-2000:]}"
        overlay.send_signal(signal.SIGTERM)  # ends it cleanly (and writes a last line)
        assert overlay.wait(20) == 0, stderr.read_text()[-2000:]
        lines = [json.loads(x) for x in health.read_text().splitlines()]
    finally:
        stop.set()
        if overlay is not None and overlay.poll() is None:
            overlay.kill()
        daemon.stop()
    warm = next(x for x in lines if x["results"] >= HISTORY + 10)  # every bounded structure is full by now
    last = lines[-1]
    print(f"soak {last['t_s']:.0f} s: None refcount {warm['none_refs']} (t={warm['t_s']:.0f} s) → "
          f"{last['none_refs']}, {last['paints'] - warm['paints']} paints, {last['results']} results, "
          f"RSS {warm['rss_kb']} → {last['rss_kb']} kB")
    assert last["t_s"] >= SOAK_S / 2  # (the overlay starts logging once imported and shown)
    assert last["paints"] - warm["paints"] >= SOAK_S / FRAME_EVERY_S / 3  # it kept painting new frames
    assert abs(last["none_refs"] - warm["none_refs"]) <= MAX_NONE_DRIFT, lines
