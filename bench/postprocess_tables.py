"""Per-particle tables and reliability of two source trees on the same network outputs: does a post-processing
change move any number?

    python bench/postprocess_tables.py record rec.npz               # 12 simulated frames through the real engine
    PYTHONPATH=<tree> python bench/postprocess_tables.py dump rec.npz tree.npz   # run in each tree (its cwd)
    python bench/postprocess_tables.py compare before.npz after.npz  # max relative difference per column

The frames span 512² to 2048², 0.2 to 1.0 nm/px (refined grid as fine as the frame or finer) and touching
fractions 0.1 to 0.4. ``dump`` replays the recorded outputs through the pipeline's analyze, assess and follow stages
and keeps every table column, the counts and D50, the reliability features, the predicted F1, the verdict level
and the instance labels (arrays in ``.npz``, no pickle).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields

import numpy as np

CASES = [(512, 0.2, 0.1), (512, 0.5, 0.3), (512, 1.0, 0.3), (768, 0.2, 0.4), (1024, 0.2, 0.1), (1024, 0.2, 0.4),
         (1024, 0.5, 0.3), (1024, 1.0, 0.2), (1536, 0.3, 0.3), (2048, 0.2, 0.1), (2048, 0.2, 0.3), (2048, 0.4, 0.2)]
LEVELS = ("ok", "warn", "fail")


def frames():
    from copilot.frame import Frame
    from copilot.sim import SimParams, simulate_frame

    return [Frame(simulate_frame(SimParams(size_px=s, nm_per_px=nm, area_fraction=0.15, touching_fraction=t),
                                 100 + i).image, nm, stream="tables", frame_id=f"f{i}", origin="sim")
            for i, (s, nm, t) in enumerate(CASES)]


def record(path: str) -> None:
    from copilot.inference.select import load_backend

    real = load_backend("particles-stem", "onnxruntime", 2)
    out = {}
    for f in frames():
        s = real.segment(f)
        out |= {f"{f.frame_id}/p": s.probabilities, f"{f.frame_id}/e": s.embedding,
                f"{f.frame_id}/n": s.network_input, f"{f.frame_id}/s": np.array(s.frame_px_per_px)}
    meta = dict(class_names=list(s.class_names), model=s.model_name, version=s.model_version, task=s.task)
    np.savez(path, meta=np.array(json.dumps(meta)), **out)


def dump(rec_path: str, path: str) -> None:
    from bench.postprocess import ReplayBackend, _stages
    from copilot.inference.segmentation import Segmentation
    from copilot.inference.select import load_backend
    from copilot.pipeline import Job, Pipeline
    from copilot.sources.base import Arrival

    rec = np.load(rec_path)
    meta = json.loads(str(rec["meta"]))
    real = load_backend("particles-stem", "onnxruntime", 1)
    fr = frames()
    segs = {f.frame_id: Segmentation(f, rec[f"{f.frame_id}/p"], rec[f"{f.frame_id}/e"], tuple(meta["class_names"]),
                                     meta["model"], meta["version"], "recorded", float(rec[f"{f.frame_id}/s"]),
                                     meta["task"], rec[f"{f.frame_id}/n"]) for f in fr}
    replay = ReplayBackend(real.card, real.folder, segs)
    stages = [s for s in _stages(Pipeline(replay, stream="tables")) if s.name != "sink"]
    out = {}
    for k, f in enumerate(fr):
        job = Job(Arrival(origin=f.frame_id, frame=f), k)
        job.payload = replay.segment(f)
        for stage in stages:
            job.payload = stage(job.payload, job)
        o = job.payload
        ps = o.measurements.summary.particles
        for c in fields(ps.table):
            if c.name != "nm_per_px":
                out[f"{f.frame_id}/table/{c.name}"] = np.asarray(getattr(ps.table, c.name), float)
        for a in ("count", "count_edge", "count_sized", "d50", "ecd_mean"):
            out[f"{f.frame_id}/stats/{a}"] = np.asarray(np.nan if getattr(ps, a) is None else getattr(ps, a), float)
        for name, v in o.reliability.features.items():
            out[f"{f.frame_id}/features/{name}"] = np.asarray(v, float)
        f1 = o.reliability.predicted_f1
        out[f"{f.frame_id}/verdict/f1"] = np.asarray(np.nan if f1 is None else f1, float)
        out[f"{f.frame_id}/verdict/level"] = np.asarray(LEVELS.index(o.verdict.level), float)
        out[f"{f.frame_id}/instances"] = o.measurements.instances
        print(f.frame_id, f.pixels.shape, len(ps.table), o.verdict.level, flush=True)
    np.savez(path, **out)


def compare(a_path: str, b_path: str) -> float:
    """Prints the largest relative difference per quantity over all frames (instances: fraction of pixels that
    differ); returns the largest of all."""
    a, b = np.load(a_path), np.load(b_path)
    worst: dict[str, float] = {}
    for key in a.files:
        name = key.split("/", 1)[1]
        x, y = a[key], b[key] if key in b.files else None
        if y is None or x.shape != y.shape:
            worst[name] = np.inf
            continue
        if name == "instances":
            d = float(np.mean(x != y)) if x.size else 0.0
        else:
            both = np.isnan(x) & np.isnan(y)
            d = float(np.max(np.where(both, 0.0, np.abs(x - y) / np.maximum(np.abs(x), 1e-12)), initial=0.0))
        worst[name] = max(worst.get(name, 0.0), d)
    for name, d in sorted(worst.items()):
        print(f"{name:40s} {d:.3g}")
    return max(worst.values(), default=0.0)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    sys.path.insert(0, ".")
    {"record": record, "dump": dump, "compare": compare}[cmd](*args)
