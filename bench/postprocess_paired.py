"""Post-processing cost of two source trees in ONE process: the other tree's package imported as ``copilot_before``
beside this tree's ``copilot``, both fed the same recorded network outputs, their stages (analyze, assess, follow,
sink) alternated frame by frame.

    python bench/postprocess_paired.py --before /path/to/old/checkout [--sizes 512,1024,2048] [--rounds 30]

On a shared virtual machine the speed changes by tens of percent from one minute to the next, and a tree compared
with itself in alternating processes (``postprocess_ab.py``) already differs by ±13 % at 2048²; frame-by-frame
alternation inside one process puts both trees in the same spell. Reports, per frame size, each stage's median and
10th-percentile thread-CPU ms, the median of the per-round after ÷ before ratios of the total, and whether the two
trees' documents (measurements, reliability) came out identical. The other tree is copied to a scratch folder with
its ``copilot`` imports renamed; its numba kernels compile there once, before the timed rounds. Both trees read this
checkout's models (``COPILOT_ENGINES``), so only the code differs. A tree compared with itself: 0.997× at 1024².
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.postprocess import ReplayBackend, _stages, default_nm_per_px, simulated_frames  # noqa: E402

STAGES = ("analyze", "assess", "follow", "sink")
_PACKAGE = re.compile(r"\bcopilot\b")  # imports, attribute access and module names in strings alike


def renamed_copy(tree: Path, scratch: Path) -> None:
    """``tree``'s ``copilot`` package as ``scratch/copilot_before``: every ``copilot`` word of its sources renamed
    (imports, ``copilot.x.y`` attribute access, module names in strings; prose in docstrings too, harmlessly)."""
    dest = scratch / "copilot_before"
    shutil.copytree(tree / "copilot", dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in dest.rglob("*.py"):
        path.write_text(_PACKAGE.sub("copilot_before", path.read_text()))


def _convert(obj, cls, **override):
    """A dataclass instance as the other tree's ``cls`` (the fields ``cls`` takes; ``override``: some replaced)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: getattr(obj, k) for k in names if hasattr(obj, k)} | override)


def _run(pkg, stages, seg, k: int):
    job = pkg["pipeline"].Job(pkg["base"].Arrival(origin=seg.frame.frame_id, frame=seg.frame), k)
    job.payload = seg
    ms = {}
    for stage in stages:
        c = time.thread_time()
        job.payload = stage(job.payload, job)
        ms[stage.name] = (time.thread_time() - c) * 1e3
    ms["total"] = sum(ms.values())
    return ms, job.payload


def measure(size: int, rounds: int, real, new: dict, old: dict, nm_per_px: float = 0.2) -> dict:
    frames = simulated_frames(size, 3, nm_per_px, task=real.card.task)
    replay = ReplayBackend.record(real, frames)
    segs_new = [replay.segment(f) for f in frames]
    segs_old = [_convert(s, old["segmentation"].Segmentation, frame=_convert(s.frame, old["frame"].Frame))
                for s in segs_new]
    stages_new = _stages(new["pipeline"].Pipeline(replay, stream="bench"))
    stages_old = [s for lane in old["pipeline"].Pipeline(replay, stream="bench").lanes for s in lane.stages
                  if s.name in STAGES]
    identical = []
    for i, (a, b) in enumerate(zip(segs_new, segs_old)):  # also compiles both trees' kernels before timing
        ra, rb = _run(new, stages_new, a, 10_000 + i)[1], _run(old, stages_old, b, 10_000 + i)[1]
        identical.append(ra.doc.measurements.model_dump_json() == rb.doc.measurements.model_dump_json()
                         and ra.doc.reliability.model_dump_json() == rb.doc.reliability.model_dump_json())
    times: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(rounds):
        i = r % len(frames)
        pair = [("after", new, stages_new, segs_new[i]), ("before", old, stages_old, segs_old[i])]
        for name, pkg, stages, seg in (pair if r % 2 else pair[::-1]):
            times[name].append(_run(pkg, stages, seg, r)[0])
    out = {"grid_px": list(segs_new[0].probabilities.shape[1:]), "rounds": rounds,
           "documents_identical": all(identical)}
    for name, ts in times.items():
        out[name] = {k: {"p50": float(np.median([t[k] for t in ts])), "p10": float(np.percentile([t[k] for t in ts], 10))}
                     for k in (*STAGES, "total")}
    ratio = np.array([t["total"] for t in times["after"]]) / np.array([t["total"] for t in times["before"]])
    out["total_ratio_median"] = float(np.median(ratio))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the tree to compare with")
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None, help="write results here (a .md table beside it)")
    ap.add_argument("--model", default="particles-stem", help="model whose recorded outputs both trees measure")
    ap.add_argument("--nm-per-px", type=float, default=None,
                    help="calibration of the simulated frames (default 0.2, or 1.0 for a phases model)")
    args = ap.parse_args(argv)
    import os

    from copilot.inference.select import load_backend

    # both trees read this checkout's models (the copy is not beside an engines/ folder): only code differs
    os.environ["COPILOT_ENGINES"] = os.pathsep.join(filter(None, [str(HERE.parent / "engines"),
                                                                  os.environ.get("COPILOT_ENGINES")]))
    scratch = Path(tempfile.mkdtemp(prefix="copilot-before-"))
    try:
        renamed_copy(args.before.resolve(), scratch)
        sys.path.insert(0, str(scratch))
        mods = ("pipeline", "sources.base", "inference.segmentation", "frame")
        keys = ("pipeline", "base", "segmentation", "frame")
        new = {k: importlib.import_module(f"copilot.{m}") for k, m in zip(keys, mods)}
        old = {k: importlib.import_module(f"copilot_before.{m}") for k, m in zip(keys, mods)}
        real = load_backend(args.model, "onnxruntime", 2)
        nm = args.nm_per_px or default_nm_per_px(real.card.task)
        results = {str(s): measure(s, args.rounds, real, new, old, nm) for s in (int(v) for v in args.sizes.split(","))}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = ["| frame | grid | documents identical | stage | before CPU ms (p50 / p10) | after CPU ms (p50 / p10) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for size, r in results.items():
        for k in (*STAGES, "total"):
            b, a = r["before"][k], r["after"][k]
            lines.append(f"| {size}² | {r['grid_px'][0]}² | {'yes' if r['documents_identical'] else 'NO'} | {k} | "
                         f"{b['p50']:.1f} / {b['p10']:.1f} | {a['p50']:.1f} / {a['p10']:.1f} |")
        lines.append(f"| {size}² | | | **after ÷ before** (median of {r['rounds']} paired rounds) | | "
                     f"**{r['total_ratio_median']:.3f}×** |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"before": str(args.before), "results": results}, indent=1) + "\n")
        args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
