"""How visible are the cavities defects-tem misses? The ideal observer's detectability d' of every cavity ≥ 3 nm.

    python bench/accuracy/defects_visibility.py [--per-group 40] [--groups in-domain,thickness,...]

The card's held-out frames of each group (``copilot.train.heldout``: same seeds) are simulated again; for each interior
cavity ≥ 3 nm the cavity's own signal is rendered alone (``copilot.sim.irradiation``: mass-thickness plus Fresnel
contrast, probe blur) and scaled by the local background in detector counts, and its detectability is that of an
observer who knows the exact signal and where it is (matched filter, Poisson noise plus read noise):
d'² = Σ (L·s)² / (L + σ_read²), with L the local background counts and s the relative signal per pixel. That is an
upper bound: an observer (or a network) searching a frame for objects of unknown position needs d' of about 5 (the
Rose criterion). Each cavity is marked found when the shipped model's analysis matches it at IoU ≥ 0.5
(``copilot.train.defect_scores``). Writes defects_visibility.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
BINS = (0.0, 3.0, 5.0, 8.0, 15.0, np.inf)
ROSE = 5.0


def cavity_dprimes(sim) -> list[tuple[int, float, float]]:
    """(instance, diameter nm, d') of each interior cavity ≥ 3 nm of a simulated foil (module doc)."""
    from copilot.sim.irradiation import CAVITY, Defect, FoilParams, _fresnel, render_defects

    pr = dict(sim.truth["params"])
    if isinstance(pr.get("size_px"), list):
        pr["size_px"] = tuple(pr["size_px"])
    p = FoilParams(**pr)
    counts = (sim.image.astype(np.float32) - p.offset) / (p.gain * 200.0 / max(p.dose, 1.0))
    level = ndi.median_filter(counts[::4, ::4], size=9)  # background counts, local (cavities are a small share)
    blur = p.blur_nm / p.nm_per_px
    out = []
    for row in sim.truth["defects"]:
        if row["class"] != "cavity" or row["diameter_nm"] < 3 or row["touches_edge"]:
            continue
        d = Defect(CAVITY, row["cx_nm"], row["cy_nm"], row["a_nm"], row["b_nm"], row["angle"], row["facets"])
        cav, _, _, _ = render_defects([d], p)
        s = p.mass_contrast * cav + _fresnel(cav, p)
        if blur > 0.25:
            s = ndi.gaussian_filter(s, blur, truncate=3.0)
        r = min(int(row["cy_nm"] / p.nm_per_px) // 4, level.shape[0] - 1)
        c = min(int(row["cx_nm"] / p.nm_per_px) // 4, level.shape[1] - 1)
        L = max(float(level[r, c]), 1.0)
        out.append((row["instance"], row["diameter_nm"], float(np.sqrt(np.sum((L * s) ** 2) / (L + p.read_noise**2)))))
    return out


def group_rows(backend, group: str, n: int, seed: int) -> list[dict]:
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame
    from copilot.sim.irradiation import CLASS_NAMES
    from copilot.train.defect_scores import truth_tables
    from copilot.train.metrics import matched_pairs

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sim = sample_domain_frame(group, rng, 512, task="defects")
        frame = Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim",
                      meta={"foil_thickness_nm": sim.truth["foil_thickness_nm"]})
        fm = measure(backend.segment(frame))
        d = fm.summary.defects
        truth, tcls, _ = truth_tables(sim, fm.instances.shape)
        names = tuple(fm.segmentation.class_names)
        lut = np.zeros(d.instance_classes.size + 1, bool)
        lut[1:] = d.instance_classes == names.index("cavity")
        pred = np.where(lut[fm.instances], fm.instances, 0)
        true = np.where(tcls[truth] == CLASS_NAMES.index("cavity"), truth, 0)
        found = set(matched_pairs(pred, true)[:, 1].tolist())
        rows += [{"frame": i, "diameter_nm": dia, "dprime": dp, "found": inst in found}
                 for inst, dia, dp in cavity_dprimes(sim)]
    return rows


def summary(rows: list[dict], noun: str = "cavities") -> dict:
    """The rows' d' bins (share, and recall in each), recall, and the misses below d' 5 (Rose) and 8; the count
    under ``noun``."""
    dp = np.array([r["dprime"] for r in rows])
    found = np.array([r["found"] for r in rows], bool)
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        s = (dp >= lo) & (dp < hi)
        bins.append({"lo": lo, "hi": hi, "n": int(s.sum()), "share": float(s.mean()) if dp.size else 0.0,
                     "recall": float(found[s].mean()) if s.any() else None})
    return {noun: int(dp.size), "recall": float(found.mean()) if dp.size else None,
            "below_rose": float(np.mean(dp < ROSE)) if dp.size else None,
            "recall_above_rose": float(found[dp >= ROSE].mean()) if np.any(dp >= ROSE) else None,
            "missed": int((~found).sum()), "missed_below_rose": int(np.sum(~found & (dp < ROSE))),
            "missed_below_8": int(np.sum(~found & (dp < 8.0))), "bins": bins}


def bin_header() -> str:
    return " | ".join(f"d' {lo:g}–{hi:g}" if np.isfinite(hi) else f"d' ≥ {lo:g}" for lo, hi in zip(BINS[:-1], BINS[1:]))


def bin_cells(s: dict) -> str:
    """A summary's bins as table cells: share · recall."""
    return " | ".join(f"{b['share']:.0%} · {b['recall']:.2f}" if b["recall"] is not None else f"{b['share']:.0%} · –"
                      for b in s["bins"])


def report(groups: dict[str, dict], source: str) -> str:
    head = bin_header()
    lines = ["# Which cavities can be seen at all: detectability of the cavities defects-tem misses", "",
             f"{source}. Per cell: share of the group's interior cavities ≥ 3 nm in that d' bin, and the shipped "
             "model's recall there (IoU ≥ 0.5). d' is the ideal observer's (exact signal, known position; see the "
             "script's docstring); a search needs about 5 (Rose). Regenerate: "
             "`python bench/accuracy/defects_visibility.py`.", "",
             f"| group | cavities | recall | share below d' 5 | recall at d' ≥ 5 | {head} |",
             "|---|---|---|---|---|" + "---|" * (len(BINS) - 1)]
    for g, s in groups.items():
        lines.append(f"| {g} | {s['cavities']} | {s['recall']:.3f} | {s['below_rose']:.0%} | "
                     f"{s['recall_above_rose']:.3f} | {bin_cells(s)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from copilot.inference.ort_backend import OrtBackend
    from copilot.sim.domains import groups_for
    from copilot.train.heldout import HELDOUT_SEED

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="defects-tem")
    ap.add_argument("--per-group", type=int, default=40)
    ap.add_argument("--groups", default=None, help="comma-separated (default: every defects group)")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
    backend = OrtBackend.from_name(a.model, threads=2)
    every = list(groups_for("defects"))
    chosen = a.groups.split(",") if a.groups else every
    groups = {}
    for g in chosen:  # the card's held-out frames: copilot.train.heldout's seed for the group
        groups[g] = summary(group_rows(backend, g, a.per_group, HELDOUT_SEED + 1009 * every.index(g)))
        print(f"{g}: {groups[g]['cavities']} cavities, recall {groups[g]['recall']:.3f}, below d' 5: "
              f"{groups[g]['below_rose']:.0%}, recall at d' >= 5: {groups[g]['recall_above_rose']:.3f}")
    source = (f"{backend.card.name} {backend.card.version}, {a.per_group} held-out frames of 512² per group "
              f"(seed {HELDOUT_SEED}, as the card)")
    (a.out / "defects_visibility.md").write_text(report(groups, source))
    (a.out / "defects_visibility.json").write_text(json.dumps({"source": source, "groups": groups}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
