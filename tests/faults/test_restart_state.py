"""State survives restarts: series (trends, cumulative PSD) and the shift window rebuilt from the store continue
exactly where an uninterrupted daemon would be."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.pipeline import Pipeline
from copilot.sources.base import Arrival
from copilot.store import ResultStore
from tests.conftest import disc_image

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def frames(n: int) -> list[Frame]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):  # discs grow by one pixel of radius per frame, one frame a minute
        centres = rng.integers(30, 226, size=(8, 2))
        out.append(Frame(disc_image((256, 256), centres, 8 + i), nm_per_px=0.5, stream="s", frame_id=f"f{i}",
                         origin=f"mem://s/f{i}", acquired_at=T0 + timedelta(minutes=i)))
    return out


def run(pipeline: Pipeline, batch: list[Frame]) -> list:
    got = []
    pipeline.sinks.append(got.append)
    pipeline.start()
    for f in batch:
        pipeline.submit(Arrival(origin=f.origin, frame=f))
    pipeline.stop()
    return [r.doc for r in got]


@pytest.fixture
def backend(threshold_model_dir):
    card = json.loads((threshold_model_dir / "card.json").read_text())
    rng = np.random.default_rng(0)
    card["embedding_reference"] = {"mean": [0.1, 0.5], "std": [0.05, 0.2],
                                   "samples": rng.normal([0.1, 0.5], [0.05, 0.2], size=(40, 2)).tolist()}
    (threshold_model_dir / "card.json").write_text(json.dumps(card))
    return OrtBackend.from_name(threshold_model_dir)


def test_series_and_shift_window_continue_across_a_restart(tmp_path, backend):
    batch = frames(8)
    straight = run(Pipeline(backend, store=ResultStore(tmp_path / "a.sqlite")), batch)

    store = ResultStore(tmp_path / "b.sqlite")
    run(Pipeline(backend, store=store), batch[:5])
    restarted = Pipeline(backend, store=store)  # a new daemon: empty state until rebuilt
    restarted.rebuild_state({s: store.recent(s, 20) for s in store.last_seqs()})
    resumed = run(restarted, batch[5:])

    for a, b in zip(straight[5:], resumed):
        assert b.seq == a.seq  # seq continues: 6, 7, 8
        assert b.series.frames == a.series.frames
        assert b.series.cumulative_psd == a.series.cumulative_psd
        assert [t.slope for t in b.series.trends] == pytest.approx([t.slope for t in a.series.trends])
        assert [t.trending for t in b.series.trends] == [t.trending for t in a.series.trends]
        # embeddings travel rounded to 6 decimals
        assert b.reliability.shift_window_mmd2 == pytest.approx(a.reliability.shift_window_mmd2, rel=1e-4)
    assert resumed[0].reliability.shift_window_mmd2 is not None

    fresh = run(Pipeline(backend, store=ResultStore(tmp_path / "c.sqlite")), batch[5:])  # what a restart did before
    assert fresh[0].series.frames == 1 != resumed[0].series.frames
