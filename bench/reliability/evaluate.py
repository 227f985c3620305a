"""Evaluate the reliability regressor the way seed 002 does, and the verdict on frames the model was never meant for.

    python bench/reliability/evaluate.py [--model particles-stem]

Reads bench/reliability/table.csv (written by `python -m copilot.train.reliability`), then:
- random 5-fold and grouped (leave-one-domain-group-out) cross-validation of the same regressor: MAE, RMSE, R²,
  NRMSE (RMSE / SD of the true F1) and NMAE (MAE / mean true F1), for F1, precision and recall;
- precision / recall of flagging frames whose true F1 < 0.5 (flag: predicted F1 < 0.5);
- the shipped verdict on out-of-scope frames: blank, pure noise, photographs (scikit-image's bundled pictures),
  contrast-inverted in-domain frames — the share that gets `fail`.
Writes report.md, parity.png and results.json beside this script.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    err = p - y
    mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    sd, mean = float(y.std()), float(y.mean())
    return {"MAE": mae, "RMSE": rmse, "R2": r2, "NRMSE": rmse / sd if sd > 0 else float("nan"),
            "NMAE": mae / mean if mean > 0 else float("nan"), "n": int(len(y))}


def flagging(y_f1: np.ndarray, p_f1: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    truth, flag = y_f1 < threshold, p_f1 < threshold
    tp = int((truth & flag).sum())
    return {"precision": tp / flag.sum() if flag.sum() else float("nan"),
            "recall": tp / truth.sum() if truth.sum() else float("nan"),
            "bad_frames": int(truth.sum()), "flagged": int(flag.sum())}


def cross_validate(x, y, groups, seed=0, targets=None):
    """Random 5-fold and leave-one-group-out predictions of every column of ``y``, clipped as the assessor clips
    them (``Assessor.predict``): scores to [0, 1], errors (``targets`` named ``*_error``) to ≥ 0 only."""
    from sklearn.model_selection import KFold, LeaveOneGroupOut

    from copilot.train.reliability import fit_regressor

    upper = np.array([np.inf if t.endswith("_error") else 1.0 for t in targets]) if targets else 1.0
    out = {}
    for name, splitter, split_groups in (("random 5-fold", KFold(5, shuffle=True, random_state=seed), None),
                                          ("grouped (leave one domain out)", LeaveOneGroupOut(), groups)):
        pred = np.zeros_like(y)
        per_split = {}
        for train, test in splitter.split(x, y, split_groups):
            pred[test] = np.clip(fit_regressor(x[train], y[train], seed).predict(x[test]), 0, upper)
            if split_groups is not None:
                per_split[str(groups[test][0])] = metrics(y[test, 0], pred[test, 0])
        out[name] = {"pred": pred, "per_split": per_split}
    return out


def out_of_scope_frames(rng: np.random.Generator, n_each: int = 10):
    """Frames the model was never meant for, as uint16 arrays with a nominal calibration."""
    from skimage import data, transform
    from skimage.color import rgb2gray

    from copilot.sim.domains import sample_domain_frame

    photos = []
    for name in ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "horse", "page", "text"):
        try:
            img = getattr(data, name)()
        except Exception:
            continue
        img = rgb2gray(img) if img.ndim == 3 else img.astype(float) / max(float(img.max()), 1)
        photos.append((transform.resize(img, (512, 512), anti_aliasing=True) * 60000).astype(np.uint16))
    sets = {
        "blank": [np.full((512, 512), int(rng.integers(100, 40000)), np.uint16) for _ in range(n_each)],
        "pure noise": [rng.poisson(rng.uniform(5, 500), (512, 512)).astype(np.uint16) for _ in range(n_each)],
        "photograph": photos[:n_each],
        "contrast-inverted": [sample_domain_frame("contrast-inversion", rng, 512).image for _ in range(n_each)],
    }
    return sets


def verdicts_out_of_scope(model: str, seed: int = 1):
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.inference.ort_backend import OrtBackend
    from copilot.reliability.score import Assessor

    backend = OrtBackend.from_name(model)
    rng = np.random.default_rng(seed)
    result = {}
    for name, frames in out_of_scope_frames(rng).items():
        levels, reasons = [], []
        for i, img in enumerate(frames):
            assessor = Assessor(backend.card, backend.folder)  # fresh: no rolling window carried across frames
            frame = Frame(img, 0.25, stream=f"{name}-{i}", frame_id=str(i), origin="bench")
            _, verdict, _ = assessor.assess(measure(backend.segment(frame)))
            levels.append(verdict.level)
            reasons.append(verdict.reasons[0] if verdict.reasons else "")
        result[name] = {"frames": len(levels), "fail": levels.count("fail"), "warn": levels.count("warn"),
                        "ok": levels.count("ok"), "example_reason": max(set(reasons), key=reasons.count)}
    return result


def parity_plot(y, cv, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), dpi=110)
    for ax, (name, res) in zip(axes, cv.items()):
        m = metrics(y[:, 0], res["pred"][:, 0])
        ax.scatter(y[:, 0], res["pred"][:, 0], s=8, alpha=0.6)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="true object F1", ylabel="predicted F1",
               title=f"{name}\nMAE {m['MAE']:.3f}  RMSE {m['RMSE']:.3f}  R² {m['R2']:.3f}")
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="particles-stem")
    args = ap.parse_args(argv)
    from copilot.train.reliability import NEGATIVE_GROUP, TARGETS

    every = list(csv.DictReader(open(HERE / "table.csv")))
    # the not-particles frames teach the deployed regressor what out-of-scope output looks like; the
    # cross-validation below is on microscopy frames of particles only, as seed 002 evaluates
    rows = [r for r in every if r["group"] != NEGATIVE_GROUP]
    names = [k for k in rows[0] if k not in ("group", *TARGETS)]
    x = np.array([[float(r[n]) for n in names] for r in rows], np.float32)
    y = np.array([[float(r[t]) for t in TARGETS] for r in rows], np.float32)
    groups = np.array([r["group"] for r in rows])
    cv = cross_validate(x, y, groups)
    results = {"frames": len(rows), "groups": sorted(set(groups)), "cv": {}, "flagging": {}}
    for name, res in cv.items():
        results["cv"][name] = {t: metrics(y[:, i], res["pred"][:, i]) for i, t in enumerate(TARGETS)}
        results["cv"][name]["per_split_f1"] = res["per_split"]
        results["flagging"][name] = flagging(y[:, 0], res["pred"][:, 0])
    results["out_of_scope"] = verdicts_out_of_scope(args.model)
    parity_plot(y, cv, HERE / "parity.png")
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["# Reliability regressor: evaluation", "",
             f"{len(rows)} simulated frames, {len(set(groups))} domain groups "
             f"({', '.join(sorted(set(groups)))}). Regressor: gradient-boosted trees (100 × depth 3 per target) on {len(names)} features, run as ONNX. "
             f"The shipped regressor also saw {len(every) - len(rows)} not-particles frames (SEM microstructures, "
             "smooth fields, gratings, blocks; F1 = 0 when anything is found); none of the out-of-scope frames below "
             "are among them.",
             "Regenerate: `python -m copilot.train.reliability particles-stem && python bench/reliability/evaluate.py`.",
             "", "## Cross-validation (seed 002's five metrics)", "",
             "| split | target | MAE | RMSE | R² | NRMSE | NMAE |", "|---|---|---|---|---|---|---|"]
    for name, per_target in results["cv"].items():
        for t in TARGETS:
            m = per_target[t]
            lines.append(f"| {name} | {t} | {m['MAE']:.3f} | {m['RMSE']:.3f} | {m['R2']:.3f} | {m['NRMSE']:.3f} | "
                         f"{m['NMAE']:.3f} |")
    lines += ["", "Grouped, per held-out group (F1):", "", "| held-out group | n | MAE | RMSE | R² | mean true F1 |",
              "|---|---|---|---|---|---|"]
    for g, m in results["cv"]["grouped (leave one domain out)"]["per_split_f1"].items():
        mean_true = float(y[groups == g, 0].mean())
        lines.append(f"| {g} | {m['n']} | {m['MAE']:.3f} | {m['RMSE']:.3f} | {m['R2']:.3f} | {mean_true:.3f} |")
    lines += ["", "## Flagging frames whose true F1 < 0.5 (predicted F1 < 0.5)", "",
              "| split | bad frames | flagged | precision | recall |", "|---|---|---|---|---|"]
    for name, f in results["flagging"].items():
        lines.append(f"| {name} | {f['bad_frames']} | {f['flagged']} | {f['precision']:.3f} | {f['recall']:.3f} |")
    lines += ["", "## Verdict on frames the model was never meant for", "",
              "| kind | frames | fail | warn | ok | most common first reason |", "|---|---|---|---|---|---|"]
    oos = results["out_of_scope"]
    for name, r in oos.items():
        lines.append(f"| {name} | {r['frames']} | {r['fail']} | {r['warn']} | {r['ok']} | {r['example_reason']} |")
    in_scope = [] if "bright" in args.model else ["contrast-inverted"]
    total = sum(r["frames"] for k, r in oos.items() if k not in in_scope)
    failed = sum(r["fail"] for k, r in oos.items() if k not in in_scope)
    ci_f1 = float(y[groups == "contrast-inversion", 0].mean()) if (groups == "contrast-inversion").any() else None
    lines += ["", f"`fail` on {failed}/{total} = {failed / total:.0%} of the blank, noise and photograph frames "
                  "(target ≥ 95 %)."]
    if ci_f1 is not None:
        lines += ["", f"Contrast-inverted frames are *in scope* for this model: it is trained on HAADF-STEM (bright "
                      f"particles) and BF-TEM (dark particles), and its true F1 on the contrast-inversion group is "
                      f"{ci_f1:.2f}; most of them rightly get `ok`. The 'model trained on one contrast' case of the "
                      "issue does not apply to it."]
    lines += ["",
              "![parity](parity.png)", ""]
    (HERE / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
