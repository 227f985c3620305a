"""``copilot bench --postprocess``: everything but inference, per stage, per frame size, on 1 and N workers.

A :class:`ReplayBackend` returns network outputs recorded once from the real backend (class probabilities, embedding,
the normalized input the network saw) instantly, so what is timed is the daemon's own code after the network:
the pipeline's stage objects (analyze, assess, follow, sink) called one after another on in-memory frames
(``single``), then the whole pipeline with its measure lane on 1 thread, N threads and N worker processes
(``throughput``: frames per second from the first submit to the last result, and the CPU it took, workers included;
``paired_throughput``: the three in turn, three rounds, medians and paired speed-ups). A cProfile of the
single-worker pass (timed in the thread's CPU time) gives the top entries by own time, per size.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

POST_STAGES = ("analyze", "assess", "follow", "sink")


class ReplayBackend:
    """A Backend (copilot.inference.segmentation) that replays recorded segmentations, keyed by frame id."""

    name = "replay"

    def __init__(self, card, folder: Path | None, recorded: dict):
        self.card = card
        self.folder = folder
        self.selection = [("replay", "recorded outputs of the real backend")]
        self._recorded = recorded

    @classmethod
    def record(cls, backend, frames) -> "ReplayBackend":
        """Run ``backend`` once on each frame and keep its outputs."""
        recorded = {f.frame_id: backend.segment(f) for f in frames}
        return cls(backend.card, backend.folder, recorded)

    def segment(self, frame):
        seg = self._recorded[frame.frame_id]
        # a fresh Segmentation (its output maps are computed again, as for a new frame), same arrays
        return replace(seg, frame=frame, backend=self.name, precomputed_maps=None)

    def close(self) -> None:
        self._recorded.clear()


def simulated_images(size: int, n: int, nm_per_px: float, seed: int = 0, task: str = "particles") -> list:
    """``n`` simulated frames (``copilot.sim`` SimFrames) of ``size``² at ``nm_per_px``: supported nanoparticles
    (STEM), or for ``task="phases"`` SEM micrographs of varied two-phase and porous microstructures."""
    if task == "phases":
        from copilot.sim.sem import random_sem_params, simulate_sem

        rng = np.random.default_rng(seed)
        return [simulate_sem(random_sem_params(rng, size, (nm_per_px, nm_per_px)), seed + i) for i in range(n)]
    if task == "particles":
        from copilot.sim import SimParams, simulate_frame

        params = SimParams(size_px=size, nm_per_px=nm_per_px, area_fraction=0.12, touching_fraction=0.1)
        return [simulate_frame(params, seed + i) for i in range(n)]
    raise ValueError(f"the benches simulate particles or phases frames, not {task!r} (model's task)")


def default_nm_per_px(task: str) -> float:
    """The benches' frames: 0.2 nm/px for particles (0.5 nm/px models), 1.0 for phases (2 nm/px models)."""
    return 1.0 if task == "phases" else 0.2


def simulated_frames(size: int, n: int, nm_per_px: float, stream: str = "bench", seed: int = 0,
                     task: str = "particles"):
    """``simulated_images`` as in-memory Frames."""
    from copilot.frame import Frame

    return [Frame(sim.image, nm_per_px, stream=stream, frame_id=f"{size}-{i}", origin="sim")
            for i, sim in enumerate(simulated_images(size, n, nm_per_px, seed, task))]


def _stages(pipeline):
    return [s for lane in pipeline.lanes for s in lane.stages if s.name in POST_STAGES]


def single(replay, frames, repeats: int, profile: bool = False) -> dict:
    """Per-stage times (ms) of the post-processing stages, one frame after another on this thread."""
    from copilot.pipeline import Job, Pipeline
    from copilot.sources.base import Arrival

    pipeline = Pipeline(replay, stream="bench")
    stages = _stages(pipeline)
    times: dict[str, list[float]] = {s.name: [] for s in stages}
    cpu: dict[str, list[float]] = {s.name: [] for s in stages}
    totals, cpu_totals = [], []
    prof = cProfile.Profile(time.thread_time) if profile else None  # CPU time: other jobs do not inflate it
    particles = []
    for k in range(repeats + 1):  # the first pass warms caches and is not counted
        frame = frames[k % len(frames)]
        job = Job(Arrival(origin=frame.frame_id, frame=frame), k)
        job.payload = replay.segment(frame)
        if prof is not None and k:
            prof.enable()
        t_all, c_all = time.perf_counter(), time.thread_time()
        for stage in stages:
            t, c = time.perf_counter(), time.thread_time()
            job.payload = stage(job.payload, job)
            if k:
                times[stage.name].append((time.perf_counter() - t) * 1e3)
                cpu[stage.name].append((time.thread_time() - c) * 1e3)
        if prof is not None and k:
            prof.disable()
        if k:
            totals.append((time.perf_counter() - t_all) * 1e3)
            cpu_totals.append((time.thread_time() - c_all) * 1e3)
            found = job.payload.doc.measurements.particles  # None for a phases model
            particles.append(found.count if found is not None else 0)
    out = {name: _pct(v) for name, v in times.items()}
    out["total"] = _pct(totals)
    out["cpu_ms"] = {name: _pct(v) for name, v in cpu.items()} | {"total": _pct(cpu_totals)}
    out["particles_per_frame"] = float(np.mean(particles))
    if prof is not None:
        out["profile_top"] = _profile_top(prof, repeats)
    return out


def throughput(replay, frames, n: int, workers: int, mode: str = "threads") -> dict:
    """Frames per second through the whole pipeline (replay backend) with ``workers`` measure threads or processes
    (``mode``); one warm-up frame per worker first (worker processes start then)."""
    from copilot.pipeline import Pipeline
    from copilot.sources.base import Arrival

    done = []
    pipeline = Pipeline(replay, stream="bench", sinks=[lambda r: done.append(time.perf_counter())], workers=workers,
                        queue_size=max(4, 2 * workers), measure_mode=mode)
    pipeline.start()
    for k in range(workers):
        pipeline.submit(Arrival(origin=f"warm{k}", frame=frames[k % len(frames)]))
    while len(done) < workers:
        time.sleep(0.005)
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    for k in range(n):
        pipeline.submit(Arrival(origin=str(k), frame=frames[k % len(frames)]))
    while len(done) < workers + n:
        time.sleep(0.005)
    wall = done[-1] - t0
    cpu = _children_cpu() - cpu0
    pipeline.stop()
    return {"workers": workers, "mode": mode, "frames": n, "wall_s": wall, "fps": n / wall,
            "cpu_ms_per_frame": cpu * 1e3 / n}


def _children_cpu() -> float:
    """CPU seconds of this process and its worker processes so far (``/proc``; children counted once they run)."""
    import os

    total = time.process_time()
    try:
        me = os.getpid()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == me:  # ppid
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return total


def _pct(values) -> dict:
    v = np.asarray(values, float)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean()),
            "n": int(v.size)} if v.size else {}


def _profile_top(prof: cProfile.Profile, frames: int, n: int = 15) -> list[dict]:
    calls = pstats.Stats(prof, stream=io.StringIO()).stats  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}
    rows = sorted(calls.items(), key=lambda kv: -kv[1][2])[:n]
    return [{"function": f"{Path(f).name}:{line}({fn})", "calls_per_frame": nc / frames,
             "own_ms_per_frame": tt * 1e3 / frames, "cumulative_ms_per_frame": ct * 1e3 / frames}
            for (f, line, fn), (_, nc, tt, ct, _c) in rows]


def paired_throughput(replay, frames, n: int, workers: int, rounds: int = 3) -> list[dict]:
    """``throughput`` of one thread, ``workers`` threads and ``workers`` processes, run one after another ``rounds``
    times; per configuration the median frames/s and CPU per frame, and its speed-up as the median of each round's
    ratio to that round's one thread (paired: a machine slowing down for a while slows both sides of a ratio)."""
    configs = ((1, "threads"), (workers, "threads"), (workers, "processes"))
    runs = [[throughput(replay, frames, n, w, mode) for w, mode in configs] for _ in range(max(1, rounds))]
    out = []
    for k, (w, mode) in enumerate(configs):
        mine = [run[k] for run in runs]
        out.append({"workers": w, "mode": mode, "frames": n, "rounds": len(runs),
                    "fps": float(np.median([t["fps"] for t in mine])),
                    "cpu_ms_per_frame": float(np.median([t["cpu_ms_per_frame"] for t in mine])),
                    "speedup": float(np.median([t["fps"] / run[0]["fps"] for t, run in zip(mine, runs)])),
                    "fps_per_round": [t["fps"] for t in mine]})
    return out


def run_postprocess(sizes, frames: int, *, model: str = "particles-stem", backend: str = "onnxruntime",
                    threads: int = 2, nm_per_px: float | None = None, workers: int = 2, distinct: int = 4,
                    rounds: int = 3, log=print) -> dict:
    from copilot.inference.select import load_backend

    real = load_backend(model, backend, threads)
    nm_per_px = nm_per_px or default_nm_per_px(real.card.task)
    results = {"settings": {"model": model, "card_version": real.card.version, "recorded_with": real.name,
                            "nm_per_px": nm_per_px, "frames": frames, "workers": workers, "rounds": rounds,
                            "working_nm_per_px": real.card.working_nm_per_px}, "sizes": {}}
    for size in sizes:
        fr = simulated_frames(size, min(distinct, frames), nm_per_px, task=real.card.task)
        replay = ReplayBackend.record(real, fr)
        grid = replay.segment(fr[0]).probabilities.shape[1:]
        r = {"grid_px": list(grid), "single": single(replay, fr, frames, profile=False)}
        r["profile_top"] = single(replay, fr, max(2, frames // 2), profile=True)["profile_top"]
        r["throughput"] = paired_throughput(replay, fr, max(frames, 2 * workers), workers, rounds)
        results["sizes"][str(size)] = r
        s = r["single"]
        log(f"{size}² (grid {grid[0]}×{grid[1]}, {s['particles_per_frame']:.0f} particles): post-processing p50 "
            f"{s['total']['p50']:.1f} ms wall, {s['cpu_ms']['total']['p50']:.1f} ms CPU (" + ", ".join(f"{k} {s[k]['p50']:.1f}" for k in POST_STAGES) + "); "
            + ", ".join(f"{t['workers']} {t['mode']} {t['fps']:.1f} frames/s" for t in r["throughput"]))
    real.close()
    return results


def markdown(results: dict) -> list[str]:
    s = results["settings"]
    lines = ["## Post-processing (replay backend: recorded network outputs, no inference)", "",
             f"Outputs recorded once with {s['recorded_with']} ({s['model']} {s['card_version']}, working "
             f"{s['working_nm_per_px']} nm/px; frames at {s['nm_per_px']} nm/px). *single*: the pipeline's stage "
             f"objects one after another on one thread, {s['frames']} frames: wall-clock ms, and the thread's CPU ms "
             "(what the stage itself costs, less inflated by other jobs on the machine); *fps*: the whole pipeline, measure "
             "lane on 1 thread, N threads and N worker processes (`[pipeline] measure_mode`), first submit → last "
             f"result, after one warm-up frame per worker; the three run in turn {s.get('rounds', 1)} times: median "
             "frames/s, and each speed-up the median of the rounds' ratios to their own one-thread run.", "",
             "| frame | grid | particles | analyze p50 | assess p50 | follow p50 | sink p50 | **total p50** | total p95 | "
             "**total CPU p50** | fps, 1 worker | fps, N threads | fps, N processes | speed-up threads / processes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size, r in results["sizes"].items():
        one, threads, procs = (r["throughput"] + [r["throughput"][-1]] * 2)[:3]
        st = r["single"]
        lines.append(f"| {size}² | {r['grid_px'][0]}² | {st['particles_per_frame']:.0f} | "
                     + " | ".join(f"{st[k]['p50']:.1f}" for k in POST_STAGES)
                     + f" | **{st['total']['p50']:.1f}** | {st['total']['p95']:.1f} | "
                       f"**{st['cpu_ms']['total']['p50']:.1f}** | {one['fps']:.1f} | "
                       f"{threads['fps']:.1f} ({threads['workers']}) | {procs['fps']:.1f} ({procs['workers']}) | "
                       f"{threads['speedup']:.2f}× / **{procs['speedup']:.2f}×** |")
    lines += ["", "Targets (reported, not asserted): single worker ≤ 10 ms per 1024² frame and ≤ 30 ms per 2048² "
              "frame; N = 2 workers ≥ 1.8× the frames/s of one.", ""]
    for size, r in results["sizes"].items():
        goal = {"1024": 10.0, "2048": 30.0}.get(size)
        many = max(r["throughput"][1:] or r["throughput"], key=lambda t: t["speedup"])
        st = r["single"]
        marks = ([f"total p50 ≤ {goal:g} ms: wall {'✅' if st['total']['p50'] <= goal else '❌'}, CPU "
                  f"{'✅' if st['cpu_ms']['total']['p50'] <= goal else '❌'}"] if goal else [])
        if many["workers"] == 2:
            marks.append(f"2 workers ≥ 1.8× {'✅' if many['speedup'] >= 1.8 else '❌'} ({many['mode']}: "
                         f"{many['speedup']:.2f}×)")
        if marks:
            lines.append(f"- {size}²: " + ", ".join(marks))
    lines += ["", "Top entries of the profile (own CPU ms per frame, single worker):", ""]
    for size, r in results["sizes"].items():
        lines += [f"- {size}²: " + "; ".join(f"`{e['function']}` {e['own_ms_per_frame']:.2f} ms"
                                             for e in r["profile_top"][:8])]
    return lines + [""]
