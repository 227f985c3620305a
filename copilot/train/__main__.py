"""python -m copilot.train PRESET [--seed 0] [--out DIR]      (= copilot train PRESET)

Presets: particles-stem (HAADF-STEM + BF-TEM nanoparticles), phases-sem (SEM two-phase and porous microstructures),
grains-sem (etched polycrystals: grain boundaries for ASTM E112), defects-tem (BF-TEM cavities and dislocation
loops in irradiated foils).
Each regenerates its simulated data and trains from scratch with a fixed seed and a fixed number of steps (about
25 min on two CPU cores), then writes model.onnx + card.json into engines/<preset> (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Before torch loads: OpenMP threads that lose their core to another process sleep instead of spin-waiting (on a
# shared 2-core machine spinning threads made training ~15× slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PRESETS = ("particles-stem", "phases-sem", "grains-sem", "defects-tem")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", choices=PRESETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    ap.add_argument("--minutes", type=float, default=32.0,
                    help="cap on the training loop for a slow machine (default 32); the schedule is --steps long")
    ap.add_argument("--n-train", type=int, default=None, help="simulated training patches (default: the preset's)")
    ap.add_argument("--heldout-per-group", type=int, default=None,
                    help="frames per domain group for the card (default: the preset's)")
    ap.add_argument("--out", type=Path, default=None, help="engine folder (default engines/<recipe>)")
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune from this model.onnx (its card.json beside it) instead of training from scratch")
    args = ap.parse_args(argv)
    if args.recipe == "particles-stem":
        from copilot.train import particles_stem as recipe
    elif args.recipe == "defects-tem":
        from copilot.train import defects_tem as recipe  # type: ignore[no-redef]
    elif args.recipe == "grains-sem":
        from copilot.train import grains_sem as recipe  # type: ignore[no-redef]
    else:
        from copilot.train import phases_sem as recipe  # type: ignore[no-redef]

    cmd = "python -m copilot.train " + " ".join(sys.argv[1:] if argv is None else argv)
    recipe.main(minutes=args.minutes, seed=args.seed, n_train=args.n_train or recipe.N_TRAIN,
                out_dir=args.out or recipe.ENGINE_DIR, command=cmd, steps=args.steps or recipe.STEPS,
                init_onnx=args.init,
                **({} if args.heldout_per_group is None else {"heldout_per_group": args.heldout_per_group}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
