"""`copilot analyze --dask`: the same exports as a local run, on real dask.distributed clusters (LocalCluster)."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from copilot.cli import main

N_FRAMES = 8


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Simulated in-situ frames (256² px, 0.2 nm/px) and one truncated file among them."""
    from copilot.sim.microscope import run_microscope

    acq = tmp_path_factory.mktemp("archive")
    run_microscope(acq, n_frames=N_FRAMES, interval_s=0.01, time_scale=6000, size_px=256, seed=3)
    (acq / "frame_00003b.tif").write_bytes(b"II*\x00" + b"\x00" * 10)  # a TIFF header and nothing else
    # ONNX Runtime CPU named outright: `auto` would import torch in every worker just to find no GPU
    (acq.parent / f"{acq.name}.toml").write_text('[model]\nbackend = "onnxruntime"\n')
    return acq


def _analyze(archive: Path, out: Path, *extra: str) -> int:
    return main(["analyze", str(archive), "--model", "particles-stem", "--threads", "1", "--out", str(out),
                 "--config", str(archive.parent / f"{archive.name}.toml"), *extra])


def comparable(out: Path) -> dict:
    """The exports without what may differ between runs: timings (and the processing time stamp)."""
    docs = []
    for line in (out / "results.jsonl").read_text().splitlines():
        d = json.loads(line)
        d.pop("timings_ms")
        d.pop("processed_at")
        docs.append(d)
    frames = [{k: v for k, v in row.items() if k not in ("end_to_end_ms", "queue_wait_ms")}
              for row in csv.DictReader(open(out / "frames.csv"))]
    summary = json.loads((out / "summary.json").read_text())
    for s in summary.values():
        s.pop("latency_ms")
    return {"docs": docs, "frames": frames, "particles": (out / "particles.csv").read_text(), "summary": summary}


@pytest.fixture(scope="module")
def local_run(archive, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("local")
    assert _analyze(archive, out) == 0
    return comparable(out)


def test_dask_local_cluster_gives_the_local_exports_in_the_same_order(archive, local_run, tmp_path, capsys):
    assert _analyze(archive, tmp_path / "dask", "--dask", "local:2") == 0
    got = comparable(tmp_path / "dask")
    assert [d["frame_id"] for d in got["docs"]] == [f"frame_{i:05d}" for i in range(N_FRAMES)]
    assert got == local_run
    assert got["docs"][-1]["series"]["frames"] == N_FRAMES  # trends ran over every frame, in order
    assert f"{N_FRAMES} analysed, 1 unreadable, 0 failed" in capsys.readouterr().err.replace("\n", " ")


def test_a_worker_that_dies_has_its_file_rerun_elsewhere(archive, local_run, tmp_path):
    """A scheduler given by address (as on a cluster); one worker is SIGKILLed while it analyses a file."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        killed: list[str] = []

        def kill_one_busy_worker() -> None:
            with Client(cluster.scheduler_address) as c:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    busy = [w for w, keys in c.processing().items()
                            if any(str(k).startswith("copilot-analyze-") for k in keys)]
                    if busy:
                        pids = c.run(os.getpid, workers=busy[:1])
                        os.kill(pids[busy[0]], signal.SIGKILL)
                        killed.append(busy[0])
                        return
                    time.sleep(0.02)

        killer = threading.Thread(target=kill_one_busy_worker)
        killer.start()
        rc = _analyze(archive, tmp_path / "out", "--dask", cluster.scheduler_address)
        killer.join()
    assert killed and rc == 0
    assert comparable(tmp_path / "out") == local_run


def test_bad_scheduler_is_a_one_line_error(archive, tmp_path, capsys):
    assert _analyze(archive, tmp_path / "x", "--dask", "local:zero") == 2
    assert "local:N needs a worker count" in capsys.readouterr().err
