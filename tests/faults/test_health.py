"""A stage that dies or hangs makes the daemon unhealthy (status says so, the watchdog is no longer fed, the process
exits non-zero for systemd to restart it, SIGTERM-style stop never wedges); an input that keeps killing the daemon is
skipped after a few deaths, with the reason."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

from copilot.daemon import Daemon
from copilot.store import ResultStore
from tests.faults.hostile_files import good_image, write_calibrated
from tests.faults.test_hostile_folder import daemon_settings, free_port, wait_started


class NotifyListener:
    """What systemd would receive on $NOTIFY_SOCKET, collected by a thread."""

    def __init__(self, tmp_path: Path, monkeypatch):
        path = str(tmp_path / "notify.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.server.bind(path)
        self.server.settimeout(0.2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.server.recv(4096).decode())
            except (TimeoutError, socket.timeout):
                continue

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        self.server.close()
        return self.messages


def run_in_thread(daemon: Daemon) -> threading.Thread:
    runner = threading.Thread(target=lambda: setattr(daemon, "exit_code", daemon.run(install_signals=False)))
    runner.start()
    wait_started(daemon)
    return runner


def test_dead_stage_thread_makes_the_daemon_unhealthy(tmp_path, threshold_model_dir, monkeypatch):
    listener = NotifyListener(tmp_path, monkeypatch)
    acq = tmp_path / "acq"
    acq.mkdir()

    def dies_on_killer(result):  # a bug that escapes the per-input containment (BaseException)
        if result.doc.frame_id == "killer":
            raise KeyboardInterrupt("simulated bug in a result sink")

    daemon = Daemon(daemon_settings(tmp_path, threshold_model_dir, watch=str(acq)), extra_sinks=[dies_on_killer])
    runner = run_in_thread(daemon)
    write_calibrated(acq / "a0.tif", good_image(0))
    write_calibrated(acq / "killer.tif", good_image(1))
    for i in range(12):  # more than the queues hold: a stop must not wait for them
        write_calibrated(acq / f"z{i:02d}.tif", good_image(10 + i))
    runner.join(60)
    assert not runner.is_alive(), "the daemon must exit by itself once a stage thread is dead"
    assert daemon.exit_code == 1
    messages = listener.close()
    unhealthy = next(i for i, m in enumerate(messages) if m.startswith("STATUS=unhealthy"))
    assert "stage thread sink is dead" in messages[unhealthy]
    assert "WATCHDOG=1" in messages[:unhealthy] and "WATCHDOG=1" not in messages[unhealthy:]
    assert "STOPPING=1" in messages[unhealthy:]


def test_stuck_stage_makes_the_daemon_unhealthy_and_stop_does_not_wedge(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    release = threading.Event()

    def hangs(result):
        release.wait(60)

    settings = daemon_settings(tmp_path, threshold_model_dir, watch=str(acq))
    settings.limits = settings.limits.model_copy(update={"max_stage_s": 0.5})
    daemon = Daemon(settings, extra_sinks=[hangs])
    runner = run_in_thread(daemon)
    for i in range(12):
        write_calibrated(acq / f"f{i:02d}.tif", good_image(i))
    runner.join(60)
    alive = runner.is_alive()
    release.set()
    assert not alive and daemon.exit_code == 1
    assert any(p.startswith("stage sink stuck for") for p in daemon.problems), daemon.problems


DAEMON = """
import sys
from copilot.config import load_settings
import numpy as np
import tifffile

from copilot.daemon import Daemon
settings = load_settings(overrides={"daemon": {"state_dir": sys.argv[1], "stream": "kill"},
    "source": {"kind": "directory", "watch": sys.argv[2], "settle_s": 0.1},
    "model": {"name": sys.argv[3], "backend": "onnxruntime-cpu", "threads": 1, "max_whole_px": 4096},
    "publish": {"pub_endpoint": sys.argv[4], "snapshot_endpoint": sys.argv[5]}})
sys.exit(Daemon(settings).run())
"""


def reading(state: Path, deaths: int) -> list[str]:
    """Inputs the read stage is decoding now that have ``deaths`` deaths so far (a stale row of the process just
    killed has one death fewer than the restarted daemon gives it)."""
    db = state / "inflight.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT origin FROM inflight WHERE stage = 'read' AND deaths = ?",
                                                   (deaths,))]
    except sqlite3.OperationalError:  # table not created yet
        return []


def test_an_input_that_keeps_killing_the_daemon_is_skipped_with_the_reason(tmp_path, threshold_model_dir):
    """kill -9 while the same file is being decoded, three times (what a decoder crash does): the fourth start skips
    it with the reason and processes the others."""
    state, acq = tmp_path / "state", tmp_path / "acq"
    acq.mkdir()
    rng = np.random.default_rng(0)  # a zlib TIFF of noise that takes a while to decode: caught while being read
    tifffile.imwrite(acq / "a-killer.tif", rng.integers(0, 4000, (6000, 6000), dtype=np.uint16), compression="zlib")
    for i in range(3):
        write_calibrated(acq / f"b{i}.tif", good_image(i))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}

    def start():
        args = [str(state), str(acq), str(threshold_model_dir), f"tcp://127.0.0.1:{free_port()}",
                f"tcp://127.0.0.1:{free_port()}"]
        return subprocess.Popen([sys.executable, "-c", DAEMON, *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    killer = str(acq / "a-killer.tif")
    for death in range(3):
        proc = start()
        deadline = time.monotonic() + 90
        while killer not in reading(state, death) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert killer in reading(state, death), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    proc = start()
    deadline = time.monotonic() + 90
    done = False
    while time.monotonic() < deadline and not done:
        time.sleep(0.2)
        with ResultStore(state / "results.sqlite") as store:
            done = all(store.status(str(acq / f"b{i}.tif")) for i in range(3))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    with ResultStore(state / "results.sqlite") as store:
        status, reason = store.status(killer)
        assert status == "quarantined" and "died 3 times" in reason
        assert all(store.status(str(acq / f"b{i}.tif"))[0] == "ok" for i in range(3))
