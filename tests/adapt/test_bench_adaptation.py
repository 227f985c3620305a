"""The adaptation bench's own parts: the second simulator and the true-label scoring (bench/adaptation)."""

from __future__ import annotations

import numpy as np

from bench.adaptation.othersim import other_frame
from bench.adaptation.run import score, table, targets, worse
from copilot.inference.ort_backend import OrtBackend


def test_second_simulator_has_exact_faceted_particles():
    f = other_frame(np.random.default_rng(2), 256, nm_per_px=0.25)
    assert f.image.dtype == np.uint16 and f.instances.shape == (256, 256)
    n = f.instances.max()
    assert n >= 3 and set(np.unique(f.instances)) == set(range(n + 1))
    assert f.inner <= n and (np.isnan(f.d50_nm) or 2.0 < f.d50_nm < 25.0)


def test_score_and_table_on_a_few_frames():
    backend = OrtBackend.from_name("particles-stem")
    ts = targets("particles", "othersim", 2, 256, 1)
    m = score(backend, ts, "othersim")
    assert 0.0 <= m["object_f1"] <= 1.0 and 0.0 <= m["precision"] <= 1.0
    worse_m = dict(m, object_f1=m["object_f1"] - 0.1)
    assert worse("particles", m, worse_m) and not worse("particles", m, m)
    row = {"group": "othersim", "before": m, "methods": {"selftrain": {"after": worse_m, "promote": True,
                                                                        "bad_promotion": True}}}
    md = table("particles", [row])
    assert "| othersim |" in md and "(yes, BAD)" in md


def test_a_stream_keeps_its_imaging_and_is_scored_on_frames_it_did_not_adapt_to():
    from bench.adaptation.run import stream_summary, stream_targets

    adapt, held_out, cond = stream_targets("particles", "dose", 1, 2, 2, 192)
    assert len(adapt) == len(held_out) == 2 and "dose" in cond
    frames = adapt + held_out
    assert len({t.nm_per_px for t in frames}) == 1  # one microscope setting ...
    assert not any(np.array_equal(a.image, b.image) for a in adapt for b in held_out)  # ... new specimen each frame
    other, _, cond2 = stream_targets("particles", "dose", 2, 1, 0, 192)
    assert cond2 != cond
    m = {"object_f1": 0.5}
    rows = [{"group": "dose", "stream": k, "conditions": cond, "before": m,
             "methods": {"selftrain": {"after": {"object_f1": 0.7}, "effective": m, "promote": False,
                                       "bad_promotion": False}}} for k in range(2)]
    assert "| dose | 2 | 0.500 | 0.700 / 0.500 |" in stream_summary("particles", rows)
