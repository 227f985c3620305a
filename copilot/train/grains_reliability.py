"""Recipe: the reliability regressor of grains-sem — predicted boundary F1 and G error per frame.

    python -m copilot.train.grains_reliability [grains-sem] [--per-group 24] [--seed 0]

Simulates etched polycrystals in every grains domain group (``copilot.sim.grain_frames``: in-domain, dose, defocus
and the held-out shifts), runs the model and the daemon's analysis, and records the reliability features beside the
true scores per frame (``copilot.train.grains_metrics.grain_frame_errors``): boundary F1 / precision / recall at
2 working px tolerance (``f1``, ``precision``, ``recall`` drive the verdict like object F1 does for particles) and
``g_abs_error``, the planimetric G's absolute error against the frame's true G (capped at ``G_ERROR_CAP``; a frame
without any closed grain scores the cap). Gradient-boosted trees are fitted on all of it and written as
engines/grains-sem/reliability.onnx + reliability.json; the table goes to bench/reliability/grains_table.csv for
``bench/reliability/defects_evaluate.py --task grains`` (random and grouped CV).
"""

from __future__ import annotations

import math
from pathlib import Path

from copilot.train.task_reliability import TaskRecipe, prf

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "bench" / "reliability" / "grains_table.csv"
TARGETS = ["f1", "precision", "recall", "g_abs_error"]
G_ERROR_CAP = 2.0  # |ΔG| beyond this says only "far off"; it keeps one wild frame from dominating the fit


def frame_targets(errors: dict[str, float]) -> dict[str, float]:
    """Boundary F1 / precision / recall and the capped |ΔG| of one frame's ``grain_frame_errors`` (a frame with no
    boundary in truth or prediction scores 1)."""
    from copilot.train.grains_metrics import f1_from

    counts = [errors["tp_pred"], errors["n_pred"], errors["tp_true"], errors["n_true"]]
    if counts[1] + counts[3] == 0:
        out = prf("", 0.0, 0.0, 0.0)
    else:
        precision, recall, f1 = f1_from(counts)
        out = {"f1": f1, "precision": precision, "recall": recall}
    dg = errors["dg_planimetric"]
    out["g_abs_error"] = G_ERROR_CAP if not math.isfinite(dg) else min(abs(dg), G_ERROR_CAP)
    return out


def _score(fm, sim) -> dict[str, float]:
    from copilot.train.grains_metrics import grain_frame_errors

    return frame_targets(grain_frame_errors(fm, sim))


RECIPE = TaskRecipe(task="grains", default_model="grains-sem", targets=TARGETS, score=_score, table=TABLE,
                    default_per_group=24, module="copilot.train.grains_reliability")
collect, fit_and_write = RECIPE.collect, RECIPE.fit_and_write


def main(argv: list[str] | None = None) -> int:
    return RECIPE.main(argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
