"""The measure lane in worker processes: the same documents as on threads, and a dead worker is replaced."""

import threading
import time

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.pipeline import Pipeline
from copilot.sim import SimParams, simulate_frame
from copilot.sources.base import Arrival


def frames(n=4, size=256):
    params = SimParams(size_px=size, nm_per_px=0.25, area_fraction=0.15, touching_fraction=0.2)
    return [Frame(simulate_frame(params, i).image, 0.25, stream="s", frame_id=f"f{i}", origin="sim",
                  meta={"odd": {1, 2}} if i == 1 else {"detector": "HAADF", "tilt_deg": 0.5}) for i in range(n)]


def run(backend, mode, fr, between=None, workers=2):
    results = []
    p = Pipeline(backend, sinks=[results.append], workers=workers, measure_mode=mode).start()
    for i, f in enumerate(fr):
        p.submit(Arrival(origin=f.frame_id, frame=f))
        if between is not None:
            between(p, i, results)
    p.stop()
    return p, results


def comparable(result):
    doc = result.doc.model_dump(mode="json")
    return {k: doc[k] for k in ("frame_id", "measurements", "reliability", "verdict", "series")}


@pytest.fixture
def backend():
    """A fresh backend per test: its per-stream scale prior must not carry over from one run to the next."""
    return OrtBackend.from_name("particles-stem")


def test_processes_give_the_documents_threads_give(backend, caplog):
    fr = frames()  # f1 carries metadata that cannot be handed over (a set): it is measured on the thread
    _, on_threads = run(backend, "threads", fr)
    p, in_processes = run(OrtBackend.from_name("particles-stem"), "processes", fr)
    assert p.stats.processed == len(fr) and p.stats.failed == 0
    assert [comparable(r) for r in in_processes] == [comparable(r) for r in on_threads]
    assert in_processes[0].doc.measurements.particles.count > 5
    assert [r.message for r in caplog.records if "on the thread" in r.message] == [
        "measuring f1 on the thread: set cannot be handed over"]
    assert {"analyze", "assess", "measure"} <= set(in_processes[0].doc.timings_ms)  # the worker's own stage times
    assert np.array_equal(in_processes[0].parts["labels"], on_threads[0].parts["labels"])
    assert np.array_equal(in_processes[0].frame_labels(), on_threads[0].frame_labels())  # the refined outlines


def test_one_worker_process_on_two_threads_gives_the_documents_threads_give(backend):
    fr = [f for i, f in enumerate(frames(7)) if i != 1]  # all handed over (f1 is measured on the thread)
    _, on_threads = run(backend, "threads", fr, workers=1)
    p, in_process = run(OrtBackend.from_name("particles-stem"), "processes", fr, workers=1)
    assert p.lanes[2].workers == 2 and p.lanes[2].stages[0].threads == 2  # two slots of one process
    assert p.stats.failed == 0 and [comparable(r) for r in in_process] == [comparable(r) for r in on_threads]


def both_sent(proc, work, then=None):
    """``work(0)`` and ``work(1)`` on two threads, no answer read before both frames are in ``proc``'s pipe (and
    ``then`` has run); ``proc`` is closed after."""
    try:
        with proc._turn:  # the threads wait for their turn to read under this lock
            threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
            for t in threads:
                t.start()
            while proc._sent < 2:
                time.sleep(0.001)
            if then is not None:
                then()
        for t in threads:
            t.join()
    finally:
        proc.close()


def test_a_worker_holding_two_frames_answers_each_its_own(backend):
    from copilot.analysis import measure
    from copilot.measure_workers import MeasureProcess

    segs = [backend.segment(f) for i, f in enumerate(frames(3)) if i != 1]
    counts = [measure(s).summary.particles.count for s in segs]
    assert counts[0] != counts[1]  # a mix-up would show
    proc = MeasureProcess(Pipeline(backend, measure_mode="processes").lanes[2].stages[0].setup)
    answers = {}
    both_sent(proc, lambda k: answers.__setitem__(k, proc.measure(segs[k], k)))
    assert proc.most_in_flight == 2
    assert [answers[k][1]["measurements"]["summary"].particles.count for k in (0, 1)] == counts


def test_a_killed_worker_is_replaced_and_processing_goes_on(backend):
    fr = frames(3, 128)

    def kill_after_first(pipeline, i, results):
        if i == 0:
            while not results:  # the first frame is done: its worker is up
                import time
                time.sleep(0.05)
            stage = pipeline.lanes[2].stages[0]
            for proc in stage._all:
                proc.proc.kill()
                proc.proc.wait()

    p, results = run(backend, "processes", fr, kill_after_first)
    assert [r.doc.frame_id for r in results] == ["f0", "f1", "f2"] and p.stats.failed == 0


def test_a_worker_killed_mid_frame_fails_only_the_frame_it_was_measuring(backend):
    fr = frames(6, 256)
    killed = []

    def kill_while_busy(pipeline, i, results):
        if i == 2:
            stage = pipeline.lanes[2].stages[0]
            while not any(w._sent > w._received for w in stage._all):  # a frame is in the worker's hands
                time.sleep(0.001)
            for w in stage._all:
                w.proc.kill()
                killed.append(w)

    p, results = run(backend, "processes", fr, kill_while_busy, workers=1)
    done = [r.doc.frame_id for r in results]
    # the frame it was measuring fails (none when it had just answered: the answer was already in the pipe); one
    # waiting in its pipe is measured again by a fresh worker
    assert p.stats.failed <= 1 and p.stats.processed + p.stats.failed == len(fr)
    assert done == sorted(done) and done[-1] == "f5"  # the rest measured, in order, by a fresh worker
    assert len(killed) == 1 and not killed[0].alive() and killed[0].proc.stdin.closed  # retired, pipes closed


def test_of_two_frames_in_a_dead_worker_only_the_one_it_was_measuring_is_its_fault(backend):
    from copilot.measure_workers import MeasureProcess, NotMeasured, WorkerDied

    segs = [backend.segment(f) for i, f in enumerate(frames(3, 512)) if i != 1]  # a while to measure each
    proc = MeasureProcess(Pipeline(backend, measure_mode="processes").lanes[2].stages[0].setup)
    errors = {}

    def measure(k):
        try:
            proc.measure(segs[k], k)
        except WorkerDied as exc:
            errors[k] = exc

    def kill():
        proc.proc.kill()
        proc.proc.wait()

    both_sent(proc, measure, then=kill)  # killed after both frames are sent, before any answer is read
    assert type(errors[0]) is WorkerDied and "exit code" in str(errors[0])  # the one it was measuring: its fault
    assert isinstance(errors[1], NotMeasured) and "before it began this frame" in str(errors[1])


def test_frames_that_find_no_room_in_shared_memory_are_measured_on_the_thread(backend, full_dev_shm, caplog):
    """A full /dev/shm (a container's 64 MiB and big frames): the main process cannot hand the frame over, so the
    lane measures it on its own thread; nothing is lost and the documents are the threads' ones."""
    fr = [f for i, f in enumerate(frames(3)) if i != 1]
    _, on_threads = run(backend, "threads", fr)
    full_dev_shm()  # this process's blocks only: the requests
    p, results = run(OrtBackend.from_name("particles-stem"), "processes", fr)
    assert p.stats.failed == 0 and [comparable(r) for r in results] == [comparable(r) for r in on_threads]
    assert sum("on the thread: no room" in r.message for r in caplog.records) == len(fr)


def test_a_worker_whose_answer_finds_no_room_says_so_and_goes_on(backend, full_dev_shm):
    """The worker's side of a full /dev/shm: it answers with a hand-over error (the lane then measures the frame on
    its thread) instead of dying, and reads the next request."""
    import io

    from copilot.handoff import Channel, dumps, loads
    from copilot.measure_workers import serve

    seg = backend.segment(frames(1)[0])
    setup = Pipeline(backend, measure_mode="processes").lanes[2].stages[0].setup
    request = Channel()
    try:
        header = request.pack(seg)  # with room: the request crosses
        inbox = io.BytesIO(b"".join(dumps(m) + b"\n" for m in (setup, {"segmentation": header, "slot": 0},
                                                                  {"segmentation": header, "slot": 1})))
        outbox = io.BytesIO()
        full_dev_shm()  # …the answers do not
        serve(inbox, outbox)
    finally:
        request.close()
    answers = [loads(line) for line in outbox.getvalue().splitlines()]
    assert answers[0] == {"ready": True} and len(answers) == 3
    assert all(a.get("handoff") and "shm-size" in a["error"] for a in answers[1:])


def test_processes_mode_is_checked():
    with pytest.raises(ValueError, match="measure_mode"):
        Pipeline(OrtBackend.from_name("particles-stem"), measure_mode="fork")


def test_workers_follow_a_model_swapped_between_frames(backend):
    import time

    from copilot.inference.card import ModelCard

    fr = frames(2, 128)
    results = []
    p = Pipeline(backend, sinks=[results.append], workers=1, measure_mode="processes").start()
    p.submit(Arrival(origin="f0", frame=fr[0]))
    while not results:
        time.sleep(0.05)
    stage = p.lanes[2].stages[0]
    first = stage._all[0]
    card = ModelCard.model_validate_json(backend.card.model_dump_json())
    card.version = "swapped"  # what a promoted model's card would say

    class Swapped:
        folder = backend.folder

    Swapped.card = card
    stage.use_backend(Swapped)
    p.submit(Arrival(origin="f1", frame=fr[1]))
    while len(results) < 2:
        time.sleep(0.05)
    workers = list(stage._all)
    p.stop()
    assert p.stats.failed == 0
    assert len(workers) == 1 and workers[0] is not first and not first.alive()  # made way for the new card's
    assert workers[0].setup["card"] != first.setup["card"]
