"""Recipe: the reliability regressor of defects-tem — seed 002's method on seed 002's own task.

    python -m copilot.train.defects_reliability [defects-tem] [--per-group 40] [--seed 0]

Simulates frames in every defects domain group (``copilot.sim.domains``, task "defects"), runs the shipped model and
the daemon's analysis, and records the reliability features (``copilot.reliability``: seed 002's output features
over all objects and per class, image quality, shift distance) beside the true scores per frame
(``copilot.train.defect_scores``): cavities ≥ 3 nm and loops ≥ 5 nm (the accuracy targets' populations), and both
pooled (``f1``, ``precision``, ``recall``, which drive the verdict). Gradient-boosted trees
(``copilot.train.reliability.fit_regressor``) are fitted on all of it and written as engines/defects-tem/
reliability.onnx + reliability.json; the table goes to bench/reliability/defects_table.csv for
bench/reliability/defects_evaluate.py (random and grouped CV, five metrics).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "bench" / "reliability" / "defects_table.csv"
CLASS_TARGETS = {"cavity": "cavity_3nm", "loop": "loop_5nm"}  # class → population scored (defect_scores keys)
TARGETS = ["f1", "precision", "recall"] + [f"{c}_{m}" for c in CLASS_TARGETS for m in ("f1", "precision", "recall")]


def frame_targets(scores: dict[str, float]) -> dict[str, float]:
    """Per-frame F1 / precision / recall per class and pooled over both (empty vs empty scores 1)."""
    out: dict[str, float] = {}
    tp = n_p = n_t = 0.0
    for name, key in CLASS_TARGETS.items():
        a, b, c = scores[f"{key}_tp"], scores[f"{key}_pred"], scores[f"{key}_truth"]
        tp, n_p, n_t = tp + a, n_p + b, n_t + c
        out.update(_prf(name + "_", a, b, c))
    out.update(_prf("", tp, n_p, n_t))
    return out


def _prf(prefix: str, tp: float, n_p: float, n_t: float) -> dict[str, float]:
    if n_p + n_t == 0:
        return {f"{prefix}f1": 1.0, f"{prefix}precision": 1.0, f"{prefix}recall": 1.0}
    return {f"{prefix}f1": 2 * tp / (n_p + n_t), f"{prefix}precision": tp / n_p if n_p else 0.0,
            f"{prefix}recall": tp / n_t if n_t else 0.0}


def collect(model: str, per_group: int, seed: int, size_px: int = 512, log=print) -> tuple[list[dict], np.ndarray]:
    """One row per simulated frame: group, features, targets; plus the in-domain embeddings."""
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.inference.ort_backend import OrtBackend
    from copilot.reliability.score import Assessor
    from copilot.sim.domains import groups_for, sample_domain_frame
    from copilot.train.defect_scores import frame_scores

    backend = OrtBackend.from_name(model, threads=2)
    assessor = Assessor(backend.card.model_copy(update={"reliability_regressor": None}), backend.folder)
    rng = np.random.default_rng(seed)
    rows, embeddings = [], []
    for group in groups_for("defects"):
        for i in range(per_group):
            sim = sample_domain_frame(group, rng, size_px, task="defects")
            frame = Frame(sim.image, sim.nm_per_px, stream=f"{group}-{i}", frame_id=str(i), origin="sim",
                          meta={"foil_thickness_nm": sim.truth["foil_thickness_nm"]})
            fm = measure(backend.segment(frame))
            rows.append({"group": group, **assessor.frame(fm).features, **frame_targets(frame_scores(fm, sim))})
            if group == "in-domain":
                embeddings.append(fm.segmentation.embedding)
        if log is not None:
            f1 = np.mean([r["f1"] for r in rows[-per_group:]])
            log(f"{group}: {per_group} frames, mean true F1 {f1:.3f}")
    return rows, np.array(embeddings)


def write_table(rows: list[dict], path: Path = TABLE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_table(path: Path = TABLE) -> list[dict]:
    with open(path) as fh:
        return [{k: (v if k == "group" else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]


def fit_and_write(model: str, rows: list[dict], command: str, seed: int = 0) -> Path:
    """Fit on ``rows``; write reliability.onnx + reliability.json beside the model and name it in the card (the
    particle recipe's writer with this recipe's targets; no rolling-window calibration)."""
    from copilot.train.reliability import fit_and_write as write

    return write(model, rows, None, command, seed, targets=TARGETS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.train.defects_reliability", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="defects-tem")
    ap.add_argument("--per-group", type=int, default=40, help="simulated frames per domain group")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=512, help="frame edge in pixels")
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--refit", action="store_true", help="refit from --table without simulating again")
    a = ap.parse_args(argv)
    command = f"python -m copilot.train.defects_reliability {a.model} --per-group {a.per_group} --seed {a.seed}"
    if a.refit:
        rows = read_table(a.table)
    else:
        rows, _ = collect(a.model, a.per_group, a.seed, a.size)
        write_table(rows, a.table)
    folder = fit_and_write(a.model, rows, command, a.seed)
    print(f"wrote {folder}/reliability.onnx (+ .json) from {len(rows)} frames; table {a.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
