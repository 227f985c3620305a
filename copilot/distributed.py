"""``copilot analyze PATHS --dask SCHEDULER``: the offline pipeline with each file as a dask.distributed task.

    client (here)                               workers (one backend each, loaded once by a WorkerPlugin)
    files ──► submit, a bounded window ──────►  read ─► segment ─► measure ─► per-frame evidence
    in file order: series, shift window, ◄────  (measurements, embedding, features; the probabilities stay there)
    verdict, result document ─► exports

What depends on earlier frames of a stream (trends, cumulative PSD, the rolling shift window and so the verdict)
runs here, in file order, through the same accumulators as ``copilot analyze``; so the exports are those of a
local run, in the same order, except for timings. A worker that dies has its files rerun elsewhere by the
scheduler (``allowed-failures``); an unreadable file is reported and counted, never fatal.

``SCHEDULER`` is ``local:N`` (a LocalCluster of N single-threaded worker processes on this machine) or the address
of a running scheduler (``tcp://host:8786``), e.g. one started on a Slurm cluster with dask-jobqueue (README,
"Scaling out"). Workers need the co-pilot installed and the files at the same paths.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from copilot.config import Settings
from copilot.pipeline import PipelineStats

log = logging.getLogger(__name__)

PLUGIN_NAME = "copilot-analyze"


@dataclass
class FrameOutcome:
    """What a worker sends back for one file: either the frame-local results or why there are none."""

    path: str
    status: str  # "ok" | "unreadable" | "failed"
    reason: str | None = None
    fm: object | None = None  # FrameMeasurements without probabilities
    reliability: object | None = None  # FrameReliability (its uncertainty map as uint8 in ``uncertainty_u8``)
    uncertainty_u8: np.ndarray | None = None
    timings_ms: dict | None = None
    worker: str | None = None


class FrameWorker:
    """Everything one worker needs, built once: the backend (``load_backend``) and the analysis settings."""

    def __init__(self, settings: Settings):
        from copilot.inference.select import load_backend

        m = settings.model
        self.settings = settings
        from copilot.inference.network import for_batch

        self.backend = for_batch(load_backend(m.name, m.backend, m.threads, m.max_whole_px,
                                              state_dir=settings.daemon.state_dir, precision=m.precision,
                                              triton=settings.triton))
        from copilot.reliability.score import Assessor

        self.assessor = Assessor(self.backend.card, self.backend.folder, settings.verdict)

    def run(self, path: str) -> FrameOutcome:
        from copilot.analysis import measure
        from copilot.errors import UnreadableFrame
        from copilot.readers import read_frame

        t = {}
        t0 = time.perf_counter()
        try:
            frame = read_frame(Path(path), stream=self.settings.daemon.stream)
        except UnreadableFrame as exc:
            return FrameOutcome(path, "unreadable", exc.reason)
        except FileNotFoundError as exc:
            return FrameOutcome(path, "unreadable", f"vanished: {exc}")
        t1 = time.perf_counter()
        seg = self.backend.segment(frame)
        t2 = time.perf_counter()
        fm = measure(seg, self.settings.analysis)
        if self.settings.eds is not None:  # inclusions from the file's EDS spectrum image (.bcf/.emd)
            from copilot.eds.frame_eds import frame_inclusions

            fm = replace(fm, inclusions=frame_inclusions(str(path), self.settings.eds))
        t3 = time.perf_counter()
        rel = self.assessor.frame(fm)  # the frame's own part; the stream's part (shift window) runs in order
        t4 = time.perf_counter()
        t.update(read=(t1 - t0) * 1e3, infer=(t2 - t1) * 1e3, analyze=(t3 - t2) * 1e3, assess=(t4 - t3) * 1e3)
        # the network input stays on the worker (nothing after this point reads it); the probabilities travel, as
        # the verdict judges the particle scale the network saw from them
        slim = replace(fm, segmentation=replace(seg, network_input=None, precomputed_maps=seg.maps))
        u8 = np.round(np.clip(rel.uncertainty, 0, 1) * 255).astype(np.uint8)
        rel = replace(rel, uncertainty=np.zeros((0, 0), np.float32))
        return FrameOutcome(path, "ok", fm=slim, reliability=rel, uncertainty_u8=u8, timings_ms=t)


class CopilotAnalyzePlugin(WorkerPlugin):
    """Loads the backend once per worker process (again in a worker that replaces a dead one)."""

    name = PLUGIN_NAME

    def __init__(self, settings_json: str):
        self.settings_json = settings_json  # JSON, not objects: what travels is plain data
        self.frames: FrameWorker | None = None

    def setup(self, worker) -> None:
        self.frames = FrameWorker(Settings.model_validate_json(self.settings_json))

    def teardown(self, worker) -> None:
        if self.frames is not None:
            getattr(self.frames.backend, "close", lambda: None)()


def analyze_on_worker(path: str) -> FrameOutcome:
    """The task: one file on this worker's backend (loaded by the plugin)."""
    worker = get_worker()
    out = worker.plugins[PLUGIN_NAME].frames.run(path)
    out.worker = worker.address
    return out


def connect(scheduler: str, threads_per_worker: int = 1):
    """A Client for ``local:N`` (a LocalCluster started here) or a scheduler address; returns (client, cluster)."""
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--dask {scheduler!r}: local:N needs a worker count N ≥ 1")
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        return Client(cluster), cluster
    if not scheduler.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise ValueError(f"--dask {scheduler!r}: expected local:N or a scheduler address such as tcp://host:8786")
    return Client(scheduler, timeout="30s"), None


def run_files(files: list[Path], settings: Settings, sinks: list, scheduler: str, *, window_per_worker: int = 3,
              on_failure=None) -> PipelineStats:
    """Analyse ``files`` on the cluster; every Result goes to ``sinks`` in file order (see the module docstring)."""
    from copilot.analysis.series import SeriesTracker
    from copilot.inference.card import load_card
    from copilot.reliability.score import Assessor

    card, folder = load_card(settings.model.name)
    series = SeriesTracker(settings.series, settings.analysis)
    assessor = Assessor(card, folder, settings.verdict)
    stats = PipelineStats(received=len(files))
    client, cluster = connect(scheduler)
    try:
        client.register_plugin(CopilotAnalyzePlugin(settings.model_dump_json()), name=PLUGIN_NAME)
        window = max(1, window_per_worker * len(client.scheduler_info()["workers"]))
        submitted_at: dict[int, float] = {}
        futures = {}
        done: dict[int, FrameOutcome] = {}
        ac = as_completed()

        def submit(i: int) -> None:
            submitted_at[i] = time.time()
            fut = client.submit(analyze_on_worker, str(files[i]), key=f"copilot-analyze-{i}-{files[i].name}",
                                pure=False)
            futures[fut.key] = i
            ac.add(fut)

        nxt = 0
        while nxt < min(window, len(files)):
            submit(nxt)
            nxt += 1
        cursor = 0
        for fut in ac:
            i = futures.pop(fut.key)
            try:
                done[i] = fut.result()
            except Exception as exc:  # a task that raised (or killed its workers too often)
                done[i] = FrameOutcome(str(files[i]), "failed", f"{type(exc).__name__}: {exc}")
            fut.release()
            while cursor in done:  # everything up to here has arrived: fold it in, in file order
                _finish(done.pop(cursor), submitted_at[cursor], series, assessor, sinks, stats, on_failure)
                cursor += 1
                if nxt < len(files):
                    submit(nxt)
                    nxt += 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return stats


def _finish(out: FrameOutcome, submitted_at: float, series, assessor, sinks, stats: PipelineStats,
            on_failure) -> None:
    from copilot.result import Outcome, build_result

    if out.status != "ok":
        if out.status == "unreadable":
            stats.quarantined += 1  # what `copilot analyze` reports as unreadable
        else:
            stats.failed += 1
        stats.last_error = f"{out.path}: {out.reason}"
        log.warning("%s %s: %s", out.status, out.path, out.reason)
        if on_failure is not None:
            on_failure(out)
        return
    t0 = time.perf_counter()
    rel = replace(out.reliability, uncertainty=out.uncertainty_u8.astype(np.float32) / 255.0)
    reliability, verdict = assessor.follow(out.fm, rel)
    summary = series.update(out.fm, verdict.level)  # FAIL frames are left out of the series, as in the pipeline
    timings = dict(out.timings_ms)
    timings["assess"] += (time.perf_counter() - t0) * 1e3
    timings["end_to_end"] = (time.time() - submitted_at) * 1e3
    result = build_result(Outcome(out.fm, reliability, verdict, summary), timings)
    result.arrived_at = submitted_at
    for sink in sinks:
        sink(result)
    stats.processed += 1
