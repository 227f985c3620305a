"""Evaluate the phases-sem reliability regressor: can a frame's pixel F1 and phase-fraction error be predicted
label-free?

    python bench/reliability/phases_evaluate.py [--table bench/reliability/phases_table.csv]

Reads the per-frame table of ``python -m copilot.train.phases_reliability``; random 5-fold and grouped (leave one
domain group out) cross-validation of the shipped regressor's recipe (``copilot.train.reliability.fit_regressor``),
seed 002's metrics for every target (macro pixel F1, precision, recall; the largest phase-fraction error in pp, capped
at 40), and how well frames whose true fraction error exceeds 5 pp are flagged by a predicted one above 5 pp. Writes
phases_report.md and phases_results.json beside this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from defects_evaluate import run  # noqa: E402
from grains_evaluate import error_flagging, task_report  # noqa: E402

FLAG_PP = 5.0


def report(res: dict, targets: list[str]) -> str:
    return task_report(
        res, targets, "phases-sem reliability regressor: evaluation",
        "simulated SEM micrographs of two-phase and porous microstructures (targets per frame: macro pixel F1 / "
        "precision / recall over the classes covering ≥ 1 % of the frame, and the largest phase-fraction error in "
        "pp, capped at 40)",
        "python -m copilot.train.phases_reliability phases-sem && python bench/reliability/phases_evaluate.py",
        "pixel F1", f"fraction error > {FLAG_PP:g} pp")


def main(argv=None) -> int:
    from copilot.train.phases_reliability import TABLE, TARGETS

    return run(argv, "phases", TABLE, TARGETS, report,
               lambda rows, targets: {"error_flagging": error_flagging(rows, targets, "fraction_error", FLAG_PP)})


if __name__ == "__main__":
    raise SystemExit(main())
