"""python -m copilot.train particles-stem [--minutes N] [--seed 0]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.train", description=__doc__)
    ap.add_argument("recipe", choices=["particles-stem"])
    ap.add_argument("--minutes", type=float, default=22.0, help="wall-clock training budget (default 22)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=1200, help="simulated training patches (256² at working scale)")
    ap.add_argument("--n-heldout", type=int, default=48)
    ap.add_argument("--out", type=Path, default=None, help="engine folder (default engines/<recipe>)")
    args = ap.parse_args(argv)
    from copilot.train import particles_stem

    cmd = "python -m copilot.train " + " ".join(sys.argv[1:] if argv is None else argv)
    particles_stem.main(minutes=args.minutes, seed=args.seed, n_train=args.n_train, n_heldout=args.n_heldout,
                        out_dir=args.out or particles_stem.ENGINE_DIR, command=cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
