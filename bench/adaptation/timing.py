"""Wall-clock of one cheap adaptation (selftrain, default steps) on 50 frames of 1024² on this machine's CPU,
stage by stage (reading the frames onto the working grid, adapting, writing the backend, the label-free checks).

    python -m bench.adaptation.timing [--frames 50] [--size 1024] [--method selftrain] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.adaptation.timing", description=__doc__)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--method", default="selftrain")
    ap.add_argument("--group", default="dose")
    ap.add_argument("--json", type=Path, default=HERE / "timing.json")
    a = ap.parse_args(argv)
    from copilot.adapt.run import AdaptOptions, adapt_engine
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame

    rng = np.random.default_rng(7)
    frames = []
    for i in range(a.frames):
        s = sample_domain_frame(a.group, rng, a.size)
        frames.append(Frame(s.image, s.nm_per_px, stream="t", frame_id=str(i), origin=f"sim:{i}"))
    stages: dict[str, float] = {}
    t_stage = [time.perf_counter(), "prepare"]

    def progress(stage: str, done: int, total: int) -> None:
        if stage != t_stage[1]:
            now = time.perf_counter()
            stages[t_stage[1]] = round(now - t_stage[0], 1)
            t_stage[:] = [now, stage]

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = adapt_engine("particles-stem", frames, Path(tmp) / "e", "timing", AdaptOptions(method=a.method,
                           promote=False), command="bench.adaptation.timing", progress=progress, log=print)
    total = time.perf_counter() - t0
    stages[t_stage[1]] = round(time.perf_counter() - t_stage[0], 1)
    res = {"frames": a.frames, "size_px": a.size, "group": a.group, "method": a.method,
           "seconds_total": round(total, 1),
           "seconds_by_stage": stages, "steps": out.decision["info"].get("steps"), "cpu_count": os.cpu_count(),
           "torch_threads": 2, "load_1min_start": round(load0, 2), "load_1min_end": round(os.getloadavg()[0], 2),
           "target_seconds": 300}
    a.json.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
