"""The frame path as stage threads joined by bounded queues.

    source ─► [read] ─► Frame ─► [infer] ─► Segmentation ─► [measure] ─► Result ─► [sink: store + publish]

Reading, inference and measurement of successive frames overlap. Queues are bounded, so a slow stage pushes back
on the source instead of growing memory. ``stop()`` (SIGINT/SIGTERM) stops the source, lets every frame already
accepted pass through all stages, then returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from copilot.analysis import measure
from copilot.analysis.series import SeriesTracker
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.errors import UnreadableFrame
from copilot.frame import Frame
from copilot.inference.segmentation import Engine
from copilot.readers import read_frame
from copilot.readers.base import path_text
from copilot.readers.limits import InputLimits
from copilot.reliability.score import Assessor, VerdictThresholds
from copilot.result import Result, build_result
from copilot.sources.base import Arrival, Source
from copilot.store import file_fingerprint

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Job:
    """What travels between stages: the arrival, its timings so far, and the current stage's payload."""

    arrival: Arrival
    fingerprint: str | None
    payload: Any = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineStats:
    received: int = 0
    processed: int = 0
    skipped: int = 0
    quarantined: int = 0
    failed: int = 0
    last_error: str | None = None


class Pipeline:
    """Runs frames from a source (or from ``submit``) through reader, engine, analysis and reliability.

    ``sinks`` receive every Result on the sink thread (store, publisher, exporters); ``store`` (optional) makes a
    frame already recorded with the same fingerprint a no-op and records quarantines and failures.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        stream: str = "default",
        store=None,
        sinks: list[Callable[[Result], None]] | None = None,
        quarantine_dir: Path | None = None,
        quarantine_mode: str = "record",
        analysis: AnalysisSettings | None = None,
        series: SeriesSettings | None = None,
        thresholds: VerdictThresholds | None = None,
        send_labels: bool = True,
        queue_size: int = 4,
        limits: InputLimits | None = None,
        watch_root: Path | None = None,
        inflight=None,
        stuck_after_s: float = 600.0,
    ):
        self.engine = engine
        self.stream = stream
        self.store = store
        self.sinks = list(sinks or [])
        self.quarantine_dir = quarantine_dir
        self.quarantine_mode = quarantine_mode
        self.analysis = analysis or AnalysisSettings()
        self.series = SeriesTracker(series, self.analysis)
        self.assessor = Assessor(getattr(engine, "card", None), getattr(engine, "folder", None), thresholds)
        self.send_labels = send_labels
        self.limits = limits or InputLimits()
        self.watch_root = watch_root  # quarantine copies only from inside this tree
        self.inflight = inflight  # copilot.inflight.InflightLog: inputs in flight survive a crash of the process
        self.stuck_after_s = stuck_after_s
        self._abandoned = threading.Event()
        self._busy: dict[str, tuple[float, str]] = {}  # stage -> (monotonic start, origin) while it works on one
        self.stats = PipelineStats()
        self._lock = threading.Lock()
        self._queues = [queue.Queue(maxsize=queue_size) for _ in range(4)]
        self._threads: list[threading.Thread] = []
        self._source: Source | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, source: Source | None = None) -> "Pipeline":
        stages = [self._read, self._infer, self._measure, self._sink]
        for i, stage in enumerate(stages):
            out = self._queues[i + 1] if i + 1 < len(self._queues) else None
            t = threading.Thread(target=self._loop, args=(stage, self._queues[i], out), name=stage.__name__, daemon=True)
            t.start()
            self._threads.append(t)
        self._started = True
        if source is not None:
            self._source = source
            source.start(self.submit)
        return self

    def submit(self, arrival: Arrival) -> None:
        """Hand the pipeline one arrival; blocks while the first queue is full (backpressure), except once a stop
        gave up on a dead or stuck stage (the arrival is then left for the next start, which finds it unrecorded)."""
        with self._lock:
            self.stats.received += 1
        job = _Job(arrival, None)
        while not self._abandoned.is_set():
            try:
                self._queues[0].put(job, timeout=0.5)
                return
            except queue.Full:
                continue

    def stop(self, timeout: float | None = None) -> None:
        """Stop the source, drain every frame already accepted, join the stage threads.

        With a dead or stuck stage nothing can drain: stop then waits at most a few seconds instead of forever
        (SIGTERM still ends the daemon; unfinished inputs have no record and are read again at the next start).
        """
        if self.problems():
            self._abandoned.set()
            timeout = 2.0 if timeout is None else min(timeout, 2.0)
            log.error("stopping without draining: %s", "; ".join(self.problems()))
        if self._source is not None:
            self._source.stop()
            self._source = None
        if self._started:
            try:
                self._queues[0].put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            for t in self._threads:
                t.join(timeout)
            self._started = False

    def healthy(self) -> bool:
        """Every stage thread is alive and none has been stuck on one input for ``stuck_after_s`` (the systemd
        watchdog is fed only while this holds)."""
        return self._started and not self.problems()

    def problems(self) -> list[str]:
        """Why the pipeline is unhealthy: dead stage threads, and stages stuck on one input (empty when healthy)."""
        out = [f"stage thread {t.name} is dead" for t in self._threads if not t.is_alive()]
        now = time.monotonic()
        for stage, (since, origin) in list(self._busy.items()):
            if now - since > self.stuck_after_s:
                out.append(f"stage {stage} stuck for {now - since:.0f} s on {origin}")
        return out

    def queue_depths(self) -> list[int]:
        return [q.qsize() for q in self._queues]

    def _loop(self, stage, inbox: queue.Queue, outbox: queue.Queue | None) -> None:
        name = stage.__name__.strip("_")
        while True:
            job = inbox.get()
            if job is _STOP:
                if outbox is not None:
                    outbox.put(_STOP)
                return
            t0 = time.perf_counter()
            self._busy[name] = (time.monotonic(), job.arrival.origin)
            self._mark_inflight(job, name)
            try:
                job = stage(job)
            except UnreadableFrame as exc:  # refused by a later bound (resampling, working grid): a reason, no trace
                self._quarantine(job, exc.reason)
                continue
            except (Exception, SystemExit) as exc:  # one bad input must never stop a stage
                log.error("stage %s failed on %s: %s: %s", name, job.arrival.origin, type(exc).__name__, exc,
                          exc_info=not isinstance(exc, (MemoryError, RecursionError)))
                self._record_failure(job, "failed", f"{name}: {type(exc).__name__}: {exc}")
                continue
            finally:
                self._busy.pop(name, None)
            if job is None:
                continue
            if name != "sink":
                self._mark_inflight(job, "")  # waiting in the next queue: not to blame if the process dies now
            job.timings_ms[name] = (time.perf_counter() - t0) * 1e3
            if outbox is not None:
                outbox.put(job)

    # -- stages ----------------------------------------------------------------------------------------------
    def _read(self, job: _Job) -> _Job | None:
        arrival = job.arrival
        if arrival.frame is not None:
            job.payload = arrival.frame
            return job
        path = arrival.path
        try:
            job.fingerprint = file_fingerprint(path)
        except FileNotFoundError:
            log.warning("%s vanished before it could be read", arrival.origin)
            return None
        if self.store is not None and self.store.is_done(path_text(path), job.fingerprint):
            with self._lock:
                self.stats.skipped += 1
            return None
        if self.inflight is not None:
            self.inflight.begin(path_text(path), job.fingerprint, "read")
        try:
            job.payload = read_frame(path, stream=self.stream, limits=self.limits)
        except UnreadableFrame as exc:
            self._quarantine(job, exc.reason)
            return None
        return job

    def _infer(self, job: _Job) -> _Job:
        frame: Frame = job.payload
        job.payload = self.engine.segment(frame)
        return job

    def _measure(self, job: _Job) -> _Job:
        t0 = time.perf_counter()
        fm = measure(job.payload, self.analysis)
        series = self.series.update(fm)
        t1 = time.perf_counter()
        reliability, verdict, uncertainty = self.assessor.assess(fm)
        job.timings_ms["assess"] = (time.perf_counter() - t1) * 1e3
        job.timings_ms["analyze"] = (t1 - t0) * 1e3
        job.payload = (fm, series, reliability, verdict, uncertainty)
        return job

    def _sink(self, job: _Job) -> _Job:
        fm, series, reliability, verdict, uncertainty = job.payload
        timings = dict(job.timings_ms)
        timings.pop("measure", None)
        timings["end_to_end"] = (time.time() - job.arrival.arrived_at) * 1e3
        result = build_result(fm, reliability, verdict, timings, series=series, uncertainty=uncertainty,
                              send_labels=self.send_labels)
        result.arrived_at = job.arrival.arrived_at
        if self.store is not None:
            self.store.record_result(result.doc, job.fingerprint)
        for sink in self.sinks:
            try:
                sink(result)
            except Exception:
                log.exception("result sink %r failed for %s", sink, result.doc.frame_id)
        with self._lock:
            self.stats.processed += 1
        self._end_inflight(job)
        return job

    # -- failures --------------------------------------------------------------------------------------------
    def _quarantine(self, job: _Job, reason: str) -> None:
        """Record the reason (the acquisition folder is never touched); with ``quarantine_mode="copy"`` also keep a
        sparse-aware copy of a regular file inside the watched tree."""
        path = job.arrival.path
        note = ""
        if self.quarantine_mode == "copy" and self.quarantine_dir is not None and path is not None:
            from copilot.sources.quarantine import quarantine_copy

            try:
                note = "; " + quarantine_copy(path, path_text(path), job.fingerprint, reason,
                                              folder=self.quarantine_dir, root=self.watch_root,
                                              max_bytes=int(self.limits.quarantine_copy_max_mb * 2**20))
            except Exception as exc:  # the record below matters more than the copy
                note = f"; not copied: {type(exc).__name__}: {exc}"
        log.warning("quarantined %s: %s%s", job.arrival.origin, reason, note)
        self._record_failure(job, "quarantined", reason)

    def _record_failure(self, job: _Job, status: str, reason: str) -> None:
        origin = path_text(job.arrival.origin)
        with self._lock:
            if status == "quarantined":
                self.stats.quarantined += 1
            else:
                self.stats.failed += 1
            self.stats.last_error = f"{origin}: {reason}"
        try:
            if self.store is not None:
                self.store.record_failure(origin, job.fingerprint, status, reason)
            self._end_inflight(job)
        except Exception:  # a failing store must not take the stage thread with it
            log.exception("could not record the %s outcome of %s", status, origin)

    def _mark_inflight(self, job: _Job, stage: str) -> None:
        if self.inflight is not None and job.arrival.path is not None and job.fingerprint is not None:
            try:
                self.inflight.stage(path_text(job.arrival.path), job.fingerprint, stage)
            except Exception:  # bookkeeping must never take a stage thread with it
                log.exception("could not note %s in the in-flight log", job.arrival.origin)

    def _end_inflight(self, job: _Job) -> None:
        if self.inflight is not None and job.arrival.path is not None:
            self.inflight.end(path_text(job.arrival.path), job.fingerprint)
