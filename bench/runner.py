"""``copilot bench``: end-to-end latency and throughput of the daemon vs the backend alone vs a naive script.

For each frame size (simulated 16-bit HAADF-STEM frames from ``copilot.sim``, written as calibrated TIFFs):

1. **backend only** — the same backend the daemon selects (``load_backend``), ``segment`` on frames already in memory,
   one after the other: latency percentiles and throughput (frames/s = 1 / mean).
2. **daemon** — ``copilot run`` in its own process, watching a folder; each frame is renamed into the folder (the
   writer's "file closed") and the latency runs until a real ZeroMQ subscriber in this process has the result
   document. *Latency*: one frame at a time, the pipeline idle. *Sustained throughput*: all frames renamed in at
   once, (n − 1) / (last result − first result). The documents' ``timings_ms`` give the per-stage breakdown; what
   the stages do not cover (file event → arrival, queue waits, store + publish + transport) is reported as well.
3. **naive** — ``bench/naive.py`` (watchdog + torch eager + skimage regionprops, sequential), measured the same way.

Targets (reported, never asserted): daemon p50 ≤ 1.25 × backend p50 and sustained throughput ≥ 0.8 × backend-only
(1024², 2048²); p50 ≤ 3 × backend at 512²; ≥ 4 × the naive script; a 2048² frame end to end ≤ 0.5 s on 2 CPU cores.
Without torch the naive baseline is skipped with one line and the rest is measured.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("read", "infer", "analyze", "assess", "follow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, qs=(50, 95, 99)) -> dict[str, float]:
    v = np.asarray(values, float)
    out = {f"p{q}": float(np.percentile(v, q)) for q in qs} if v.size else {}
    if v.size:
        out["mean"] = float(v.mean())
        out["n"] = int(v.size)
    return out


# -- frames -----------------------------------------------------------------------------------------------------
@functools.cache
def _postprocess_module():
    """bench/postprocess.py, loaded once, as the CLI loads this file (there is no top-level ``bench`` package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("copilot_bench_postprocess", REPO / "bench" / "postprocess.py")
    post = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(post)
    return post


def simulated_tiffs(size: int, n_distinct: int, folder: Path, nm_per_px: float, seed: int = 0,
                    task: str = "particles") -> list[Path]:
    """``n_distinct`` simulated frames of ``size``² at ``nm_per_px`` for the model's ``task`` (cached in
    ``folder``)."""
    from copilot.sim import write_tiff

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"sim_{task}_{size}_{nm_per_px:g}_{seed + i}.tif" for i in range(n_distinct)]
    if not all(p.exists() for p in paths):
        for p, sim in zip(paths, _postprocess_module().simulated_images(size, n_distinct, nm_per_px, seed, task)):
            write_tiff(p, sim)
    return paths


@dataclass(frozen=True)
class Staged:
    """A complete file under a hidden name in the watched folder; ``publish`` renames it into place."""

    hidden: Path
    final: Path

    @property
    def stem(self) -> str:
        return self.final.stem

    def publish(self) -> None:
        """Into place, as a writer that has just closed it: the daemon times ``end_to_end`` from the file's last
        write, so a copy staged seconds earlier gets its modification time set to now first."""
        os.utime(self.hidden)
        os.replace(self.hidden, self.final)


def stage(sources: list[Path], folder: Path, n: int, prefix: str) -> list[Staged]:
    """``n`` copies written as ``.<prefix>_<k>.tif.partial`` in the watched ``folder`` (hidden names are excluded),
    so renaming one into place is the atomic "file closed" a careful writer (and ``copilot.sim``) produces."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        final = folder / f"{prefix}_{k:04d}.tif"
        hidden = folder / f".{final.name}.partial"
        shutil.copyfile(sources[k % len(sources)], hidden)
        out.append(Staged(hidden, final))
    return out


# -- listening --------------------------------------------------------------------------------------------------
@dataclass
class Received:
    t: float
    timings_ms: dict = field(default_factory=dict)


class Listener:
    """Collects (receipt time, timings) per frame id from a daemon Subscriber or the naive script's PUB socket."""

    def __init__(self, recv):
        self._recv = recv
        self.got: dict[str, Received] = {}
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            item = self._recv(0.2)
            if item is None:
                continue
            fid, timings = item
            with self._cv:
                self.got[fid] = Received(time.time(), timings)
                self._cv.notify_all()

    def forget(self, fids) -> None:
        """Drop what was received for ``fids`` so far: a daemon restarted on an old state folder (``--workdir``)
        replays earlier results under the same frame ids in its snapshot, and those must not count as this run's."""
        with self._cv:
            for f in fids:
                self.got.pop(f, None)

    def wait(self, fids, timeout: float) -> bool:
        end = time.time() + timeout
        with self._cv:
            while not all(f in self.got for f in fids):
                left = end - time.time()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self):
        self._stop.set()
        self._thread.join(2)


def daemon_listener(pub: str, snap: str) -> tuple[Listener, object]:
    from copilot.publish.subscriber import Subscriber

    sub = Subscriber(pub, snap, topics=("result.",))

    def recv(timeout):
        msg = sub.recv(timeout_s=timeout)
        if msg is None or not msg.topic.startswith("result."):
            return None
        return msg.doc.frame_id, dict(msg.doc.timings_ms)

    return Listener(recv), sub


def naive_listener(pub: str) -> tuple[Listener, object]:
    import zmq

    s = zmq.Context.instance().socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"naive")
    s.connect(pub)

    def recv(timeout):
        if not s.poll(int(timeout * 1000)):
            return None
        _, body = s.recv_multipart()
        d = json.loads(body)
        return d["frame_id"], d.get("timings_ms", {})

    return Listener(recv), s


# -- measuring --------------------------------------------------------------------------------------------------
def measure_latency(files: list[Staged], acq: Path, listener: Listener, gap_s: float = 0.3,
                    timeout: float = 120) -> tuple[list[float], list[dict]]:
    lat, timings = [], []
    listener.forget([f.stem for f in files])
    for f in files:
        t0 = time.time()
        f.publish()
        if not listener.wait([f.stem], timeout):
            raise TimeoutError(f"no result for {f.final.name} within {timeout} s")
        r = listener.got[f.stem]
        lat.append(r.t - t0)
        timings.append(r.timings_ms)
        time.sleep(gap_s)
    return lat, timings


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and its threads so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure_throughput(files: list[Staged], acq: Path, listener: Listener, timeout: float = 600,
                       pid: int | None = None) -> dict:
    """All files renamed in at once; frames/s, and the process's CPU ms per frame when ``pid`` is given (on a
    shared machine CPU per frame is the steadier figure: other jobs stretch wall-clock time, not CPU time)."""
    listener.forget([f.stem for f in files])
    cpu0 = process_cpu_s(pid) if pid else None
    t0 = time.time()
    for f in files:
        f.publish()
    if not listener.wait([f.stem for f in files], timeout):
        raise TimeoutError("throughput run did not finish")
    ts = sorted(listener.got[f.stem].t for f in files)
    n = len(ts)
    timings = [listener.got[f.stem].timings_ms for f in files]
    stages = {k: float(np.median([t[k] for t in timings if k in t])) for k in timings[0]}
    cpu1 = process_cpu_s(pid) if pid else None
    cpu_ms = (cpu1 - cpu0) * 1e3 / n if cpu0 is not None and cpu1 is not None else None
    return {"frames": n, "cpu_ms_per_frame": cpu_ms,
            "fps_sustained": (n - 1) / (ts[-1] - ts[0]) if n > 1 and ts[-1] > ts[0] else float("nan"),
            "fps_including_fill": n / (ts[-1] - t0), "wall_s": ts[-1] - t0, "stages_ms_p50_under_load": stages}


def backend_only(backend, tiffs: list[Path], n: int) -> dict:
    from copilot.readers import read_frame

    frames = [read_frame(p, stream="bench") for p in tiffs]
    backend.segment(frames[0])  # warm-up
    times = []
    cpu0 = time.process_time()
    for k in range(n):
        t = time.perf_counter()
        backend.segment(frames[k % len(frames)])
        times.append(time.perf_counter() - t)
    out = pct(times)
    out["fps"] = 1.0 / float(np.mean(times))
    out["cpu_ms_per_frame"] = (time.process_time() - cpu0) * 1e3 / n
    return out


def stage_breakdown(timings: list[dict], lat_s: list[float]) -> dict:
    """p50 of each stage (ms), of the daemon's own end_to_end, and of what the stages leave out."""
    out = {}
    for k in (*STAGES, "end_to_end"):
        v = [t[k] for t in timings if k in t]
        if v:
            out[k] = float(np.median(v))
    inside = [t.get("end_to_end", 0) - sum(t.get(k, 0) for k in STAGES) for t in timings]
    outside = [l * 1e3 - t.get("end_to_end", 0) for l, t in zip(lat_s, timings)]
    out["queues_and_handoffs"] = float(np.median(inside))
    out["event_to_arrival_plus_publish"] = float(np.median(outside))
    return out


# -- processes --------------------------------------------------------------------------------------------------
def start_daemon(work: Path, acq: Path, model: str, backend: str, threads: int, pub: str, snap: str,
                 extra_toml: str = "") -> subprocess.Popen:
    cfg = work / "bench.toml"
    cfg.write_text(
        f'[daemon]\nstream = "bench"\nstate_dir = "{work / "state"}"\n'
        f'[source]\nkind = "directory"\nwatch = "{acq}"\nsettle_s = 0.2\n'
        f'[model]\nname = "{model}"\nbackend = "{backend}"\nthreads = {threads}\n'
        f'[publish]\npub_endpoint = "{pub}"\nsnapshot_endpoint = "{snap}"\n' + extra_toml
    )
    log = open(work / "daemon.log", "w")
    return subprocess.Popen([sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)


def start_naive(acq: Path, model: str, pub: str, log_path: Path, working_scale: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(REPO / "bench" / "naive.py"), str(acq), "--model", model, "--pub", pub]
    return subprocess.Popen(cmd + (["--working-scale"] if working_scale else []), cwd=REPO, env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def warm_up(listener: Listener, staged: list[Staged], acq: Path, what: str, timeout: float = 180) -> None:
    """Feed frames until the first result arrives (the process is up and the subscription has propagated)."""
    end = time.time() + timeout
    listener.forget([f.stem for f in staged])
    for f in staged:
        f.publish()
        if listener.wait([f.stem], min(30.0, max(1.0, end - time.time()))):
            return
        if time.time() > end:
            break
    raise TimeoutError(f"{what} produced no result within {timeout} s")


# -- the benchmark ----------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Versions of what the numbers depend on (None where a package is absent), and the checkout's commit."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in ("copilot", "numpy", "scipy", "scikit-image", "onnxruntime", "onnxruntime-gpu", "pydantic", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def machine_info(backend_name: str) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": platform.processor(),
            "cpu_count": os.cpu_count(), "backend": backend_name, "load_avg_at_start": os.getloadavg(),
            "versions": versions()}
    info["onnxruntime"] = info["versions"]["onnxruntime"] or info["versions"]["onnxruntime-gpu"]
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), info["cpu"])
    except OSError:
        pass
    if info["versions"]["torch"]:
        info["torch"] = info["versions"]["torch"]
    return info


class LoadSampler:
    """Samples the 1-minute load average every ``every_s`` seconds while the benchmark runs (other jobs on the
    machine slow every number down; this says by how much they were there)."""

    def __init__(self, every_s: float = 5.0):
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(1.0)
        v = np.asarray(self.samples)
        return {"load1_mean": float(v.mean()), "load1_max": float(v.max()), "samples": int(v.size),
                "load_avg_at_end": os.getloadavg()}


def torch_missing() -> str | None:
    """Why the naive baseline cannot run here (it needs torch), or None."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        found = False
    return None if found else "torch is not installed (the train extra)"


def run_bench(sizes=(512, 1024, 2048, 4096), frames: int = 20, *, model: str = "particles-stem",
              backend: str = "auto", threads: int = 2, nm_per_px: float | None = None, naive: bool = True,
              workdir: Path | None = None, distinct: int = 4, log=print,
              naive_variants: tuple[str, ...] = ("native", "working-scale"), extra_toml: str = "") -> dict:
    from copilot.inference.select import load_backend

    sampler = LoadSampler()
    work = Path(workdir or tempfile.mkdtemp(prefix="copilot-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    frames_dir = work / "frames"
    eng = load_backend(model, backend, threads, state_dir=work / "state")
    task = eng.card.task
    nm_per_px = nm_per_px or _postprocess_module().default_nm_per_px(task)
    log(f"backend: {eng.name} ({'; '.join(f'{n}: {o}' for n, o in getattr(eng, 'selection', []))})")
    results: dict = {"created_at": datetime.now(timezone.utc).isoformat(), "machine": machine_info(eng.name),
                     "settings": {"model": model, "card_version": eng.card.version, "backend": backend,
                                  "threads": threads, "nm_per_px": nm_per_px, "frames": frames,
                                  "working_nm_per_px": eng.card.working_nm_per_px,
                                  "daemon_config_extra": extra_toml}, "sizes": {}}
    tiffs = {}
    for size in sizes:
        t = time.perf_counter()
        tiffs[size] = simulated_tiffs(size, min(distinct, frames), frames_dir, nm_per_px, task=task)
        log(f"{size}²: {len(tiffs[size])} simulated frames ready ({time.perf_counter() - t:.1f} s)")
        results["sizes"][str(size)] = {"backend_only": backend_only(eng, tiffs[size], frames)}
        log(f"{size}² backend only: {results['sizes'][str(size)]['backend_only']}")
    eng.close()
    del eng

    # the daemon, one process for every size
    acq = work / "acq"
    shutil.rmtree(acq, ignore_errors=True)
    acq.mkdir(parents=True)
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon(work, acq, model, backend, threads, pub, snap, extra_toml)
    listener, sub = daemon_listener(pub, snap)
    try:
        warm_up(listener, stage(tiffs[sizes[0]], acq, 20, "warmup"), acq, "the daemon")
        for size in sizes:
            r = results["sizes"][str(size)]
            warm = stage(tiffs[size], acq, 2, f"d{size}w")
            measure_latency(warm, acq, listener, gap_s=0.1)
            lat, timings = measure_latency(stage(tiffs[size], acq, frames, f"d{size}l"), acq, listener)
            thr = measure_throughput(stage(tiffs[size], acq, frames, f"d{size}t"), acq, listener, pid=proc.pid)
            r["daemon"] = {"latency_s": pct(lat), "throughput": thr, "stages_ms_p50": stage_breakdown(timings, lat)}
            log(f"{size}² daemon: p50 {r['daemon']['latency_s']['p50']:.3f} s, "
                f"{thr['fps_sustained']:.2f} frames/s; stages {r['daemon']['stages_ms_p50']}")
    finally:
        listener.close()
        sub.close()
        stop(proc)

    why_not = (torch_missing() or (None if task == "particles" else
                                    f"it measures particles, and {model} is a {task} model")) if naive else None
    if why_not:
        log(f"naive baseline skipped: {why_not}")
        results["settings"]["naive_skipped"] = why_not
    for variant in naive_variants if naive and not why_not else ():
        key = "naive" if variant == "native" else f"naive_{variant.replace('-', '_')}"
        acq = work / f"acq-{key}"
        shutil.rmtree(acq, ignore_errors=True)
        acq.mkdir(parents=True)
        npub = f"tcp://127.0.0.1:{free_port()}"
        nproc = start_naive(acq, model, npub, work / f"{key}.log", variant == "working-scale")
        listener, s = naive_listener(npub)
        try:
            warm_up(listener, stage(tiffs[sizes[0]], acq, 20, "warmup"), acq, "the naive script")
            for size in sizes:
                r = results["sizes"][str(size)]
                measure_latency(stage(tiffs[size], acq, 1, f"n{size}w"), acq, listener, gap_s=0.1)
                lat, timings = measure_latency(stage(tiffs[size], acq, frames, f"n{size}l"), acq, listener)
                thr = measure_throughput(stage(tiffs[size], acq, frames, f"n{size}t"), acq, listener, pid=nproc.pid)
                r[key] = {"latency_s": pct(lat), "throughput": thr,
                          "stages_ms_p50": {k: float(np.median([t[k] for t in timings])) for k in timings[0]}}
                log(f"{size}² {key}: p50 {r[key]['latency_s']['p50']:.3f} s, {thr['fps_sustained']:.2f} frames/s")
        finally:
            listener.close()
            s.close(linger=0)
            stop(nproc)

    for size in sizes:
        r = results["sizes"][str(size)]
        e, d = r["backend_only"], r["daemon"]
        ratios = {"daemon_p50_over_backend_p50": d["latency_s"]["p50"] / e["p50"],
                  "daemon_fps_over_backend_fps": d["throughput"]["fps_sustained"] / e["fps"]}
        if d["throughput"].get("cpu_ms_per_frame") and e.get("cpu_ms_per_frame"):
            ratios["backend_cpu_over_daemon_cpu"] = e["cpu_ms_per_frame"] / d["throughput"]["cpu_ms_per_frame"]
        if "naive" in r:
            ratios["daemon_fps_over_naive_fps"] = d["throughput"]["fps_sustained"] / r["naive"]["throughput"][
                "fps_sustained"]
            ratios["naive_p50_over_daemon_p50"] = r["naive"]["latency_s"]["p50"] / d["latency_s"]["p50"]
        if "naive_working_scale" in r:
            nw = r["naive_working_scale"]
            ratios["daemon_fps_over_naive_working_scale_fps"] = d["throughput"]["fps_sustained"] / nw["throughput"][
                "fps_sustained"]
            ratios["naive_working_scale_p50_over_daemon_p50"] = nw["latency_s"]["p50"] / d["latency_s"]["p50"]
        r["ratios"] = ratios
        targets = {}
        if size in (1024, 2048):
            targets["p50_le_1.25x_backend"] = ratios["daemon_p50_over_backend_p50"] <= 1.25
            targets["throughput_ge_0.8x_backend"] = ratios["daemon_fps_over_backend_fps"] >= 0.8
        if size == 512:
            targets["p50_le_3x_backend"] = ratios["daemon_p50_over_backend_p50"] <= 3.0
        if "daemon_fps_over_naive_fps" in ratios:
            targets["ge_4x_naive"] = ratios["daemon_fps_over_naive_fps"] >= 4.0
        if size == 2048:
            targets["p50_le_0.5s"] = d["latency_s"]["p50"] <= 0.5
        r["targets_met"] = targets
    results["machine"].update(sampler.stop())
    return results


def markdown(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    lines = [
        f"# copilot bench — {results['created_at'][:19]}Z",
        "",
        f"{m['cpu']} ({m['cpu_count']} cores), Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"backend **{m['backend']}**, {s['threads']} threads; model {s['model']} {s['card_version']} "
        f"(working {s['working_nm_per_px']} nm/px); frames simulated at {s['nm_per_px']} nm/px, {s['frames']} per "
        f"measurement; load average (1/5/15 min) at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}, "
        f"at end {tuple(round(x, 2) for x in m.get('load_avg_at_end', ()))}; 1-min load during the run "
        f"{m.get('load1_mean', float('nan')):.1f} mean, {m.get('load1_max', float('nan')):.1f} max. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v) + ".",
        "",
        "Latency: file renamed into the watched folder → result document received by a ZeroMQ subscriber (one "
        "frame at a time). Throughput: all frames renamed in at once, (n − 1) / (last − first result). "
        "*backend*: `segment()` alone on the same frames in memory. *naive*: `bench/naive.py` (watchdog + torch "
        "eager + skimage regionprops, sequential) on the frame as acquired; *naive-ws*: the same script rescaling "
        "to the card's working scale first.",
        "",
        "| frame | backend p50 (s) | daemon p50 / p95 / p99 (s) | naive p50 (s) | naive-ws p50 (s) | backend fps | "
        "daemon fps | naive fps | naive-ws fps | p50 ÷ backend | fps ÷ backend | fps ÷ naive | fps ÷ naive-ws |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, r in results["sizes"].items():
        e, d, n, nw = r["backend_only"], r["daemon"], r.get("naive"), r.get("naive_working_scale")
        lat, ra = d["latency_s"], r["ratios"]
        cells = [f"{size}²", f"{e['p50']:.3f}", f"{lat['p50']:.3f} / {lat['p95']:.3f} / {lat['p99']:.3f}",
                 f"{n['latency_s']['p50']:.3f}" if n else "–", f"{nw['latency_s']['p50']:.3f}" if nw else "–",
                 f"{e['fps']:.2f}", f"{d['throughput']['fps_sustained']:.2f}",
                 f"{n['throughput']['fps_sustained']:.2f}" if n else "–",
                 f"{nw['throughput']['fps_sustained']:.2f}" if nw else "–",
                 f"{ra['daemon_p50_over_backend_p50']:.2f}×", f"{ra['daemon_fps_over_backend_fps']:.2f}×",
                 f"{ra['daemon_fps_over_naive_fps']:.1f}×" if n else "–",
                 f"{ra['daemon_fps_over_naive_working_scale_fps']:.1f}×" if nw else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    if all("backend_cpu_over_daemon_cpu" in r["ratios"] for r in results["sizes"].values()):
        lines += ["", "CPU per frame (ms of CPU, all threads; steadier than wall-clock on a shared machine — on a "
                  "CPU-bound box, throughput ∝ 1 / CPU per frame):", "",
                  "| frame | backend only | daemon (throughput run) | backend ÷ daemon |", "| --- | --- | --- | --- |"]
        for size, r in results["sizes"].items():
            lines.append(f"| {size}² | {r['backend_only']['cpu_ms_per_frame']:.0f} | "
                         f"{r['daemon']['throughput']['cpu_ms_per_frame']:.0f} | "
                         f"{r['ratios']['backend_cpu_over_daemon_cpu']:.2f}× |")
    lines += ["", "Per-stage p50 inside the daemon (ms, from the result documents' `timings_ms`):", "",
              "| frame | read | infer | analyze | assess | follow | queues/hand-offs | file event + publish + transport | "
              "daemon end_to_end |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size, r in results["sizes"].items():
        st = r["daemon"]["stages_ms_p50"]
        lines.append(f"| {size}² | " + " | ".join(f"{st.get(k, float('nan')):.0f}" for k in (
            *STAGES, "queues_and_handoffs", "event_to_arrival_plus_publish", "end_to_end")) + " |")
    loaded = {k: r["daemon"]["throughput"].get("stages_ms_p50_under_load") for k, r in results["sizes"].items()}
    if all(loaded.values()):
        lines += ["", "Per-stage p50 during the throughput run (ms; stages overlap across frames and share the "
                  "cores):", "", "| frame | read | infer | analyze | assess | follow | daemon end_to_end |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for size, st in loaded.items():
            lines.append(f"| {size}² | " + " | ".join(f"{st.get(k, float('nan')):.0f}" for k in (
                *STAGES, "end_to_end")) + " |")
    lines += ["", "Targets (reported, not asserted):", ""]
    for size, r in results["sizes"].items():
        lines.append(f"- {size}²: " + ", ".join(f"{k} {'✅' if v else '❌'}" for k, v in r["targets_met"].items()))
    return "\n".join(lines) + "\n"


def run_postprocess_bench(sizes, frames, *, workers: int = 2, model: str = "particles-stem",
                          backend: str = "onnxruntime", threads: int = 2, nm_per_px: float | None = None,
                          log=print) -> dict:
    """``copilot bench --postprocess``: bench/postprocess.py with the machine, load and versions recorded."""
    post = _postprocess_module()
    sampler = LoadSampler()
    results = {"created_at": datetime.now(timezone.utc).isoformat(), "machine": machine_info(backend),
               "postprocess": post.run_postprocess(sizes, frames, model=model, backend=backend, threads=threads,
                                                   nm_per_px=nm_per_px, workers=workers, log=log)}
    results["machine"].update(sampler.stop())
    m = results["machine"]
    md = [f"# copilot bench --postprocess — {results['created_at'][:19]}Z", "",
          f"{m['cpu']} ({m['cpu_count']} cores), Python {m['python']}; 1-min load average at start "
          f"{m['load_avg_at_start'][0]:.1f}, during the run {m['load1_mean']:.1f} mean / {m['load1_max']:.1f} max. "
          "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", ""]
    results["markdown"] = "\n".join(md + post.markdown(results["postprocess"]))
    return results


def main(sizes, frames, json_path=None, md_path=None, postprocess: bool = False, workers: int = 2,
         **kwargs) -> dict:
    if postprocess:
        keep = {k: kwargs[k] for k in ("model", "threads", "nm_per_px") if k in kwargs}
        backend = kwargs.get("backend", "auto")
        results = run_postprocess_bench(sizes, frames, workers=workers,
                                        backend="onnxruntime" if backend == "auto" else backend, **keep)
        md = results.pop("markdown")
        _write(results, md, json_path, md_path)
        return results
    results = run_bench(sizes, frames, **kwargs)
    _write(results, markdown(results), json_path, md_path)
    return results


def _write(results: dict, md: str, json_path, md_path) -> None:
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    if md_path:
        Path(md_path).write_text(md)
    print(md)
