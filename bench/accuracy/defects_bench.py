"""Radiation-damage accuracy of defects-tem against the issue's targets, per domain group.

    python bench/accuracy/defects_bench.py                    # from the card's held-out metrics (no simulation)
    python bench/accuracy/defects_bench.py --per-group 40     # measure again through the daemon's path first
    python bench/accuracy/defects_bench.py --per-group 40 --size 1024 --name defects_1024   # frames of 1024²

The held-out frames (``copilot.train.defect_scores.defect_group_metrics``: simulator → OrtBackend.segment →
analysis.measure with the foil thickness in the frame metadata) are scored per class at IoU ≥ 0.5: cavities ≥ 3 nm,
loops ≥ 5 nm, and swelling against the simulator's exact ΔV/V. The predicted-F1 rows come from
bench/reliability/defects_results.json (``bench/reliability/defects_evaluate.py``). Writes defects.md (+ .json),
or ``--name``.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RELIABILITY = ROOT / "bench" / "reliability" / "defects_results.json"
SIZES = ROOT / "bench" / "reliability" / "defects_sizes.json"  # the regressor on frames of other sizes


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def target_rows(groups: dict[str, dict], rel: dict | None) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, threshold, met) rows."""
    rows = []
    ind = groups.get("in-domain", {})
    f1 = ind.get("cavity_3nm_f1")
    rows.append(("cavities ≥ 3 nm, F1 in-domain", _fmt(f1), "≥ 0.90", None if f1 is None else f1 >= 0.90))
    for g, m in groups.items():
        if g == "in-domain":
            continue
        f = m.get("cavity_3nm_f1")
        rows.append((f"cavities ≥ 3 nm, F1 {g}", _fmt(f), "≥ 0.80", None if f is None else f >= 0.80))
    lf = ind.get("loop_5nm_f1")
    rows.append(("loops ≥ 5 nm, F1 in-domain", _fmt(lf), "≥ 0.80", None if lf is None else lf >= 0.80))
    ratio = ind.get("swelling_pooled_ratio")
    med = ind.get("swelling_rel_error_median")
    rows.append(("swelling in-domain, pooled estimate / truth", _fmt(ratio), "0.90-1.10",
                 None if ratio is None else abs(ratio - 1) <= 0.10))
    rows.append(("swelling in-domain, median per-frame |error| (relative)", _fmt(med), "≤ 0.10",
                 None if med is None else med <= 0.10))
    if rel is not None:
        for split, limit in (("random 5-fold", 0.06), ("grouped (leave one domain out)", 0.09)):
            m = rel["cv"][split]["f1"]["MAE"]
            rows.append((f"predicted-F1 MAE, {split}", _fmt(m), f"≤ {limit:.2f} (published "
                         f"{0.094 if split.startswith('random') else 0.121})", m <= limit))
    return rows


def report(card: dict, groups: dict[str, dict], rel: dict | None, source: str) -> str:
    lines = [f"# Radiation damage: {card['name']} {card['version']} against the targets", "",
             f"Held-out frames: {source}. Object F1 at IoU ≥ 0.5 per class, pooled over each group's frames; "
             "sizes and swelling from the daemon's own analysis (copilot.analysis.defects, edge-corrected).",
             "Regenerate: `python bench/accuracy/defects_bench.py "
             "[--per-group 40 [--size 1024 --name defects_1024]]`.", "",
             "| target | measured | required | met |", "|---|---|---|---|"]
    for name, val, req, met in target_rows(groups, rel):
        lines.append(f"| {name} | {val} | {req} | {'–' if met is None else 'yes' if met else 'NO'} |")
    lines += ["", "## Per group", "",
              "| group | frames | cavity F1 (≥ 3 nm) | P | R | cavities | cavity F1 (all) | loop F1 (≥ 5 nm) | "
              "loop F1 (all) | loops | swelling est/true | swelling median rel. error |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g, m in groups.items():
        lines.append(" | ".join([f"| {g}", f"{m.get('frames', 0):.0f}", _fmt(m.get("cavity_3nm_f1")),
                                 _fmt(m.get("cavity_3nm_precision")), _fmt(m.get("cavity_3nm_recall")),
                                 f"{m.get('cavity_3nm_truth_objects', 0):.0f}", _fmt(m.get("cavity_f1")),
                                 _fmt(m.get("loop_5nm_f1")), _fmt(m.get("loop_f1")),
                                 f"{m.get('loop_truth_objects', 0):.0f}", _fmt(m.get("swelling_pooled_ratio")),
                                 _fmt(m.get("swelling_rel_error_median"))]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="defects-tem")
    ap.add_argument("--per-group", type=int, default=0, help="measure again with this many frames per group")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--size", type=int, default=512, help="frame edge in pixels (with --per-group)")
    ap.add_argument("--name", default="defects", help="file stem of the report (.md, .json)")
    a = ap.parse_args(argv)
    from copilot.inference.card import load_card

    card, folder = load_card(a.model)
    if a.per_group:
        from copilot.inference.ort_backend import OrtBackend
        from copilot.train.heldout import evaluate_backend

        groups = evaluate_backend(OrtBackend(card, folder, threads=2), "defects", per_group=a.per_group,
                                  size_px=a.size)
        source = f"{a.per_group} frames of {a.size}² per group, measured by this script"
    else:
        groups = {k.split(":", 1)[1]: v for k, v in card.metrics.items() if k.startswith("heldout:")}
        frames = next(iter(groups.values()), {}).get("frames", 0)
        source = f"the card's held-out metrics ({frames:.0f} frames of 512² per group, seed 20261125)"
    rel = json.loads(RELIABILITY.read_text()) if RELIABILITY.exists() else None
    if a.per_group and a.size != 512:  # the shipped regressor on frames of this size (defects_sizes.py), if measured
        source += " (predicted-F1 rows: the shipped regressor on such frames, bench/reliability/defects_sizes.md)"
        sized = json.loads(SIZES.read_text()).get("fitted on 512² only", {}) if SIZES.exists() else {}
        cells = {split: by_size[str(a.size)] for split, by_size in sized.items() if str(a.size) in by_size}
        rel = {"cv": {split: {"f1": m} for split, m in cells.items()}} if len(cells) == 2 else None
    text = report(card.model_dump(), groups, rel, source)
    (a.out / f"{a.name}.md").write_text(text)
    (a.out / f"{a.name}.json").write_text(json.dumps({"groups": groups, "source": source}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
