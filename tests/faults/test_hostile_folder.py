"""The real daemon (watchdog source, readers, ONNX Runtime, SQLite, ZeroMQ) on an acquisition folder of ≥ 300 hostile
files interleaved with good frames: processing never stops, every good frame is processed, every hostile file is
refused with a reason or ignored, and the folder is left exactly as it was."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from copilot.config import load_settings
from copilot.daemon import Daemon
from copilot.readers.base import path_text
from copilot.store import ResultStore
from tests.faults.hostile_files import describe, populate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root: Path) -> dict[bytes, tuple[int, int, int]]:
    """(mode, size, mtime_ns) of every entry under ``root``, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root), followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def wait_started(daemon: Daemon, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not daemon.pipeline.healthy() and time.monotonic() < deadline:
        time.sleep(0.05)


def daemon_settings(tmp_path: Path, model_dir: Path, **source):
    return load_settings(overrides={
        "daemon": {"state_dir": str(tmp_path / "state"), "stream": "faults", "quarantine": "copy"},
        "source": {"kind": "directory", "settle_s": 0.2, **source},
        "model": {"name": str(model_dir), "backend": "onnxruntime-cpu", "threads": 1},
        "publish": {"pub_endpoint": f"tcp://127.0.0.1:{free_port()}",
                    "snapshot_endpoint": f"tcp://127.0.0.1:{free_port()}"},
    })


def test_hostile_folder_never_stops_the_daemon(tmp_path, threshold_model_dir):
    acq, outside = tmp_path / "acq", tmp_path / "outside"
    manifest = populate(acq, outside)
    hostile = [e for e in manifest.hostile if e.expect != "ok" or e.kind not in ("in-loop-folder",)]
    assert len(hostile) >= 300, describe(manifest)
    before = snapshot(acq)

    daemon = Daemon(daemon_settings(tmp_path, threshold_model_dir, watch=str(acq), recursive=True))
    runner = threading.Thread(target=lambda: setattr(daemon, "exit_code", daemon.run(install_signals=False)))
    runner.start()
    wait_started(daemon)
    waiting = [e for e in manifest.entries if e.expect != "ignored"]
    deadline = time.monotonic() + 240
    try:
        while waiting and time.monotonic() < deadline:
            assert daemon.pipeline.healthy(), daemon.pipeline.problems()
            waiting = [e for e in waiting if daemon.store.status(path_text(e.path)) is None]
            time.sleep(0.5)
        outcomes = {id(e): daemon.store.status(path_text(e.path)) for e in manifest.entries}
        stats = daemon.status()
    finally:
        daemon.request_stop()
        runner.join(60)
    assert not runner.is_alive() and daemon.exit_code == 0
    assert not waiting, [(e.kind, path_text(e.path)) for e in waiting[:10]]

    wrong = []
    for e in manifest.entries:
        got = outcomes[id(e)]
        status = got[0] if got else None
        if e.expect == "ok":
            ok = status == "ok"
        elif e.expect == "refused":
            ok = status in ("quarantined", "failed") and bool(got[1])
        elif e.expect == "ignored":
            ok = status is None
        else:
            ok = status is not None
        if not ok:
            wrong.append((e.kind, e.expect, got, path_text(e.path)[-60:]))
    assert not wrong, wrong
    good = [e for e in manifest.entries if e.kind == "good"]
    assert len(good) >= 60 and all(outcomes[id(e)][0] == "ok" for e in good)
    processed = [e for e in manifest.entries if (outcomes[id(e)] or ("",))[0] == "ok"]
    assert stats["healthy"] and stats["processed"] == len(processed) >= len(manifest.of("ok"))

    # The acquisition folder is read-only to the co-pilot: nothing moved, renamed, written or added.
    assert snapshot(acq) == before
    # quarantine = "copy": sparse files stay sparse, nothing from outside the tree, links and FIFOs never copied.
    copies = [p for p in (tmp_path / "state" / "quarantine").iterdir() if p.suffix != ".json"]
    assert copies and sum(p.stat().st_blocks * 512 for p in copies) < 64 * 2**20
    assert max(p.stat().st_size for p in copies) >= 2**31  # a 2 GiB sparse TIFF was copied as holes
    assert all(stat.S_ISREG(p.lstat().st_mode) for p in copies)


@pytest.mark.parametrize("poll", [True, False])
def test_recursive_watch_with_link_loops_sees_each_file_once(tmp_path, threshold_model_dir, poll):
    """5 files behind link loops and links out of the tree: 5 results, not 245 (live events and polling alike)."""
    from tests.faults.hostile_files import good_image, write_calibrated

    acq, outside = tmp_path / "acq", tmp_path / "outside"
    (acq / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    write_calibrated(outside / "secret.tif", good_image(1))
    os.symlink("..", acq / "a" / "up")
    os.symlink(str(acq), acq / "a" / "b" / "root")
    os.symlink(str(outside), acq / "out")
    os.symlink(str(outside / "secret.tif"), acq / "secret.tif")
    daemon = Daemon(daemon_settings(tmp_path, threshold_model_dir, watch=str(acq), recursive=True, poll=poll,
                                    poll_interval_s=0.2))
    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    runner.start()
    try:
        names = ["f0.tif", "a/f1.tif", "a/b/f2.tif", "a/f3.tif", "f4.tif"]
        for i, name in enumerate(names):
            write_calibrated(acq / name, good_image(10 + i))
        deadline = time.monotonic() + 60
        while daemon.pipeline.stats.processed < len(names) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # anything a loop would add comes now
    finally:
        daemon.request_stop()
        runner.join(60)
    with ResultStore(tmp_path / "state" / "results.sqlite") as again:
        origins = sorted(d.origin for d in again.results())
    assert origins == sorted(str(acq / n) for n in names)


def test_a_file_read_too_early_is_retried_when_it_changes(tmp_path, threshold_model_dir):
    """A writer pausing longer than settle_s mid-file: the half file is recorded (not moved), and read again once the
    writer finishes, so the folder loses nothing."""
    from tests.faults.hostile_files import good_image, tifffile_bytes

    acq = tmp_path / "acq"
    acq.mkdir()
    data = tifffile_bytes(good_image(5))
    daemon = Daemon(daemon_settings(tmp_path, threshold_model_dir, watch=str(acq)))
    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    runner.start()
    wait_started(daemon)
    origin = str(acq / "slow.tif")
    try:
        with open(acq / "slow.tif", "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            deadline = time.monotonic() + 30
            while daemon.store.status(origin) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            first = daemon.store.status(origin)
            fh.write(data[len(data) // 2:])
        deadline = time.monotonic() + 30
        while (daemon.store.status(origin) or ("",))[0] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
        last = daemon.store.status(origin)
    finally:
        daemon.request_stop()
        runner.join(60)
    assert first[0] == "quarantined" and "truncated" in first[1]
    assert last == ("ok", None)
    assert (acq / "slow.tif").read_bytes() == data
