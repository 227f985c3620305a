"""Soak: a real daemon process fed over its socket source for many frames.

1. Memory: resident set size (VmRSS, MiB) sampled while ``--frames`` frames go through; drift = change from the
   end of warm-up (``--warmup`` frames) to the end, in %. Target: within ±5 % over 10,000 frames.
2. Stalled subscriber: throughput (frames/s, journaled) in alternating blocks without and with a subscriber that
   connects to every topic and never reads. Target: less than 5 % change.

    PYTHONPATH=. python bench/soak/soak.py --frames 10000 --out bench/soak/results/soak.json

Uses the tests' threshold ONNX model (a real ONNX Runtime session; the cost per frame is the daemon's own:
reading, measuring, reliability, journaling, publishing, exporting) unless ``--model`` names a shipped one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from copilot.frame import Frame  # noqa: E402
from copilot.sources.push import push_frames  # noqa: E402
from tests.faults.kill_rig import free_port, ok_rows as journaled  # noqa: E402


def threshold_model(folder: Path) -> Path:
    from copilot.inference.card import sha256_of
    from tests.conftest import build_threshold_model

    folder.mkdir(parents=True, exist_ok=True)
    build_threshold_model(folder / "model.onnx")
    card = {"name": "threshold", "version": "soak", "task": "particles",
            "class_names": ["background", "particle", "boundary"], "working_nm_per_px": 0.5,
            "trained_nm_per_px_range": [0.25, 1.0], "tiling": {"tile_px": 256, "overlap_px": 16, "multiple_of": 8},
            "outputs": {"embedding_dim": 2}, "model_sha256": sha256_of(folder / "model.onnx"),
            "training_command": "tests/conftest.py build_threshold_model"}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def frames(n: int, size: int, start: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed + start)
    yy, xx = np.mgrid[:size, :size]
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i in range(start, start + n):
        img = np.full((size, size), 100, np.float32)
        for cy, cx in rng.integers(20, size - 20, size=(24, 2)):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(5, 12) ** 2] = 1000
        img += rng.normal(0, 20, img.shape)
        yield Frame(np.clip(img, 0, 65535).astype(np.uint16), nm_per_px=0.5, stream="soak", frame_id=f"s{i:06d}",
                    origin=f"soak/{i}", acquired_at=t0 + timedelta(seconds=i))


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (/proc/<pid>/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(db: Path, n: int, timeout_s: float = 3600) -> float:
    deadline = time.monotonic() + timeout_s
    while (got := journaled(db)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got} of {n} frames journaled")
        time.sleep(0.2)
    return time.monotonic()


DAEMON_ROOT = ROOT  # --daemon-root: run another checkout's daemon (e.g. main, for a before/after)


def start_daemon(work: Path, model: str, threads: int) -> tuple[subprocess.Popen, dict]:
    ports = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("pub", "snap", "src")}
    cfg = work / "soak.toml"
    cfg.write_text(f'[daemon]\nstream = "soak"\nstate_dir = "{work / "state"}"\n'
                   f'[source]\nkind = "socket"\nendpoint = "{ports["src"]}"\n'
                   f'[model]\nname = "{model}"\nthreads = {threads}\n'
                   f'[publish]\npub_endpoint = "{ports["pub"]}"\nsnapshot_endpoint = "{ports["snap"]}"\n')
    env = dict(os.environ, PYTHONPATH=str(DAEMON_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)], env=env, cwd=DAEMON_ROOT,
                            stdout=open(work / "daemon.log", "ab"), stderr=subprocess.STDOUT)
    return proc, ports


def memory_run(work: Path, model: str, n: int, warmup: int, size: int, threads: int, log) -> dict:
    proc, ports = start_daemon(work, model, threads)
    db = work / "state" / "results.sqlite"
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            samples.append((journaled(db), rss_mib(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        pusher = threading.Thread(target=push_frames, args=(ports["src"], frames(n, size)),
                                  kwargs={"timeout_s": 120}, daemon=True)
        pusher.start()
        sampler.start()
        t0 = time.monotonic()
        last_log = 0.0
        while journaled(db) < n:
            time.sleep(1)
            if time.monotonic() - last_log > 60 and samples:
                log(f"{samples[-1][0]} frames, RSS {samples[-1][1]:.0f} MiB")
                last_log = time.monotonic()
            if proc.poll() is not None:
                raise RuntimeError("daemon exited")
        elapsed = time.monotonic() - t0
        stop.set()
        samples.append((journaled(db), rss_mib(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    after = [r for k, r in samples if k >= warmup]
    base = after[0] if after else float("nan")
    end = float(np.median([r for k, r in samples if k >= n * 0.95]))  # the last 5 %, median of samples
    return {"frames": n, "frame_px": size, "warmup_frames": warmup, "fps": round(n / elapsed, 2),
            "rss_after_warmup_mib": round(base, 1), "rss_end_mib": round(end, 1),
            "rss_max_after_warmup_mib": round(max(after), 1),
            "rss_drift_pct": round(100 * (end - base) / base, 2),
            "samples": [(k, round(r, 1)) for k, r in samples[:: max(1, len(samples) // 60)]]}


def stalled_run(work: Path, model: str, block: int, blocks: int, size: int, threads: int, log) -> dict:
    proc, ports = start_daemon(work, model, threads)
    db = work / "state" / "results.sqlite"
    ctx = zmq.Context()
    rates = {"none": [], "stalled": []}
    cpu_ms = {"none": [], "stalled": []}  # daemon CPU per frame: steadier than wall time on a shared machine
    sent = 0
    try:
        push_frames(ports["src"], frames(20, size, start=10**6), timeout_s=120)  # warm-up
        wait_for(db, 20)
        sent = 20
        stalled = None
        for b in range(blocks):
            kind = "stalled" if b % 2 else "none"
            if kind == "stalled":
                stalled = ctx.socket(zmq.SUB)
                stalled.setsockopt(zmq.SUBSCRIBE, b"")
                stalled.setsockopt(zmq.RCVHWM, 10)
                stalled.connect(ports["pub"])
                time.sleep(0.5)  # connected and subscribed; it never reads
            t0, c0 = time.monotonic(), cpu_s(proc.pid)
            push_frames(ports["src"], frames(block, size, start=2 * 10**6 + sent), timeout_s=120)
            sent += block
            t1 = wait_for(db, sent)
            rates[kind].append(block / (t1 - t0))
            cpu_ms[kind].append(1e3 * (cpu_s(proc.pid) - c0) / block)
            log(f"block {b + 1}/{blocks} ({kind}): {rates[kind][-1]:.1f} frames/s")
            if stalled is not None:
                stalled.close(0)
                stalled = None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
        ctx.term()
    none, with_stalled = float(np.mean(rates["none"])), float(np.mean(rates["stalled"]))
    # each stalled block against the mean of the plain blocks either side of it (the machine's load drifts)
    paired = [rates["stalled"][i] / np.mean(rates["none"][i:i + 2]) - 1 for i in range(len(rates["stalled"]))
              if i + 1 < len(rates["none"])]
    noise = [rates["none"][i + 1] / rates["none"][i] - 1 for i in range(len(rates["none"]) - 1)]
    return {"block_frames": block, "blocks": blocks, "fps_no_subscriber": round(none, 2),
            "fps_stalled_subscriber": round(with_stalled, 2),
            "change_pct": round(100 * (with_stalled - none) / none, 2),
            "paired_change_pct_median": round(100 * float(np.median(paired)), 2) if paired else None,
            "noise_between_plain_blocks_pct": [round(100 * x, 1) for x in noise],
            "cpu_ms_per_frame_no_subscriber": round(float(np.median(cpu_ms["none"])), 1),
            "cpu_ms_per_frame_stalled_subscriber": round(float(np.median(cpu_ms["stalled"])), 1),
            "cpu_change_pct": round(100 * (np.median(cpu_ms["stalled"]) / np.median(cpu_ms["none"]) - 1), 2),
            "per_block": {k: [round(v, 2) for v in vs] for k, vs in rates.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--model", default=None, help="a shipped model name (default: the tests' threshold model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stall-block", type=int, default=300)
    p.add_argument("--stall-blocks", type=int, default=6)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-stall", action="store_true")
    p.add_argument("--daemon-root", default=None, help="run the daemon from this checkout (before/after)")
    p.add_argument("--out", default=str(ROOT / "bench" / "soak" / "results" / "soak.json"))
    args = p.parse_args(argv)
    global DAEMON_ROOT
    DAEMON_ROOT = Path(args.daemon_root).resolve() if args.daemon_root else ROOT

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="copilot-soak-") as tmp:
        work = Path(tmp)
        model = args.model or str(threshold_model(work / "engines" / "threshold"))
        report = {"machine_cpus": os.cpu_count(), "model": args.model or "threshold (tests)",
                  "daemon_root": str(DAEMON_ROOT), "frame_px": args.size}
        if not args.skip_memory:
            (work / "mem").mkdir()
            report["memory"] = memory_run(work / "mem", model, args.frames, args.warmup, args.size, args.threads, log)
            log(f"memory: {report['memory']['rss_drift_pct']:+.2f} % RSS after warm-up")
        if not args.skip_stall:
            (work / "stall").mkdir()
            report["stalled_subscriber"] = stalled_run(work / "stall", model, args.stall_block, args.stall_blocks,
                                                       args.size, args.threads, log)
            log(f"stalled subscriber: {report['stalled_subscriber']['change_pct']:+.2f} % throughput")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items()}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
