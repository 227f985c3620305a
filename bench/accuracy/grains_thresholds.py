"""Choose the grains hysteresis thresholds (``[analysis] grain_boundary_high`` / ``grain_boundary_low``) for a
boundary model on tuning frames apart from the card's held-out ones: every domain group's frames are segmented once,
then measured with each candidate pair; the table gives mean |ΔG| (planimetric) and boundary F1 per group.

    python bench/accuracy/grains_thresholds.py [ENGINE] [--per-group 12] [--seed 777] [--pairs 0.25/0.08,0.4/0.15]
                                               [--native on|off]

``--native`` overrides the card's ``average_native_scale`` (the second, native-size pass of coarse frames).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from copilot.analysis import measure
from copilot.analysis.settings import AnalysisSettings
from copilot.frame import Frame
from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.sim.domains import groups_for, sample_domain_frame
from copilot.train.grains_metrics import grain_frame_errors, summarize


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", nargs="?", default="grains-sem")
    ap.add_argument("--per-group", type=int, default=12)
    ap.add_argument("--seed", type=int, default=777, help="tuning frames (the cards' held-out seed is 20261125)")
    ap.add_argument("--pairs", default="0.25/0.08,0.3/0.1,0.4/0.15,0.2/0.06,0.35/0.08")
    ap.add_argument("--native", choices=("card", "on", "off"), default="card",
                    help="the native-size pass of coarse frames: as the card says, or forced on / off")
    a = ap.parse_args(argv)
    card, folder = load_card(a.engine)
    if a.native != "card":
        card = card.model_copy(update={"average_native_scale": a.native == "on"})
    backend = OrtBackend(card, folder, threads=2)
    pairs = [tuple(float(v) for v in p.split("/")) for p in a.pairs.split(",")]
    rows: dict[tuple, dict[str, dict]] = {p: {} for p in pairs}
    for group in groups_for("grains"):
        rng = np.random.default_rng(a.seed)
        segs = []
        for i in range(a.per_group):
            sim = sample_domain_frame(group, rng, 512, task="grains")
            segs.append((backend.segment(Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i),
                                               origin="sim")), sim))
        for high, low in pairs:
            s = AnalysisSettings(grain_boundary_high=high, grain_boundary_low=low)
            rows[(high, low)][group] = summarize([grain_frame_errors(measure(seg, s), sim) for seg, sim in segs])
        print(f"{group}: " + "  ".join(f"{h}/{lo} |ΔG| {rows[(h, lo)][group]['g_planimetric_abs_error_mean']:.3f} "
                                       f"F1 {rows[(h, lo)][group]['boundary_f1']:.3f}" for h, lo in pairs),
              file=sys.stderr, flush=True)
    groups = list(groups_for("grains"))
    print(f"# {card.name} {card.version}: hysteresis pairs on tuning frames (seed {a.seed}, {a.per_group} × 512² per "
          f"group; native-size pass of coarse frames {'on' if card.average_native_scale else 'off'})\n")
    print("| high / low | " + " | ".join(groups) + " | worst shifted |")
    print("|---" * (len(groups) + 2) + "|")
    for (high, low), by_group in rows.items():
        vals = [by_group[g]["g_planimetric_abs_error_mean"] for g in groups]
        cells = [f"{v:.3f} (F1 {by_group[g]['boundary_f1']:.2f})" for v, g in zip(vals, groups)]
        print(f"| {high} / {low} | " + " | ".join(cells) + f" | {max(vals[1:]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
