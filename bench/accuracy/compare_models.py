"""Two versions of a model on the same held-out frames, several seeds: is a retrained model better, or only luckier?

    python bench/accuracy/compare_models.py BEFORE_DIR AFTER_DIR --per-group 40 --seeds 20261125 777 \
        --keys cavity_3nm_f1,swelling_rel_error_median --out bench/accuracy/defects_0.5.0.md
    python bench/accuracy/compare_models.py --render bench/accuracy/defects_0.5.0.json --keys … --out …

A card's held-out figures come from one draw of frames per group (12-48), and two models of the same architecture
fine-tuned from one another differ by less than that draw's noise; this runs both on the same frames
(``copilot.train.heldout.evaluate_backend``) for each seed and writes one table: before → after per group, seed and
metric, and how many comparisons went each way. Get an older version with ``git worktree add /tmp/old <rev>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import console  # (common puts the repository on sys.path)

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.train.heldout import evaluate_backend

LOWER_IS_BETTER = ("error", "mae")


def better(key: str, before: float, after: float) -> int:
    """+1 if ``after`` is better on ``key``, −1 if worse, 0 if equal to the three decimals the table shows."""
    sign = -1 if any(s in key for s in LOWER_IS_BETTER) else 1
    before, after = round(before, 3), round(after, 3)
    return 0 if after == before else (sign if after > before else -sign)


def cell(key: str, before: float, after: float) -> str:
    """``before → after``, the after bold where it is better."""
    if before != before or after != after:
        return f"{before:.3f} → {after:.3f}"
    return f"{before:.3f} → **{after:.3f}**" if better(key, before, after) > 0 else f"{before:.3f} → {after:.3f}"


def run(folder: Path, per_group: int, seed: int) -> tuple[str, dict]:
    card, path = load_card(folder)
    metrics = evaluate_backend(OrtBackend(card, path, threads=2), card.task, per_group, seed, log=None)
    return f"{card.name} {card.version}", metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path, nargs="?")
    ap.add_argument("after", type=Path, nargs="?")
    ap.add_argument("--render", type=Path, default=None, help="write the table again from an earlier run's .json")
    ap.add_argument("--per-group", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[20_261_125, 777])
    ap.add_argument("--keys", required=True, help="comma-separated metric names, e.g. cavity_3nm_f1,object_f1")
    ap.add_argument("--out", type=Path, required=True, help="markdown table (a .json beside it)")
    args = ap.parse_args(argv)
    keys = args.keys.split(",")
    if args.render is not None:
        results = json.loads(args.render.read_text())
        args.seeds = [int(s) for s in results]
    elif args.before is None or args.after is None:
        ap.error("give BEFORE and AFTER model folders, or --render an earlier .json")
    else:
        results = measure(args.before, args.after, args.per_group, args.seeds)
    lines = table(results, keys, args)
    args.out.write_text("\n".join(lines) + "\n")
    if args.render is None:
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    console.print("\n".join(lines))
    return 0


def measure(before: Path, after: Path, per_group: int, seeds: list[int]) -> dict:
    """{seed: {before|after: {model, metrics}}}."""
    results: dict = {}
    for seed in seeds:
        for side, folder in (("before", before), ("after", after)):
            name, metrics = run(folder, per_group, seed)
            results.setdefault(str(seed), {})[side] = {"model": name, "metrics": metrics}
            console.print(f"seed {seed}: {side} = {name} measured")
    return results


def table(results: dict, keys: list[str], args: argparse.Namespace) -> list[str]:
    """The markdown lines: one row per group and metric, one column per seed, and the tally."""
    first = results[str(args.seeds[0])]
    lines = [f"# {first['before']['model']} → {first['after']['model']} on the same held-out frames", "",
             f"`python bench/accuracy/compare_models.py … --per-group {args.per_group} --seeds "
             f"{' '.join(map(str, args.seeds))} --keys {args.keys}` ({args.per_group} frames of 512² per group and "
             "seed; the daemon's path: OrtBackend + analysis.measure).", "",
             "| group | metric | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
             "|---|---|" + "---|" * len(args.seeds)]
    tally = {1: 0, 0: 0, -1: 0}
    for group in first["before"]["metrics"]:
        for key in keys:
            cells = []
            for seed in args.seeds:
                b = results[str(seed)]["before"]["metrics"][group].get(key, float("nan"))
                a = results[str(seed)]["after"]["metrics"][group].get(key, float("nan"))
                if b == b and a == a:
                    tally[better(key, b, a)] += 1
                cells.append(cell(key, b, a))
            lines.append(f"| {group} | {key} | " + " | ".join(cells) + " |")
    lines += ["", f"After better in {tally[1]}, equal (to 3 decimals) in {tally[0]}, worse in {tally[-1]} of "
                  f"{sum(tally.values())} comparisons."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
