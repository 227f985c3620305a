"""kill -9 campaign (the issue's target): frames arrive at 30/s while the daemon is killed 20 times at random
moments and restarted; the store, the session exports and a `copilot tail --follow` consumer must each hold every
frame exactly once.

    PYTHONPATH=. python bench/soak/kills.py --kills 20 --out bench/soak/results/kills.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.soak.soak import threshold_model  # noqa: E402
from tests.faults.kill_rig import all_exact, run_campaign  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rate", type=float, default=30.0, help="frames per second arriving in the folder")
    p.add_argument("--frames", type=int, default=None, help="default: enough to keep arriving through every kill")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "soak" / "results" / "kills.json"))
    args = p.parse_args(argv)
    frames = args.frames or int(args.kills * 4.0 * args.rate)
    with tempfile.TemporaryDirectory(prefix="copilot-kills-") as tmp:
        work = Path(tmp)
        model = threshold_model(work / "engines" / "threshold")
        report = run_campaign(work / "run", model, frames=frames, rate_hz=args.rate, kills=args.kills,
                              kill_after_s=(0.5, 4.0), seed=args.seed, finish_timeout_s=3600,
                              log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    report["exact"] = all_exact(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0 if report["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
