"""The defects-tem reliability regressor against the frame's size: 512² frames (the table the regressor was first
fitted on) and 1024² frames (what a TEM camera writes, and what the daemon sees).

A 512² frame holds about 40 cavities, so its true F1 is a small sample: two frames drawn with the same simulator
parameters differ by 0.059 in F1 at 512², by 0.024 at 1024² (``defects_noise_floor.md``,
``defects_noise_floor_1024.md``). The predicted-F1 MAE cannot fall below that chance part, so it is reported per
frame size, for a regressor fitted on both tables and for one fitted on the 512² table alone (the shipped one):

    python -m copilot.train.defects_reliability defects-tem --size 1024 --per-group 100 --seed 1024 \\
        --table bench/reliability/defects_table_1024.csv --no-fit
    python bench/reliability/defects_sizes.py

Writes defects_sizes.md (+ .json) beside this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import cross_validate, metrics  # noqa: E402

SPLITS = ("random 5-fold", "grouped (leave one domain out)")  # cross_validate's split names


def _xy(rows: list[dict], names: list[str], targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[float(r[n]) for n in names] for r in rows], np.float32)
    y = np.array([[float(r[t]) for t in targets] for r in rows], np.float32)
    return x, y


def evaluate(tables: dict[int, list[dict]], targets: list[str]) -> dict:
    from copilot.train.reliability import feature_names, fit_regressor

    names = feature_names(next(iter(tables.values())), targets)
    sizes = np.concatenate([np.full(len(rows), s) for s, rows in tables.items()])
    rows = [r for t in tables.values() for r in t]
    x, y = _xy(rows, names, targets)
    groups = np.array([r["group"] for r in rows])
    res: dict = {"frames": {str(s): len(t) for s, t in tables.items()}, "features": len(names), "targets": targets}
    both = {split: cv["pred"] for split, cv in cross_validate(x, y, groups).items()}
    res["fitted on both sizes"] = {split: {str(s): metrics(y[sizes == s, 0], both[split][sizes == s, 0])
                                           for s in tables} for split in SPLITS}
    small = min(tables)
    only = {split: cv["pred"]
            for split, cv in cross_validate(x[sizes == small], y[sizes == small], groups[sizes == small]).items()}
    fitted = fit_regressor(x[sizes == small], y[sizes == small], 0)
    res[f"fitted on {small}² only"] = {split: {str(small): metrics(y[sizes == small, 0], only[split][:, 0])}
                                       for split in SPLITS}
    for s in tables:
        if s != small:
            pred = np.clip(fitted.predict(x[sizes == s]), 0, 1)[:, 0]
            for split in SPLITS:  # every 512² frame trains it; the larger frames are all unseen
                res[f"fitted on {small}² only"][split][str(s)] = metrics(y[sizes == s, 0], pred)
    res["mean_true_f1"] = {str(s): float(y[sizes == s, 0].mean()) for s in tables}
    return res


def report(res: dict) -> str:
    sizes = list(res["frames"])
    lines = ["# defects-tem reliability regressor against the frame's size", "",
             "Pooled predicted-F1 error (cavities ≥ 3 nm and loops ≥ 5 nm, object F1 at IoU ≥ 0.5) per frame "
             "size; "
             f"frames: {', '.join(f'{n} of {s}²' for s, n in res['frames'].items())}; {res['features']} features, "
             "gradient-boosted trees as shipped (`copilot.train.reliability.fit_regressor`). Rows of the 512²-only "
             "regressor at 1024²: fitted on every 512² frame, every 1024² frame unseen (the same figure in both "
             "split rows). Regenerate: see the docstring of `defects_sizes.py`.", "",
             "| regressor | split | " + " | ".join(f"MAE {s}²" for s in sizes) + " | " +
             " | ".join(f"R² {s}²" for s in sizes) + " | target MAE |",
             "|---|---|" + "---|" * (2 * len(sizes)) + "---|"]
    for fit in [k for k in res if k.startswith("fitted")]:
        for split in SPLITS:
            cells = res[fit][split]
            mae = [f"{cells[s]['MAE']:.3f}" if s in cells else "–" for s in sizes]
            r2 = [f"{cells[s]['R2']:.3f}" if s in cells else "–" for s in sizes]
            target = "≤ 0.06" if split == SPLITS[0] else "≤ 0.09"
            lines.append(f"| {fit} | {split} | " + " | ".join(mae + r2) + f" | {target} |")
    lines += ["", "Mean true F1: " + ", ".join(f"{s}² {v:.3f}" for s, v in res["mean_true_f1"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from copilot.train.defects_reliability import TABLE, TARGETS
    from copilot.train.reliability import read_table

    ap = argparse.ArgumentParser()
    ap.add_argument("--table", type=Path, default=TABLE, help="the 512² table")
    ap.add_argument("--large", type=Path, default=HERE / "defects_table_1024.csv", help="the 1024² table")
    ap.add_argument("--large-size", type=int, default=1024)
    a = ap.parse_args(argv)
    res = evaluate({512: read_table(a.table), a.large_size: read_table(a.large)}, TARGETS)
    (HERE / "defects_sizes.json").write_text(json.dumps(res, indent=2) + "\n")
    text = report(res)
    (HERE / "defects_sizes.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
