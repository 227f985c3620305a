"""The measure lane in worker processes: the same documents as on threads, and a dead worker is replaced."""

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


def run(backend, mode, fr, between=None):
    results = []
    p = Pipeline(backend, sinks=[results.append], workers=2, measure_mode=mode).start()
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
