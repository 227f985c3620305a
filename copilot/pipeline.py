"""The frame path as stage threads joined by bounded queues.

    source ─► [read] ─► Frame ─► [infer] ─► Segmentation ─► [measure] ─► Result ─► [sink: store + publish]

Reading, inference and measurement of successive frames overlap. Queues are bounded, so a slow stage pushes back
on the source instead of growing memory. ``stop()`` (SIGINT/SIGTERM) stops the source, lets every frame already
accepted pass through all stages, then returns.
"""

from __future__ import annotations

import logging
import queue
import shutil
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
        quarantine_mode: str = "move",
        analysis: AnalysisSettings | None = None,
        series: SeriesSettings | None = None,
        thresholds: VerdictThresholds | None = None,
        send_labels: bool = True,
        queue_size: int = 4,
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
        self.session_epoch: str | None = None  # the daemon's session: every result carries it
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
        """Hand the pipeline one arrival; blocks while the first queue is full (backpressure)."""
        with self._lock:
            self.stats.received += 1
        self._queues[0].put(_Job(arrival, None))

    def stop(self, timeout: float | None = None) -> None:
        """Stop the source, drain every frame already accepted, join the stage threads."""
        if self._source is not None:
            self._source.stop()
            self._source = None
        if self._started:
            self._queues[0].put(_STOP)
            for t in self._threads:
                t.join(timeout)
            self._started = False

    def healthy(self) -> bool:
        """Every stage thread is alive (the systemd watchdog is fed only while this holds)."""
        return self._started and all(t.is_alive() for t in self._threads)

    def queue_depths(self) -> list[int]:
        return [q.qsize() for q in self._queues]

    def _loop(self, stage, inbox: queue.Queue, outbox: queue.Queue | None) -> None:
        while True:
            job = inbox.get()
            if job is _STOP:
                if outbox is not None:
                    outbox.put(_STOP)
                return
            t0 = time.perf_counter()
            try:
                job = stage(job)
            except Exception as exc:  # one bad frame must never stop the daemon
                log.exception("stage %s failed on %s", stage.__name__, job.arrival.origin)
                self._record_failure(job, "failed", f"{stage.__name__.strip('_')}: {type(exc).__name__}: {exc}")
                continue
            if job is None:
                continue
            job.timings_ms[stage.__name__.strip("_")] = (time.perf_counter() - t0) * 1e3
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
            log.warning("%s vanished before it could be read", path)
            return None
        if self.store is not None and self.store.is_done(str(path), job.fingerprint):
            with self._lock:
                self.stats.skipped += 1
            return None
        try:
            job.payload = read_frame(path, stream=self.stream)
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
        t1 = time.perf_counter()
        reliability, verdict, uncertainty = self.assessor.assess(fm)
        t2 = time.perf_counter()
        series = self.series.update(fm, verdict.level)  # FAIL frames are left out of the series
        job.timings_ms["assess"] = (t2 - t1) * 1e3
        job.timings_ms["analyze"] = (t1 - t0) * 1e3 + (time.perf_counter() - t2) * 1e3
        job.payload = (fm, series, reliability, verdict, uncertainty)
        return job

    def _sink(self, job: _Job) -> _Job:
        fm, series, reliability, verdict, uncertainty = job.payload
        timings = dict(job.timings_ms)
        timings.pop("measure", None)
        timings["end_to_end"] = (time.time() - job.arrival.arrived_at) * 1e3
        result = build_result(fm, reliability, verdict, timings, series=series, uncertainty=uncertainty,
                              send_labels=self.send_labels, session_epoch=self.session_epoch)
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
        return job

    # -- failures --------------------------------------------------------------------------------------------
    def _quarantine(self, job: _Job, reason: str) -> None:
        path = job.arrival.path
        log.warning("quarantined %s: %s", path, reason)
        if self.quarantine_dir is not None and path is not None:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            target = self.quarantine_dir / path.name
            n = 1
            while target.exists():
                target = self.quarantine_dir / f"{path.stem}.{n}{path.suffix}"
                n += 1
            (shutil.move if self.quarantine_mode == "move" else shutil.copy2)(str(path), str(target))
            target.with_name(target.name + ".reason.txt").write_text(f"{path}\n{reason}\n")
        self._record_failure(job, "quarantined", reason)

    def _record_failure(self, job: _Job, status: str, reason: str) -> None:
        with self._lock:
            if status == "quarantined":
                self.stats.quarantined += 1
            else:
                self.stats.failed += 1
            self.stats.last_error = f"{job.arrival.origin}: {reason}"
        if self.store is not None:
            self.store.record_failure(job.arrival.origin, job.fingerprint, status, reason)
