"""The same socket frame id sent twice: one store row, one publication, one export line (it used to be two)."""

from __future__ import annotations

from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.pipeline import Pipeline
from copilot.sources.base import Arrival
from copilot.store import ResultStore
from tests.conftest import disc_image


def test_a_frame_sent_twice_is_processed_once(tmp_path, threshold_model_dir):
    store = ResultStore(tmp_path / "r.sqlite")
    got = []
    pipeline = Pipeline(OrtBackend.from_name(threshold_model_dir), store=store, sinks=[got.append]).start()
    frame = Frame(disc_image((128, 128), [(64, 64)], 10), nm_per_px=0.5, stream="s", frame_id="a",
                  origin="tcp://127.0.0.1:5557/s/a")
    for _ in range(2):
        pipeline.submit(Arrival(origin=frame.origin, frame=frame))
    pipeline.submit(Arrival(origin=frame.origin, frame=frame))
    pipeline.stop()
    assert [r.doc.seq for r in got] == [1]
    assert store.count() == 1 and pipeline.stats.duplicates == 2 and pipeline.stats.processed == 1
    store.close()
