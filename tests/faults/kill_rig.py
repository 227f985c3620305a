"""A kill -9 campaign against a real daemon process: frames keep arriving in its folder at a fixed rate while the
daemon is killed at random moments and restarted; a `copilot tail --follow` consumer runs throughout. At the end
the store, the session exports and the tail output are checked for every frame exactly once.

Used by tests/faults/test_kill.py (a few kills, CI) and bench/soak/kills.py (20 kills, the issue's target).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frame(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 100, np.float32)
    for cy, cx in rng.integers(20, size - 20, size=(6, 2)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 8**2] = 1000
    return img.astype(np.uint16)


class FrameWriter(threading.Thread):
    """Writes ``count`` frames into ``folder`` at ``rate_hz`` (each written aside, then renamed into place)."""

    def __init__(self, folder: Path, count: int, rate_hz: float, size: int = 128, seed: int = 0):
        super().__init__(daemon=True)
        self.folder, self.count, self.rate_hz, self.size = folder, count, rate_hz, size
        self.rng = np.random.default_rng(seed)
        self.written = 0

    def run(self) -> None:
        t0 = time.monotonic()
        for i in range(self.count):
            img = _frame(self.rng, self.size)
            tmp = self.folder / f".f{i:06d}.tmp"
            tifffile.imwrite(tmp, img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm"})
            os.rename(tmp, self.folder / f"f{i:06d}.tif")
            self.written += 1
            delay = t0 + (i + 1) / self.rate_hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def ok_rows(db: Path) -> int:
    """Frames the daemon's store holds as processed (read-only: the daemon may be writing)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM frames WHERE status = 'ok'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def run_campaign(work: Path, model_dir: Path, *, frames: int, rate_hz: float = 30.0, kills: int = 20,
                 kill_after_s: tuple[float, float] = (0.5, 3.0), size: int = 128, seed: int = 0,
                 finish_timeout_s: float = 600.0, early_fraction: float = 0.3, log=print) -> dict:
    """Run the campaign; returns counts per check (``lost``/``duplicated`` must be 0 everywhere)."""
    rnd = random.Random(seed)
    acq, state = work / "acq", work / "state"
    acq.mkdir(parents=True)
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cfg = work / "daemon.toml"
    cfg.write_text(
        f'[daemon]\nstream = "kill"\nstate_dir = "{state}"\n'
        f'[source]\nwatch = "{acq}"\nsettle_s = 0.05\n'
        f'[model]\nname = "{model_dir}"\nbackend = "onnxruntime-cpu"\nthreads = 1\n'
        f'[publish]\npub_endpoint = "{pub}"\nsnapshot_endpoint = "{snap}"\n'
    )
    env = _env()
    daemon_cmd = [sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)]
    tail_out = open(work / "tail.jsonl", "wb")
    tail = subprocess.Popen([sys.executable, "-m", "copilot.cli", "tail", "--endpoint", pub, "--snapshot", snap,
                             "--from-seq", "0", "--follow", "--connect-timeout", "600"],
                            stdout=tail_out, stderr=open(work / "tail.log", "wb"), env=env, cwd=ROOT)
    daemon_log = open(work / "daemon.log", "ab")
    writer = FrameWriter(acq, frames, rate_hz, size, seed)
    writer.start()
    killed_at_rows = []
    t_start = time.monotonic()
    try:
        for k in range(kills):
            before = ok_rows(state / "results.sqlite")
            proc = subprocess.Popen(daemon_cmd, stdout=daemon_log, stderr=daemon_log, env=env, cwd=ROOT)
            if rnd.random() < early_fraction:  # anywhere, start-up and catch-up included
                time.sleep(rnd.uniform(*kill_after_s))
            else:  # while it processes: once it has journaled a new frame, a random moment later
                wait_until = time.monotonic() + 30
                while ok_rows(state / "results.sqlite") <= before and time.monotonic() < wait_until:
                    time.sleep(0.02)
                time.sleep(rnd.uniform(0, kill_after_s[1] / 2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at_rows.append(ok_rows(state / "results.sqlite"))
            log(f"kill {k + 1}/{kills}: {writer.written} frames written, {killed_at_rows[-1]} journaled")
        writer.join()
        proc = subprocess.Popen(daemon_cmd, stdout=daemon_log, stderr=daemon_log, env=env, cwd=ROOT)
        deadline = time.monotonic() + finish_timeout_s
        while ok_rows(state / "results.sqlite") < frames and time.monotonic() < deadline:
            time.sleep(0.5)
        while _lines(work / "tail.jsonl") < frames and time.monotonic() < deadline:
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    finally:
        for p in (tail, locals().get("proc")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        tail_out.close()
        daemon_log.close()
    report = check(work, frames)
    report.update(kills=kills, frames=frames, rate_hz=rate_hz, wall_s=round(time.monotonic() - t_start, 1),
                  journaled_at_kills=killed_at_rows)
    return report


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def _tally(ids: list[str], expected: set[str]) -> dict:
    c = Counter(ids)
    return {"lost": len(expected - set(c)), "duplicated": sum(n - 1 for n in c.values() if n > 1),
            "unexpected": len(set(c) - expected)}


def check(work: Path, frames: int) -> dict:
    """Every frame exactly once in the store, in the session exports (all three files) and in the tail output."""
    expected = {f"f{i:06d}" for i in range(frames)}
    conn = sqlite3.connect(work / "state" / "results.sqlite")
    rows = conn.execute("SELECT frame_id, seq FROM frames WHERE status = 'ok' ORDER BY seq").fetchall()
    conn.close()
    seqs = [s for _, s in rows]
    out = {"store": _tally([f for f, _ in rows], expected)}
    out["store"]["seq_gapless"] = seqs == list(range(1, len(seqs) + 1))
    sessions = sorted((work / "state" / "sessions").glob("*"))
    jsonl, csv_frames, particles, per_frame = [], [], Counter(), {}
    for s in sessions:
        for line in (s / "results.jsonl").read_text().splitlines():
            d = json.loads(line)
            jsonl.append(d["frame_id"])
            per_frame[d["frame_id"]] = d["measurements"]["particles"]["count"]
        with open(s / "frames.csv", newline="") as fh:
            csv_frames += [r["frame_id"] for r in csv.DictReader(fh)]
        with open(s / "particles.csv", newline="") as fh:
            particles.update(r["frame_id"] for r in csv.DictReader(fh))
    out["exports"] = {"sessions": len(sessions), "results.jsonl": _tally(jsonl, expected),
                      "frames.csv": _tally(csv_frames, expected),
                      "particles.csv_rows_wrong": sum(1 for f, n in per_frame.items() if particles.get(f, 0) != n)}
    tail_ids, tail_keys = [], []
    for line in (work / "tail.jsonl").read_text().splitlines():
        d = json.loads(line)
        tail_ids.append(d["frame_id"])
        tail_keys.append(d["seq"])
    out["tail"] = _tally(tail_ids, expected)
    out["tail"]["in_order"] = tail_keys == sorted(tail_keys)
    return out


def all_exact(report: dict) -> bool:
    """True when no check lost, duplicated or invented a frame."""
    parts = [report["store"], report["exports"]["results.jsonl"], report["exports"]["frames.csv"], report["tail"]]
    return (all(p["lost"] == p["duplicated"] == p["unexpected"] == 0 for p in parts)
            and report["store"]["seq_gapless"] and report["tail"]["in_order"]
            and report["exports"]["particles.csv_rows_wrong"] == 0)
