"""Recipe: the reliability regressor of phases-sem — a predicted pixel F1 and phase-fraction error per frame.

    python -m copilot.train.phases_reliability [phases-sem] [--per-group 32] [--seed 0]

Simulates SEM micrographs in every phases domain group (``copilot.sim.domains``: in-domain, dose, defocus and the
held-out shifts, the BSE ``detector`` among them), runs the model and the daemon's analysis, and records the
reliability features beside the true scores per frame, on the analysis grid against the simulator's exact class map
taken to it (``copilot.train.heldout.phase_truth``, as the held-out metrics score phases):

* ``f1``, ``precision``, ``recall``: per-class pixel F1 (Dice), precision and recall, averaged over the classes that
  cover at least ``MIN_SHARE`` of the frame in the truth or the prediction (precision over those predicted, recall
  over those true; a class of a few stray pixels would otherwise score a near-perfect frame 0.65). They drive the
  verdict as object F1 does for particles.
* ``fraction_error``: the largest absolute area-fraction error over the classes, in percentage points (the measured
  fractions against the exact ones), capped at ``FRACTION_ERROR_CAP``.

Gradient-boosted trees are fitted on all of it and written as engines/phases-sem/reliability.onnx + reliability.json
(so a phase frame gets a predicted F1, and ``copilot adapt`` can judge a phases model by it); the table goes to
bench/reliability/phases_table.csv for ``bench/reliability/phases_evaluate.py`` (random and grouped CV).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from copilot.train.task_reliability import TaskRecipe

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "bench" / "reliability" / "phases_table.csv"
TARGETS = ["f1", "precision", "recall", "fraction_error"]
FRACTION_ERROR_CAP = 40.0  # pp: beyond it says only "far off"
MIN_SHARE = 0.01  # classes below this share of the frame in both truth and prediction are not scored


def pixel_scores(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[str, float]:
    """Macro pixel F1 / precision / recall of two class maps of one shape (module doc).

    >>> s = pixel_scores(np.array([[0, 1, 1, 1]]), np.array([[0, 0, 1, 1]]), 2)
    >>> round(s["f1"], 3), round(s["precision"], 3), s["recall"]
    (0.733, 0.833, 0.75)
    """
    p = np.bincount(pred.ravel(), minlength=n_classes)[:n_classes].astype(float)
    t = np.bincount(truth.ravel(), minlength=n_classes)[:n_classes].astype(float)
    tp = np.bincount(pred.ravel()[pred.ravel() == truth.ravel()], minlength=n_classes)[:n_classes].astype(float)
    floor = MIN_SHARE * pred.size
    in_p, in_t = p >= floor, t >= floor
    either = in_p | in_t
    if not either.any():  # no class covers MIN_SHARE (a frame of many tiny classes): every one present counts
        in_p, in_t, either = p > 0, t > 0, (p + t) > 0
    return {"f1": float(np.mean(2 * tp[either] / (p + t)[either])),
            "precision": float(np.mean(tp[in_p] / p[in_p])) if in_p.any() else 0.0,
            "recall": float(np.mean(tp[in_t] / t[in_t])) if in_t.any() else 0.0}


def frame_targets(fm, sim) -> dict[str, float]:
    """The TARGETS of one measured frame against its simulated truth."""
    from copilot.train.heldout import phase_truth

    truth, true_frac = phase_truth(fm, sim)
    out = pixel_scores(fm.instances, truth, len(true_frac))
    pred_frac = np.array([ph.area_fraction for ph in fm.summary.phases.phases])
    out["fraction_error"] = float(min(100 * np.max(np.abs(pred_frac - true_frac)), FRACTION_ERROR_CAP))
    return out


RECIPE = TaskRecipe(task="phases", default_model="phases-sem", targets=TARGETS, score=frame_targets, table=TABLE,
                    default_per_group=32, module="copilot.train.phases_reliability")
collect, fit_and_write = RECIPE.collect, RECIPE.fit_and_write


def main(argv: list[str] | None = None) -> int:
    return RECIPE.main(argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
