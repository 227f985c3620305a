"""Post-processing cost of two source trees, measured alternately on the same machine (A, B, A, B, …).

    python bench/postprocess_ab.py --before /path/to/old/checkout --after . [--sizes 1024,2048] [--frames 6]

On a shared machine the load changes from one minute to the next; alternating short runs of the two trees and
comparing their per-frame CPU time (the thread's CPU, ``bench/postprocess.py``'s ``single``) gives a fairer before →
after than two runs far apart. Each side's figure is the median over the rounds and, beside it, the fastest round
(what the code costs when nothing else slows it: on a virtual machine another guest's load inflates even the
thread's CPU time). Each run is a fresh interpreter with that tree first on ``sys.path``; the frames are
the bench's simulated frames, the network outputs recorded by each run from the same backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

_RUN = """
import json, sys
sys.path.insert(0, {tree!r})
from bench.postprocess import ReplayBackend, simulated_frames, single
from copilot.inference.select import load_backend
real = load_backend("particles-stem", "onnxruntime", 2)
fr = simulated_frames({size}, 3, 0.2)
out = single(ReplayBackend.record(real, fr), fr, {frames})
print(json.dumps({{k: v["p50"] for k, v in out["cpu_ms"].items()}} | {{"particles": out["particles_per_frame"]}}))
"""


def run(tree: Path, size: int, frames: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _RUN.format(tree=str(tree), size=size, frames=frames)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=Path("."))
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results: dict = {}
    for size in (int(s) for s in args.sizes.split(",")):
        runs = {"before": [], "after": []}
        for _ in range(args.rounds):
            for name in ("before", "after"):
                runs[name].append(run(getattr(args, name).resolve(), size, args.frames))
        results[str(size)] = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
                              for name, rs in runs.items()}
        results[str(size)].update({f"{name}_fastest": {k: float(min(r[k] for r in rs)) for k in rs[0]}
                                   for name, rs in runs.items()})
    lines = ["| frame | stage | before (CPU ms p50: median of rounds / fastest) | after (same) | after ÷ before "
             "(medians / fastest) |", "| --- | --- | --- | --- | --- |"]
    for size, r in results.items():
        for k in ("analyze", "assess", "follow", "sink", "total"):
            b, a = r["before"][k], r["after"][k]
            bf, af = r["before_fastest"][k], r["after_fastest"][k]
            lines.append(f"| {size}² | {k} | {b:.1f} / {bf:.1f} | {a:.1f} / {af:.1f} | {a / b:.2f}× / {af / bf:.2f}× |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "table": lines}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
