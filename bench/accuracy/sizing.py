"""Sizes against a standard: objects of known size through the whole path (simulated frame with shot noise →
shipped model → measurement), a sintering run whose D50 grows 3 → 60 nm, and the analysis cost per frame.

    PYTHONPATH=. python bench/accuracy/sizing.py [--model particles-stem] [--json out.json] [--quick]

Only reads what every version of the analysis returns (``fm.summary.particles.particles`` rows with centroid, ECD,
Feret), so the same script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from copilot.analysis import measure
from copilot.frame import Frame
from copilot.sim.stem import Particle, SimParams, simulate_frame

SCALES = (0.05, 0.1, 0.2, 0.5)
DISC_NM = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
ELLIPSE_NM = ((4.0, 1.6), (6.0, 1.8), (8.0, 1.5), (10.0, 2.0), (12.0, 1.7), (15.0, 1.5), (18.0, 2.0), (20.0, 1.6))
CELL_NM = 32.0
CLEAN = dict(modality="haadf", dose=60.0, probe_blur_nm=0.1, line_jitter_px=0.0, scanline_noise=0.0,
             drift_shear=0.0, background=0.12, support_contrast=0.03, particle_signal=1.0, thickness_scale_nm=3.0)


def grid_frame(shapes: list[tuple[float, float, float]], nm_per_px: float, seed: int):
    """One frame holding each (ECD nm, aspect, angle) ellipse in its own CELL_NM cell; returns the SimFrame and the
    truth as (cx_nm, cy_nm, a_nm, b_nm) rows."""
    cols = int(np.ceil(np.sqrt(len(shapes))))
    rows = int(np.ceil(len(shapes) / cols))
    parts = []
    for k, (ecd, aspect, angle) in enumerate(shapes):
        r, c = divmod(k, cols)
        a, b = ecd / 2 * np.sqrt(aspect), ecd / 2 / np.sqrt(aspect)
        jitter = (np.random.default_rng(seed + k).random(2) - 0.5) * 2.0  # off the pixel grid
        parts.append(Particle((c + 0.5) * CELL_NM + jitter[0], (r + 0.5) * CELL_NM + jitter[1], a, b, angle))
    shape = (int(round(rows * CELL_NM / nm_per_px)), int(round(cols * CELL_NM / nm_per_px)))
    params = SimParams(size_px=shape, nm_per_px=nm_per_px, **CLEAN)
    return simulate_frame(params, seed, particles=parts), parts


def match(rows, parts, nm_per_px: float):
    """For each truth object, the measured particle whose centroid is nearest its centre (within its radius)."""
    found = []
    for p in parts:
        best, dist = None, np.inf
        for q in rows:
            d = np.hypot((q.centroid_x_px + 0.5) * nm_per_px - p.cx_nm, (q.centroid_y_px + 0.5) * nm_per_px - p.cy_nm)
            if d < dist:
                best, dist = q, d
        found.append(best if dist <= max(p.a_nm, 1.0) else None)
    return found


def known_shapes(engine, seed: int = 0) -> dict:
    out: dict = {}
    for nm in SCALES:
        discs = [(d, 1.0, 0.0) for d in DISC_NM]
        sim, parts = grid_frame(discs, nm, seed)
        fm = measure(engine.segment(Frame(sim.image, nm, stream=f"discs-{nm}", frame_id="0", origin="sim")))
        ps = fm.summary.particles
        rows = [] if ps is None else ps.particles
        got = match(rows, parts, nm)
        per = []
        for (d, _, _), q in zip(discs, got):
            per.append({"ecd_nm": d, "found": q is not None,
                        "measured_nm": None if q is None else float(q.ecd),
                        "rel_error": None if q is None else float(abs(q.ecd - d) / d)})
        errs = [r["rel_error"] for r in per if r["rel_error"] is not None and r["ecd_nm"] >= 2.0]
        big = [r["rel_error"] if r["rel_error"] is not None else 1.0 for r in per if r["ecd_nm"] >= 3.0]
        small = [r for r in per if r["ecd_nm"] >= 1.5]
        ell = [(d, asp, ang) for (d, asp), ang in zip(ELLIPSE_NM, np.linspace(0, np.pi, len(ELLIPSE_NM),
                                                                                  endpoint=False))]
        sim_e, parts_e = grid_frame(ell, nm, seed + 100)
        fe = measure(engine.segment(Frame(sim_e.image, nm, stream=f"ellipses-{nm}", frame_id="0", origin="sim")))
        rows_e = [] if fe.summary.particles is None else fe.summary.particles.particles
        feret = []
        for p, q in zip(parts_e, match(rows_e, parts_e, nm)):
            if q is None:
                feret.append({"a_nm": p.a_nm, "found": False})
                continue
            feret.append({"a_nm": p.a_nm, "found": True,
                          "feret_max_rel_error": float(abs(q.feret_max - 2 * p.a_nm) / (2 * p.a_nm)),
                          "feret_min_rel_error": float(abs(q.feret_min - 2 * p.b_nm) / (2 * p.b_nm))})
        fmax = [r["feret_max_rel_error"] for r in feret if r["found"]]
        fmin = [r["feret_min_rel_error"] for r in feret if r["found"]]
        out[str(nm)] = {
            "discs": per,
            "median_ecd_rel_error_2_20nm": float(np.median(errs)) if errs else None,
            "max_ecd_rel_error_ge_3nm": float(max(big)) if big else None,
            "found_ge_1p5nm_within_10pct": float(np.mean([r["found"] and r["rel_error"] <= 0.10 for r in small])),
            "ellipses": feret,
            "ellipse_feret_max_rel_error_max": float(max(fmax)) if fmax else None,
            "ellipse_feret_min_rel_error_max": float(max(fmin)) if fmin else None,
            "ellipses_found": float(np.mean([r["found"] for r in feret])),
        }
    return out


def sintering(engine, nm_per_px: float = 0.5, size_px: int = 1536, n: int = 12, seed: int = 0) -> dict:
    """Frames of one stream whose particles' median ECD grows geometrically from 3 to 60 nm (same nm/px)."""
    d50s = np.geomspace(3.0, 60.0, n)
    rows = []
    rng = np.random.default_rng(seed)
    for i, d in enumerate(d50s):
        area = 0.15
        params = SimParams(size_px=size_px, nm_per_px=nm_per_px, d50_nm=float(d), sigma_log=0.15,
                           min_diameter_nm=float(d) * 0.5, max_diameter_nm=float(d) * 2.0, area_fraction=area,
                           touching_fraction=0.0, max_aspect=1.2, min_gap_nm=max(0.5, 0.1 * d), **CLEAN)
        sim = simulate_frame(params, rng)
        fm = measure(engine.segment(Frame(sim.image, nm_per_px, stream="sintering", frame_id=str(i), origin="sim")))
        ps = fm.summary.particles
        t50 = float(sim.truth["d50_nm"])
        d50 = None if ps is None else ps.d50
        rows.append({"frame": i, "truth_d50_nm": t50, "d50_nm": d50,
                     "grid_frame_px": float(fm.segmentation.frame_px_per_px),
                     "rel_error": None if d50 is None else float(abs(d50 - t50) / t50),
                     "n_truth_interior": sum(1 for q in sim.truth["particles"] if not q["touches_edge"])})
    errs = [r["rel_error"] if r["rel_error"] is not None else 1.0 for r in rows]
    return {"nm_per_px": nm_per_px, "size_px": size_px, "frames": rows, "max_rel_error": float(max(errs)),
            "median_rel_error": float(np.median(errs)), "within_3pct": int(sum(e <= 0.03 for e in errs))}


def analysis_cost(engine, sizes=(1024, 2048), nm_per_px: float = 0.2, frames: int = 5, seed: int = 0) -> dict:
    """Seconds of ``measure`` per frame (p50 over ``frames`` simulated frames), the engine's time beside it."""
    from copilot.sim.stem import random_params

    out = {}
    rng = np.random.default_rng(seed)
    for s in sizes:
        t_an, t_seg = [], []
        for i in range(frames):
            params = random_params(rng, s, (nm_per_px, nm_per_px), modality="haadf")
            sim = simulate_frame(params, rng)
            t0 = time.perf_counter()
            seg = engine.segment(Frame(sim.image, nm_per_px, stream=f"cost-{s}-{i}", frame_id="0", origin="sim"))
            t1 = time.perf_counter()
            measure(seg)
            t2 = time.perf_counter()
            t_seg.append(t1 - t0)
            t_an.append(t2 - t1)
        out[str(s)] = {"analysis_s_p50": float(np.median(t_an)), "segment_s_p50": float(np.median(t_seg)),
                       "frames": frames}
    return out


def main(argv: list[str] | None = None) -> int:
    from copilot.inference.card import load_card
    from copilot.inference.ort_engine import OrtEngine

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="particles-stem")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="fewer frames (a smoke run)")
    ap.add_argument("--only", choices=("shapes", "sintering", "cost"), default=None)
    args = ap.parse_args(argv)
    card, folder = load_card(args.model)
    engine = OrtEngine(card, folder, threads=2)
    res: dict = {"model": card.name, "version": card.version}
    if args.only in (None, "shapes"):
        res["known_shapes"] = known_shapes(engine)
    if args.only in (None, "sintering"):
        res["sintering"] = sintering(engine, n=5 if args.quick else 12, size_px=768 if args.quick else 1536)
    if args.only in (None, "cost"):
        res["cost"] = analysis_cost(engine, frames=2 if args.quick else 5)
    text = json.dumps(res, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
