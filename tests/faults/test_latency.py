"""Honest latency: end_to_end counts from the moment a file was complete, so a backlog shows; queue_wait says how
much of it was spent waiting between stages."""

from __future__ import annotations

import time

import tifffile

from copilot.inference.ort_backend import OrtBackend
from copilot.pipeline import Pipeline
from copilot.sources.directory import DirectorySource
from tests.conftest import disc_image

SINK_S = 0.4


def test_end_to_end_includes_the_backlog(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    n = 12  # more than the pipeline holds (4 queues of 1 + 4 stages): the source itself has to wait
    for i in range(n):  # all complete at once, before anything is processed
        tifffile.imwrite(acq / f"f{i}.tif", disc_image((128, 128), [(64, 64)], 10), imagej=True,
                         resolution=(2.0, 2.0), metadata={"unit": "nm"})
    written = time.time()
    docs = []

    def slow_sink(result):  # a consumer slower than the frames: a backlog builds up behind it
        time.sleep(SINK_S)
        docs.append(result.doc)

    pipeline = Pipeline(OrtBackend.from_name(threshold_model_dir), sinks=[slow_sink], queue_size=1)
    pipeline.start(DirectorySource(acq, settle_s=0.05))
    deadline = time.time() + 120
    while len(docs) < n and time.time() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    assert len(docs) == n
    last = max(docs, key=lambda d: d.timings_ms["end_to_end"])
    # the last frame waited behind n-1 slow sinks after its file was complete, and the document says so
    assert last.timings_ms["end_to_end"] >= (n - 1) * SINK_S * 1e3
    assert last.timings_ms["queue_wait"] >= SINK_S * 1e3  # part of it spent queued between stages
    assert all(d.timings_ms["queue_wait"] <= d.timings_ms["end_to_end"] for d in docs)
