"""The measure lane in worker processes (``[pipeline] measure_mode = "processes"``).

Analysis and the frame's own reliability are numpy/scipy/scikit-image code that holds the GIL for a good part of
its time, so threads share one core for it; processes do not. Each worker process (``python -m
copilot.measure_workers``, started on first use and again after a crash) has ``SLOTS`` request slots, each served by
a measure-lane thread: the thread sends the Segmentation (arrays in its slot's shared memory, the rest as JSON:
``copilot.handoff``) over the worker's stdin, the worker runs ``measure`` and ``Assessor.frame`` exactly as the
threads would, and answers with the measurements and reliability the same way. With two slots a worker always has
its next frame waiting when it finishes one, instead of idling while the main process hands it over. Frames still
leave the lane in arrival order (the pipeline's reorder buffer), and per-stream state stays in the follow lane of
the main process. A frame that cannot be handed over is measured on the thread. When a worker dies, the frame it
was measuring fails with the reason; a frame still waiting in its pipe is measured again by a fresh worker.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from copilot.analysis.geometry import PackedOutlines
from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings
from copilot.errors import UnreadableFrame
from copilot.handoff import Channel, HandoffError, Reader, dumps, loads
from copilot.inference.segmentation import Segmentation
from copilot.reliability.settings import VerdictThresholds

log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """The worker process ended or answered nonsense while it measured the frame: the frame fails (with this reason),
    the next one gets a fresh worker."""


class NotMeasured(WorkerDied):
    """The worker died before it began this frame (the frame was still waiting in its pipe, or could not be sent):
    the frame is innocent and is measured again by a fresh worker."""


SLOTS = 2  # requests in flight per worker process: one measured, the next one waiting


class MeasureProcess:
    """One worker process, its pipes and its ``SLOTS`` request slots (a shared-memory block each way per slot).

    Requests are answered in the order they were sent; a thread reads its answer when its turn comes."""

    def __init__(self, setup: dict):
        self.proc = subprocess.Popen([sys.executable, "-m", "copilot.measure_workers"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=_child_env())
        self.setup = setup
        self.requests = [Channel() for _ in range(SLOTS)]  # segmentations to the worker (each block reused)
        self.answers = [Reader() for _ in range(SLOTS)]  # the worker's answers, from its own blocks
        self.retired = False
        self._users = 0  # slots whose thread holds this process
        self._send_lock = threading.Lock()
        self._turn = threading.Condition()
        self._sent = self._received = 0
        self.most_in_flight = 0  # requests sent and not yet answered, at most (up to SLOTS)
        self._blamed = False  # whether the request it was measuring when it died has been told so
        self._send(setup)
        answer = self._receive()
        if not answer.get("ready"):
            self.close()
            raise WorkerDied(f"measure worker did not start: {answer.get('error', answer)}")

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(dumps(message) + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WorkerDied(f"measure worker gone ({exc})") from None

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.poll()
            raise WorkerDied(f"measure worker ended (exit code {code})")
        return loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def measure(self, seg: Segmentation, slot: int) -> tuple[dict, object]:
        """The worker's answer for ``seg`` sent through ``slot`` and the body it describes (None for an error)."""
        with self._send_lock:
            header = self.requests[slot].pack(seg)
            ticket = self._sent
            try:
                self._send({"segmentation": header, "slot": slot})
            except WorkerDied as exc:
                raise NotMeasured(str(exc)) from None
            self._sent += 1
            self.most_in_flight = max(self.most_in_flight, self._sent - self._received)
        with self._turn:
            self._turn.wait_for(lambda: self._received == ticket)
        died = None
        try:  # read without the lock (the worker may take a while): the next ticket waits for the count anyway
            answer = self._receive()
        except WorkerDied as exc:
            died = exc
        finally:
            with self._turn:
                self._received += 1
                culprit = died is not None and not self._blamed  # the first request left unanswered
                self._blamed = self._blamed or culprit
                self._turn.notify_all()
        if died is not None:
            raise died if culprit else NotMeasured(f"{died}, before it began this frame")
        return answer, (self.answers[slot].unpack(answer["result"]) if "result" in answer else None)

    def hold(self) -> None:
        with self._turn:
            self._users += 1

    def release(self) -> None:
        """A slot's thread is done with this process; the last one out closes a retired process."""
        with self._turn:
            self._users -= 1
            last = self.retired and self._users == 0
        if last:
            self.close()

    def retire(self) -> None:
        """No new requests; closed once no slot's thread holds it (now, when none does)."""
        with self._turn:
            self.retired = True
            idle = self._users == 0
        if idle:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the worker ends at end of input
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except Exception:
                pass
        for block in (*self.answers, *self.requests):
            block.close()


def _child_env() -> dict[str, str]:
    """The worker imports this same copilot (a source checkout on sys.path included), with one BLAS thread: each
    worker is one core's worth of work (see ``copilot.cli``), unless the operator set OPENBLAS_NUM_THREADS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


class MeasureInProcesses:
    """Segmentation → Measured (analysis + the frame's own reliability) in a worker process. Runs on
    ``workers × SLOTS`` threads of the measure lane (``threads``)."""

    name, input, output = "measure", Segmentation, "Measured"

    def __init__(self, backend, analysis: AnalysisSettings, thresholds: VerdictThresholds, workers: int, local):
        """``local``: (analyze, assess) stages to fall back on for a frame that cannot be handed over."""
        self.analysis, self.thresholds = analysis, thresholds
        self.local = local
        self.threads = workers * SLOTS
        self._seats: list[MeasureProcess | None] = [None] * workers  # started on first use
        self._seat_lock = threading.Lock()
        self._idle: queue.Queue = queue.Queue()
        self.use_backend(backend)
        for slot in range(SLOTS):
            for seat in range(workers):
                self._idle.put((seat, slot))

    @property
    def _all(self) -> list[MeasureProcess]:
        """The worker processes now serving requests."""
        return [p for p in self._seats if p is not None]

    def use_backend(self, backend) -> None:
        """Measure with ``backend``'s card (its regressor and shift reference) from the next frame on: workers
        started for an earlier one are replaced as they come up (a model swapped between frames)."""
        self.setup = {"card": backend.card.model_dump_json(), "folder": str(backend.folder) if backend.folder else None,
                      "analysis": self.analysis.model_dump(mode="json"),
                      "thresholds": self.thresholds.model_dump(mode="json")}

    def _process(self, seat: int) -> MeasureProcess:
        """The seat's process, held for one request: (re)started when missing, dead or set up for another card."""
        with self._seat_lock:
            proc = self._seats[seat]
            if proc is not None and (proc.setup is not self.setup or not proc.alive()):
                self._seats[seat] = None
                proc.retire()
                proc = None
            if proc is None:
                proc = self._seats[seat] = MeasureProcess(self.setup)
            proc.hold()
            return proc

    def __call__(self, seg: Segmentation, job):
        from copilot.pipeline import Measured

        try:
            try:
                answer, body = self._in_worker(seg)
            except NotMeasured as exc:
                log.warning("measuring %s on a fresh worker: %s", job.arrival.origin, exc)
                answer, body = self._in_worker(seg)
            if answer.get("handoff"):
                raise HandoffError(answer["error"])
        except HandoffError as exc:
            log.warning("measuring %s on the thread: %s", job.arrival.origin, exc)
            analyze, assess = self.local
            return assess(analyze(seg, job), job)
        if "error" in answer:
            if answer.get("unreadable"):
                raise UnreadableFrame(job.arrival.origin, answer["error"])
            raise RuntimeError(f"in the measure worker: {answer['error']}")
        job.timings_ms.update(answer["timings_ms"])
        measured = body["measurements"]  # the outlines stay packed: only painting masks unpacks them
        fm = FrameMeasurements(segmentation=seg, **measured)  # seg.maps: computed here only if needed
        return Measured(fm, body["reliability"])

    def _in_worker(self, seg: Segmentation) -> tuple[dict, object]:
        """The answer for ``seg`` from the process of a free slot (``MeasureProcess.measure``)."""
        seat, slot = self._idle.get()
        try:
            proc = self._process(seat)
            try:
                return proc.measure(seg, slot)
            except WorkerDied:
                self._drop(seat, proc)
                raise
            finally:
                proc.release()
        finally:
            self._idle.put((seat, slot))

    def _drop(self, seat: int, proc: MeasureProcess) -> None:
        with self._seat_lock:
            if self._seats[seat] is proc:
                self._seats[seat] = None
        proc.retire()

    def close(self) -> None:
        with self._seat_lock:
            procs, self._seats = self._all, [None] * len(self._seats)
        for proc in procs:
            proc.close()


def serve(inbox, outbox) -> None:
    """The worker's loop: a setup message, then one answer per segmentation (in the order they came, each through
    the blocks of the slot it came in), until end of input."""
    from dataclasses import fields

    from copilot.inference.card import ModelCard
    from copilot.pipeline import AnalyzeStage, AssessStage
    from copilot.reliability.score import Assessor

    def send(message: dict) -> None:
        outbox.write(dumps(message) + b"\n")
        outbox.flush()

    setup = loads(inbox.readline())
    try:
        card = ModelCard.model_validate_json(setup["card"])
        assessor = Assessor(card, Path(setup["folder"]) if setup["folder"] else None,
                            VerdictThresholds.model_validate(setup["thresholds"]))
        analyze = AnalyzeStage(AnalysisSettings.model_validate(setup["analysis"]))  # the threads' own stages
        assess = AssessStage(assessor)
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True})
    requests, answers = [Reader() for _ in range(SLOTS)], [Channel() for _ in range(SLOTS)]
    try:
        for line in inbox:
            message = loads(line)
            slot = message["slot"]
            seg = requests[slot].unpack(message["segmentation"], copy=False)  # views, until the slot's next request
            try:
                t0 = time.perf_counter()
                fm = analyze(seg, None)
                t1 = time.perf_counter()
                reliability = assess(fm, None).reliability
                t2 = time.perf_counter()
                # everything measured but the segmentation, which the pipeline has already; the outlines packed
                measured = {f.name: getattr(fm, f.name) for f in fields(fm) if f.name != "segmentation"}
                if fm.refined is not None:
                    measured["refined"] = PackedOutlines.of(fm.refined)
                header = answers[slot].pack({"measurements": measured, "reliability": reliability})
            except UnreadableFrame as exc:
                send({"error": exc.reason, "unreadable": True})
                continue
            except HandoffError as exc:  # the answer cannot cross (no room in /dev/shm): the thread measures it
                send({"error": str(exc), "handoff": True})
                continue
            except Exception as exc:  # the frame fails, the worker goes on
                send({"error": f"{type(exc).__name__}: {exc}"})
                continue
            finally:
                seg = fm = reliability = None
            send({"result": header, "timings_ms": {"analyze": (t1 - t0) * 1e3, "assess": (t2 - t1) * 1e3}})
    finally:
        for block in (*answers, *requests):
            block.close()


def main() -> int:
    outbox = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints of libraries go to stderr, not the protocol
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="measure worker: %(levelname)s %(message)s")
    serve(sys.stdin.buffer, outbox)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
