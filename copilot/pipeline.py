"""The frame path as a declared list of typed stages, grouped into lanes that run on their own threads.

    Arrival ─[read]→ Frame ─[infer]→ Segmentation ─[analyze]→ FrameMeasurements ─[assess]→ Measured
            ─[follow]→ Outcome ─[sink]→ Result

    lane:   read │ infer │ measure (analyze + assess, N workers) │ follow (in frame order) │ sink

Each stage is a small class (``name``, ``input``, ``output``, ``__call__``); ``STAGES`` is the path, checked at
import so every arrow carries one type. Lanes are joined by bounded queues, so reading, inference and measurement
of successive frames overlap and a slow lane pushes back on the source instead of growing memory. The measure
lane runs on ``workers`` threads (``measure_mode="threads"``: numpy/scipy/scikit-image and ONNX Runtime release the
GIL for part of the time), or hands each frame to one of ``workers`` processes from its threads, two per process
so that each has its next frame waiting (``"processes"``: copilot.measure_workers, arrays in shared memory); frames
leave it in arrival order (sequence numbers + a reorder buffer), so the per-stream state in the follow lane
(series, shift window: copilot.accumulator) sees every stream's frames in order. Every stage's time lands in the
result's ``timings_ms`` under the stage's name. ``stop()`` (SIGINT/SIGTERM) stops the source, lets every frame
already accepted pass through all lanes, then returns.
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
from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.series import SeriesTracker
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.errors import UnreadableFrame
from copilot.frame import Frame
from copilot.inference.segmentation import Backend, Segmentation
from copilot.readers import read_frame
from copilot.readers.base import path_text
from copilot.readers.limits import InputLimits
from copilot.reliability.score import Assessor, VerdictThresholds
from copilot.reliability.types import FrameReliability
from copilot.result import Outcome, Result, build_result
from copilot.sources.base import Arrival
from copilot.store import file_fingerprint

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class Measured:
    """A frame measured and its own reliability assessed; no per-stream state applied yet."""

    measurements: FrameMeasurements
    reliability: FrameReliability


@dataclass
class Job:
    """The envelope that travels between lanes: the arrival, its sequence number, timings, the current payload.

    ``payload`` starts as the arrival and becomes each stage's output; it is None once the frame was skipped or
    failed, and the envelope still travels on, so the reorder buffers know that sequence number is done.
    """

    arrival: Arrival
    seq: int
    fingerprint: str | None = None
    payload: Any = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    queued_at: float = field(default_factory=time.perf_counter)  # when it entered its current queue


@dataclass
class PipelineStats:
    received: int = 0
    processed: int = 0
    skipped: int = 0
    quarantined: int = 0
    failed: int = 0
    duplicates: int = 0  # the same frame again (e.g. a socket frame id resent): not journaled, published, exported twice
    last_error: str | None = None


class Skip(Exception):
    """A stage's way of saying "nothing to do for this frame" (already done, vanished, quarantined)."""


# -- stages -------------------------------------------------------------------------------------------------------
class ReadStage:
    """Arrival → Frame: fingerprint, skip what the store has already done, read, quarantine what cannot be read."""

    name, input, output = "read", Arrival, Frame

    def __init__(self, pipeline: "Pipeline"):
        self.p = pipeline

    def __call__(self, arrival: Arrival, job: Job) -> Frame:
        if arrival.frame is not None:
            if self.p.store is not None and self.p.store.is_done(arrival.origin):
                self.p._count("duplicates")
                raise Skip
            return arrival.frame
        path = arrival.path
        try:
            job.fingerprint = file_fingerprint(path)
        except FileNotFoundError:
            log.warning("%s vanished before it could be read", arrival.origin)
            raise Skip from None
        if self.p.store is not None and self.p.store.is_done(path_text(path), job.fingerprint):
            self.p._count("skipped")
            raise Skip
        if self.p.inflight is not None:
            self.p.inflight.begin(path_text(path), job.fingerprint, "read")
        try:
            return read_frame(path, stream=self.p.stream, limits=self.p.limits)
        except UnreadableFrame as exc:
            self.p._quarantine(job, exc.reason)
            raise Skip from None


class InferStage:
    """Frame → Segmentation on the backend (one thread: backends hold sessions and device memory)."""

    name, input, output = "infer", Frame, Segmentation

    def __init__(self, backend: Backend, watch=None, on_swap: Callable[[Backend], None] | None = None):
        self.backend = backend
        self.watch = watch  # copilot.adapt.hotswap.ModelWatch: a promoted model is loaded between frames
        self.on_swap = on_swap

    def __call__(self, frame: Frame, job: Job) -> Segmentation:
        if self.watch is not None and (new := self.watch.poll()) is not None:
            old, self.backend = self.backend, new
            if self.on_swap is not None:
                self.on_swap(new)
            old.close()
        return self.backend.segment(frame)


class AnalyzeStage:
    """Segmentation → FrameMeasurements (particles or phases)."""

    name, input, output = "analyze", Segmentation, FrameMeasurements

    def __init__(self, settings: AnalysisSettings, eds=None):
        self.settings = settings
        self.eds = eds  # EdsSettings: inclusions from the EDS spectrum image of .bcf/.emd frames

    def __call__(self, seg: Segmentation, job: Job) -> FrameMeasurements:
        fm = measure(seg, self.settings)
        if self.eds is not None and seg.frame.origin:
            from dataclasses import replace

            from copilot.eds.frame_eds import frame_inclusions

            fm = replace(fm, inclusions=frame_inclusions(seg.frame.origin, self.eds))
        return fm


class AssessStage:
    """FrameMeasurements → Measured: the frame's own reliability (features, quality, predicted F1, shift score)."""

    name, input, output = "assess", FrameMeasurements, Measured

    def __init__(self, assessor: Assessor):
        self.assessor = assessor

    def __call__(self, fm: FrameMeasurements, job: Job) -> Measured:
        return Measured(fm, self.assessor.frame(fm))


class FollowStage:
    """Measured → Outcome: per-stream state, in frame order (series trends, shift window) and the verdict."""

    name, input, output = "follow", Measured, Outcome

    def __init__(self, series: SeriesTracker, assessor: Assessor,
                 on_fail: Callable[[Frame], None] | None = None):
        self.series = series
        self.assessor = assessor
        self.on_fail = on_fail  # a failed frame must not set its stream's next scale choice

    def __call__(self, m: Measured, job: Job) -> Outcome:
        fm = m.measurements
        reliability, verdict = self.assessor.follow(fm, m.reliability)
        if verdict.level == "fail" and self.on_fail is not None:
            self.on_fail(fm.segmentation.frame)
        series = self.series.update(fm, verdict.level)  # FAIL frames are counted but left out of the series
        return Outcome(fm, reliability, verdict, series)

    def rebuild(self, stream: str, documents: list[dict]) -> None:
        """Restore the stream's state after a restart from its recent result documents (oldest first)."""
        for acc in (self.series, self.assessor.window):
            if hasattr(acc, "rebuild"):
                acc.rebuild(stream, documents)


class SinkStage:
    """Outcome → Result: the document, journaled in the store, then handed to every sink (publish, exports)."""

    name, input, output = "sink", Outcome, Result

    def __init__(self, pipeline: "Pipeline"):
        self.p = pipeline

    def __call__(self, outcome: Outcome, job: Job) -> Result:
        timings = dict(job.timings_ms)
        # from the moment the input was complete (file written, message received), queues and source waits included
        timings["end_to_end"] = (time.time() - (job.arrival.completed_at or job.arrival.arrived_at)) * 1e3
        result = build_result(outcome, timings, send_labels=self.p.send_labels)
        result.arrived_at = job.arrival.arrived_at
        if self.p.store is not None and self.p.store.journal(result.doc, job.fingerprint) is None:
            self.p._count("duplicates")  # journal first (write-ahead): it gives the document its seq
            self.p._end_inflight(job)
            return result
        for sink in self.p.sinks:
            try:
                sink(result)
            except Exception:
                log.exception("result sink %r failed for %s", sink, result.doc.frame_id)
        self.p._count("processed")
        self.p._end_inflight(job)
        return result


STAGES = (ReadStage, InferStage, AnalyzeStage, AssessStage, FollowStage, SinkStage)
for _a, _b in zip(STAGES, STAGES[1:]):
    if _a.output is not _b.input:
        raise TypeError(f"{_a.name} gives {_a.output.__name__}, {_b.name} takes {_b.input.__name__}")


@dataclass(frozen=True)
class Lane:
    """Stages run one after another on the lane's thread(s); ``workers`` > 1 runs frames side by side."""

    name: str
    stages: tuple
    workers: int = 1


class _Reorder:
    """Releases jobs to ``outbox`` in sequence order, whatever order the lane's workers finish them in."""

    def __init__(self, outbox: queue.Queue | None, first: int = 0):
        self.outbox = outbox
        self.next = first
        self.held: dict[int, Job] = {}
        self.lock = threading.Lock()

    def put(self, job: Job) -> None:
        with self.lock:
            self.held[job.seq] = job
            while self.next in self.held:
                ready = self.held.pop(self.next)
                self.next += 1
                ready.queued_at = time.perf_counter()
                if self.outbox is not None:
                    self.outbox.put(ready)


# -- the pipeline -------------------------------------------------------------------------------------------------
class Pipeline:
    """Runs frames from a source (or from ``submit``) through the stages of ``STAGES``.

    ``sinks`` receive every Result on the sink lane (store, publisher, exporters); ``store`` (optional) makes a
    frame already recorded with the same fingerprint a no-op and records quarantines and failures. ``workers``:
    threads of the measure lane.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        stream: str = "default",
        store=None,
        sinks: list[Callable[[Result], None]] | None = None,
        quarantine_dir: Path | None = None,
        quarantine_mode: str = "record",
        analysis: AnalysisSettings | None = None,
        eds=None,
        series: SeriesSettings | None = None,
        thresholds: VerdictThresholds | None = None,
        send_labels: bool = True,
        queue_size: int = 4,
        workers: int = 1,
        measure_mode: str = "threads",
        limits: InputLimits | None = None,
        watch_root: Path | None = None,
        inflight=None,
        stuck_after_s: float = 600.0,
        model_watch=None,
    ):
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {workers}")
        if measure_mode not in ("threads", "processes"):
            raise ValueError(f"measure_mode must be 'threads' or 'processes', got {measure_mode!r}")
        self.backend = backend
        self.stream = stream
        self.store = store
        self.sinks = list(sinks or [])
        self.quarantine_dir = quarantine_dir
        self.quarantine_mode = quarantine_mode
        self.analysis = analysis or AnalysisSettings()
        self.eds = eds
        self.series = SeriesTracker(series, self.analysis)
        self.assessor = Assessor(backend.card, backend.folder, thresholds)
        self.send_labels = send_labels
        self.limits = limits or InputLimits()
        self.watch_root = watch_root  # quarantine copies only from inside this tree
        self.inflight = inflight  # copilot.inflight.InflightLog: inputs in flight survive a crash of the process
        self.stuck_after_s = stuck_after_s
        self._abandoned = threading.Event()
        self._busy: dict[str, tuple[float, str, str]] = {}  # thread -> (monotonic start, origin, stage) while busy
        self.stats = PipelineStats()
        measure = self._measure_stages(measure_mode, workers, thresholds)
        self.lanes = (
            Lane("read", (ReadStage(self),)),
            Lane("infer", (InferStage(backend, model_watch, self._swapped),)),
            Lane("measure", measure, getattr(measure[0], "threads", workers)),
            Lane("follow", (FollowStage(self.series, self.assessor, self._verdict_failed),)),
            Lane("sink", (SinkStage(self),)),
        )
        self._lock = threading.Lock()  # stats
        self._submit_lock = threading.Lock()
        self._seq = 0
        self._queues = [queue.Queue(maxsize=max(queue_size, workers + 1)) for _ in self.lanes]
        self._threads: list[threading.Thread] = []
        self._source = None
        self._started = False

    def _measure_stages(self, mode: str, workers: int, thresholds: VerdictThresholds | None) -> tuple:
        local = (AnalyzeStage(self.analysis, self.eds), AssessStage(self.assessor))
        if mode == "threads" or self.eds is not None:  # EDS cubes are read from the frame's file: on the thread
            return local
        from copilot.measure_workers import MeasureInProcesses

        return (MeasureInProcesses(self.backend, self.analysis, self.assessor.thresholds, workers, local),)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, source=None) -> "Pipeline":
        if self.store is not None:  # per-stream state continues where the store left off
            depth = max(self.series.settings.window_frames, self.assessor.thresholds.shift_window)
            self.rebuild_state({s: self.store.recent(s, depth) for s in self.store.last_seqs()})
        self._seq = 0  # every lane's reorder buffer starts here
        self._threads = []
        for i, lane in enumerate(self.lanes):
            outbox = self._queues[i + 1] if i + 1 < len(self._queues) else None
            reorder = _Reorder(outbox)
            alive = [lane.workers]
            for w in range(lane.workers):
                name = lane.name if lane.workers == 1 else f"{lane.name}-{w}"
                t = threading.Thread(target=self._loop, args=(lane, self._queues[i], reorder, alive), name=name,
                                     daemon=True)
                t.start()
                self._threads.append(t)
        self._started = True
        if source is not None:
            self._source = source
            source.start(self.submit)
        return self

    def _verdict_failed(self, frame: Frame) -> None:
        """The stream's next frame does not start its scale choice from this one's particles. A backlog's next
        frame may already be segmented; the one after it is not."""
        forget = getattr(self.backend, "forget_scale", None)
        if forget is not None:
            forget(frame.stream, frame.frame_id)

    def _swapped(self, backend: Backend) -> None:
        """A hot swap (between frames): the new model's reliability (regressor, shift reference, windows)."""
        self.backend = backend
        assessor = Assessor(backend.card, backend.folder, self.assessor.thresholds)
        for lane in self.lanes:
            for stage in lane.stages:
                if isinstance(stage, (AssessStage, FollowStage)):
                    stage.assessor = assessor
                elif hasattr(stage, "use_backend"):  # measure worker processes: the new card from the next frame
                    stage.use_backend(backend)
                    stage.local[1].assessor = assessor
        self.assessor = assessor

    def rebuild_state(self, recent: dict[str, list[dict]]) -> None:
        """Per-stream state (series, shift window: Accumulators) from the store's recent documents after a restart
        (``{stream: [document dicts, oldest first]}``)."""
        card = self.backend.card  # another model's embeddings and sizes would not compare
        follow = next(s for lane in self.lanes for s in lane.stages if isinstance(s, FollowStage))
        for stream, docs in recent.items():
            docs = [d for d in docs if (d.get("model") or {}).get("name") == card.name
                    and (d.get("model") or {}).get("version") == card.version]
            if docs:
                follow.rebuild(stream, docs)

    def submit(self, arrival: Arrival) -> None:
        """Hand the pipeline one arrival; blocks while the first queue is full (backpressure), except once a stop
        gave up on a dead or stuck stage (the arrival is then left for the next start, which finds it unrecorded)."""
        with self._submit_lock:  # held while blocked on a full queue: the read lane sees sequence order
            seq = self._seq
            self._seq += 1
            self._count("received")
            job = Job(arrival, seq, payload=arrival)
            while not self._abandoned.is_set():
                try:
                    self._queues[0].put(job, timeout=0.5)
                    return
                except queue.Full:
                    continue

    def stop(self, timeout: float | None = None) -> None:
        """Stop the source, drain every frame already accepted, join the lane threads.

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
        for lane in self.lanes:
            for stage in lane.stages:
                if hasattr(stage, "close"):
                    stage.close()  # worker processes of the measure lane

    def healthy(self) -> bool:
        """Every lane thread is alive and none has been stuck on one input for ``stuck_after_s`` (the systemd
        watchdog is fed only while this holds)."""
        return self._started and not self.problems()

    def problems(self) -> list[str]:
        """Why the pipeline is unhealthy: dead lane threads, and stages stuck on one input (empty when healthy)."""
        out = [f"stage thread {t.name} is dead" for t in self._threads if not t.is_alive()]
        now = time.monotonic()
        for since, origin, stage in list(self._busy.values()):
            if now - since > self.stuck_after_s:
                out.append(f"stage {stage} stuck for {now - since:.0f} s on {origin}")
        return out

    def queue_depths(self) -> list[int]:
        return [q.qsize() for q in self._queues]

    def _loop(self, lane: Lane, inbox: queue.Queue, reorder: _Reorder, alive: list[int]) -> None:
        while True:
            job = inbox.get()
            if job is _STOP:
                with reorder.lock:
                    alive[0] -= 1
                    last = alive[0] == 0
                if not last:
                    inbox.put(_STOP)  # for the lane's other workers
                elif reorder.outbox is not None:
                    reorder.outbox.put(_STOP)
                return
            job.timings_ms["queue_wait"] = job.timings_ms.get("queue_wait", 0.0) + (time.perf_counter() - job.queued_at) * 1e3
            self._run_lane(lane, job)
            reorder.put(job)

    def _run_lane(self, lane: Lane, job: Job) -> None:
        thread = threading.current_thread().name
        for stage in lane.stages:
            if job.payload is None:  # skipped or failed upstream: the envelope only keeps the sequence
                return
            t0 = time.perf_counter()
            self._busy[thread] = (time.monotonic(), job.arrival.origin, stage.name)
            self._mark_inflight(job, stage.name)
            try:
                job.payload = stage(job.payload, job)
            except Skip:
                job.payload = None
                return
            except UnreadableFrame as exc:  # refused by a later bound (resampling, working grid): a reason, no trace
                job.payload = None
                self._quarantine(job, exc.reason)
                return
            except (Exception, SystemExit) as exc:  # one bad input must never stop a stage
                log.error("stage %s failed on %s: %s: %s", stage.name, job.arrival.origin, type(exc).__name__, exc,
                          exc_info=not isinstance(exc, (MemoryError, RecursionError)))
                job.payload = None
                self._record_failure(job, "failed", f"{stage.name}: {type(exc).__name__}: {exc}")
                return
            finally:
                self._busy.pop(thread, None)
            job.timings_ms[stage.name] = (time.perf_counter() - t0) * 1e3
        if lane.name != "sink" and job.payload is not None:
            self._mark_inflight(job, "")  # waiting in the next queue: not to blame if the process dies now

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    # -- failures --------------------------------------------------------------------------------------------
    def _quarantine(self, job: Job, reason: str) -> None:
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

    def _record_failure(self, job: Job, status: str, reason: str) -> None:
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

    def _mark_inflight(self, job: Job, stage: str) -> None:
        if self.inflight is not None and job.arrival.path is not None and job.fingerprint is not None:
            try:
                self.inflight.stage(path_text(job.arrival.path), job.fingerprint, stage)
            except Exception:  # bookkeeping must never take a stage thread with it
                log.exception("could not note %s in the in-flight log", job.arrival.origin)

    def _end_inflight(self, job: Job) -> None:
        if self.inflight is not None and job.arrival.path is not None:
            self.inflight.end(path_text(job.arrival.path), job.fingerprint)
