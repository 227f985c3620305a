"""Evaluate the grains-sem reliability regressor: can a frame's boundary F1 and G error be predicted label-free?

    python bench/reliability/grains_evaluate.py [--table bench/reliability/grains_table.csv]

Reads the per-frame table of ``python -m copilot.train.grains_reliability``; random 5-fold and grouped (leave one
domain group out) cross-validation of the shipped regressor's recipe (``copilot.train.reliability.fit_regressor``),
seed 002's five metrics for every target (boundary F1, precision, recall; |ΔG| capped at 2), and how well frames
whose true |ΔG| exceeds 0.5 are flagged by a predicted |ΔG| above 0.5 (the verdict's default
``grain_predicted_g_error``). Writes grains_report.md and grains_results.json beside this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from defects_evaluate import run  # noqa: E402
from evaluate import cross_validate, flagging  # noqa: E402


def error_flagging(rows: list[dict], targets: list[str], target: str, limit: float) -> dict:
    """Frames whose true ``target`` (an error) exceeds ``limit`` vs a predicted one above it (flagging() counts
    values *below* a threshold)."""
    names = [k for k in rows[0] if k != "group" and k not in targets]
    x = np.array([[float(r[n]) for n in names] for r in rows], np.float32)
    y = np.array([[float(r[t]) for t in targets] for r in rows], np.float32)
    i = targets.index(target)
    cv = cross_validate(x, y, np.array([r["group"] for r in rows]), targets=targets)
    return {split: flagging(-y[:, i], -res["pred"][:, i], -limit) for split, res in cv.items()}


def task_report(res: dict, targets: list[str], title: str, description: str, regenerate: str, f1_name: str,
                error_label: str) -> str:
    """The report of a task regressor with F1 targets and one error target (flagged as ``res["error_flagging"]``)."""
    lines = [f"# {title}", "",
             f"{res['frames']} {description}, {len(res['groups'])} domain groups ({', '.join(res['groups'])}); "
             f"gradient-boosted trees (100 × depth 3 per target) on {res['features']} label-free features (seed "
             "002's output features, image quality, shift distance), run as ONNX.",
             f"Regenerate: `{regenerate}`.", "",
             "| split | target | MAE | RMSE | R² | mean true |", "|---|---|---|---|---|---|"]
    for split in res["cv"]:
        for t in targets:
            m = res["cv"][split][t]
            lines.append(f"| {split} | {t} | {m['MAE']:.3f} | {m['RMSE']:.3f} | {m['R2']:.3f} | "
                         f"{res['mean_true'][t]:.3f} |")
    lines += ["", f"Grouped, per held-out group ({f1_name}):", "", "| held-out group | n | MAE | R² |",
              "|---|---|---|---|"]
    for g, m in res["cv"]["grouped (leave one domain out)"]["per_split_f1"].items():
        lines.append(f"| {g} | {m['n']} | {m['MAE']:.3f} | {m['R2']:.3f} |")
    lines += ["", "## Flagging", "", "| split | what | bad frames | flagged | precision | recall |",
              "|---|---|---|---|---|---|"]
    for split, f in res["flagging"].items():
        lines.append(f"| {split} | {f1_name} < 0.5 | {f['bad_frames']} | {f['flagged']} | {f['precision']:.3f} | "
                     f"{f['recall']:.3f} |")
    for split, f in res["error_flagging"].items():
        lines.append(f"| {split} | {error_label} | {f['bad_frames']} | {f['flagged']} | {f['precision']:.3f} | "
                     f"{f['recall']:.3f} |")
    return "\n".join(lines) + "\n"


def report(res: dict, targets: list[str]) -> str:
    return task_report(
        res, targets, "grains-sem reliability regressor: evaluation",
        "simulated SEM frames of etched polycrystals (targets per frame: boundary F1 / precision / recall at 2 "
        "working px, and |ΔG| of the planimetric G, capped at 2)",
        "python -m copilot.train.grains_reliability grains-sem && python bench/reliability/grains_evaluate.py",
        "boundary F1", "\\|ΔG\\| > 0.5")


def main(argv=None) -> int:
    from copilot.train.grains_reliability import TABLE, TARGETS

    return run(argv, "grains", TABLE, TARGETS, report,
               lambda rows, targets: {"error_flagging": error_flagging(rows, targets, "g_abs_error", 0.5)})


if __name__ == "__main__":
    raise SystemExit(main())
