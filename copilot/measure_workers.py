"""The measure lane in worker processes (``[pipeline] measure_mode = "processes"``).

Analysis and the frame's own reliability are numpy/scipy/scikit-image code that holds the GIL for a good part of
its time, so threads share one core for it; processes do not. Each measure-lane thread owns one worker process
(``python -m copilot.measure_workers``), started on first use and again after a crash: it sends the Segmentation
(arrays in shared memory, the rest as JSON: ``copilot.handoff``) over the worker's stdin, the worker runs
``measure`` and ``Assessor.frame`` exactly as the threads would, and answers with the measurements and reliability
the same way. Frames still leave the lane in arrival order (the pipeline's reorder buffer), and per-stream state
stays in the follow lane of the main process. A frame that cannot be handed over is measured on the thread.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
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
    """The worker process ended or answered nonsense; the frame fails, the next one gets a fresh worker."""


class MeasureProcess:
    """One worker process and its pipes."""

    def __init__(self, setup: dict):
        self.proc = subprocess.Popen([sys.executable, "-m", "copilot.measure_workers"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=_child_env())
        self.setup = setup
        self.requests = Channel()  # segmentations to the worker (its block reused frame after frame)
        self.answers = Reader()  # the worker's answers, from its own block
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

    def measure(self, seg: Segmentation) -> tuple[dict, object]:
        """The worker's answer for ``seg`` and the body it describes (None for an error)."""
        self._send({"segmentation": self.requests.pack(seg)})
        answer = self._receive()
        return answer, (self.answers.unpack(answer["result"]) if "result" in answer else None)

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
        self.answers.close()
        self.requests.close()


def _child_env() -> dict[str, str]:
    """The worker imports this same copilot (a source checkout on sys.path included)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class MeasureInProcesses:
    """Segmentation → Measured (analysis + the frame's own reliability) in a worker process."""

    name, input, output = "measure", Segmentation, "Measured"

    def __init__(self, backend, analysis: AnalysisSettings, thresholds: VerdictThresholds, workers: int, local):
        """``local``: (analyze, assess) stages to fall back on for a frame that cannot be handed over."""
        self.analysis, self.thresholds = analysis, thresholds
        self.local = local
        self._idle: queue.Queue = queue.Queue()
        self._all: list[MeasureProcess] = []
        self.use_backend(backend)
        for _ in range(workers):
            self._idle.put(None)  # started on first use

    def use_backend(self, backend) -> None:
        """Measure with ``backend``'s card (its regressor and shift reference) from the next frame on: workers
        started for an earlier one are replaced as they come up (a model swapped between frames)."""
        self.setup = {"card": backend.card.model_dump_json(), "folder": str(backend.folder) if backend.folder else None,
                      "analysis": self.analysis.model_dump(mode="json"),
                      "thresholds": self.thresholds.model_dump(mode="json")}

    def __call__(self, seg: Segmentation, job):
        from copilot.pipeline import Measured

        proc = self._idle.get()
        try:
            if proc is not None and (proc.setup is not self.setup or not proc.alive()):
                self._retire(proc)
                proc = None
            if proc is None:
                proc = MeasureProcess(self.setup)
                self._all.append(proc)
            answer, body = proc.measure(seg)
        except HandoffError as exc:
            log.warning("measuring %s on the thread: %s", job.arrival.origin, exc)
            analyze, assess = self.local
            return assess(analyze(seg, job), job)
        except WorkerDied:
            if proc is not None:
                self._retire(proc)
            proc = None
            raise
        finally:
            self._idle.put(proc)
        if "error" in answer:
            if answer.get("unreadable"):
                raise UnreadableFrame(job.arrival.origin, answer["error"])
            raise RuntimeError(f"in the measure worker: {answer['error']}")
        job.timings_ms.update(answer["timings_ms"])
        measured = body["measurements"]
        if isinstance(measured.get("refined"), PackedOutlines):
            measured["refined"] = measured["refined"].unpacked()
        fm = FrameMeasurements(segmentation=seg, **measured)  # seg.maps: computed here only if needed
        return Measured(fm, body["reliability"])

    def _retire(self, proc: MeasureProcess) -> None:
        proc.close()
        if proc in self._all:
            self._all.remove(proc)

    def close(self) -> None:
        for proc in list(self._all):
            proc.close()
        self._all.clear()


def serve(inbox, outbox) -> None:
    """The worker's loop: a setup message, then one answer per segmentation, until end of input."""
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
    requests, answers = Reader(), Channel()
    try:
        for line in inbox:
            seg = requests.unpack(loads(line)["segmentation"], copy=False)  # views, until the next request
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
                header = answers.pack({"measurements": measured, "reliability": reliability})
            except UnreadableFrame as exc:
                send({"error": exc.reason, "unreadable": True})
                continue
            except Exception as exc:  # the frame fails, the worker goes on
                send({"error": f"{type(exc).__name__}: {exc}"})
                continue
            finally:
                seg = fm = reliability = None
            send({"result": header, "timings_ms": {"analyze": (t1 - t0) * 1e3, "assess": (t2 - t1) * 1e3}})
    finally:
        answers.close()
        requests.close()


def main() -> int:
    outbox = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints of libraries go to stderr, not the protocol
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="measure worker: %(levelname)s %(message)s")
    serve(sys.stdin.buffer, outbox)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
