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
from copilot.sim.standards import CLEAN, nearest_rows, rows_within, standard_frame, touching_pairs
from copilot.sim.stem import SimParams, simulate_frame

SCALES = (0.05, 0.1, 0.2, 0.5)
DISC_NM = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
ELLIPSE_NM = ((4.0, 1.6), (6.0, 1.8), (8.0, 1.5), (10.0, 2.0), (12.0, 1.7), (15.0, 1.5), (18.0, 2.0), (20.0, 1.6))
PAIRS = [(d1, d2, neck) for neck in (0.0, 0.35, 0.7) for d1, d2 in ((4.0, 4.0), (6.0, 5.0), (8.0, 8.0), (12.0, 9.0))]


def match(rows, parts, nm_per_px: float):
    return nearest_rows(rows, [(p.cx_nm, p.cy_nm) for p in parts], nm_per_px, [max(p.a_nm, 1.0) for p in parts])


def measure_frame(backend, sim, stream: str):
    fm = measure(backend.segment(Frame(sim.image, sim.nm_per_px, stream=stream, frame_id="0", origin="sim")))
    ps = fm.summary.particles
    return fm, ([] if ps is None else ps.particles)


def known_shapes(backend, seed: int = 0) -> dict:
    out: dict = {}
    for nm in SCALES:
        discs = [(d, 1.0, 0.0) for d in DISC_NM]
        sim, parts = standard_frame(discs, nm, seed)
        _, rows = measure_frame(backend, sim, f"discs-{nm}")
        got = match(rows, parts, nm)
        per = []
        for (d, _, _), q in zip(discs, got):
            per.append({"ecd_nm": d, "found": q is not None,
                        "measured_nm": None if q is None else float(q.ecd),
                        "rel_error": None if q is None else float(abs(q.ecd - d) / d)})
        singles_split = sum(rows_within(rows, (p.cx_nm, p.cy_nm), nm, p.a_nm) > 1 for p in parts)
        errs = [r["rel_error"] for r in per if r["rel_error"] is not None and r["ecd_nm"] >= 2.0]
        big = [r["rel_error"] if r["rel_error"] is not None else 1.0 for r in per if r["ecd_nm"] >= 3.0]
        small = [r for r in per if r["ecd_nm"] >= 1.5]
        ell = [(d, asp, ang) for (d, asp), ang in zip(ELLIPSE_NM, np.linspace(0, np.pi, len(ELLIPSE_NM),
                                                                                  endpoint=False))]
        sim_e, parts_e = standard_frame(ell, nm, seed + 100)
        _, rows_e = measure_frame(backend, sim_e, f"ellipses-{nm}")
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
            "single_discs_split": int(singles_split),
            "median_ecd_rel_error_2_20nm": float(np.median(errs)) if errs else None,
            "max_ecd_rel_error_ge_3nm": float(max(big)) if big else None,
            "found_ge_1p5nm_within_10pct": float(np.mean([r["found"] and r["rel_error"] <= 0.10 for r in small])),
            "ellipses": feret,
            "ellipse_feret_max_rel_error_max": float(max(fmax)) if fmax else None,
            "ellipse_feret_min_rel_error_max": float(max(fmin)) if fmin else None,
            "ellipses_found": float(np.mean([r["found"] for r in feret])),
            "pairs": touching(backend, nm, seed),
        }
    return out


def touching(backend, nm_per_px: float, seed: int = 0) -> dict:
    """Touching pairs (neck 0-70 % of the smaller diameter): split into two; single discs never split."""
    sim, pairs = touching_pairs(PAIRS, nm_per_px, seed)
    _, rows = measure_frame(backend, sim, f"pairs-{nm_per_px}")
    split = []
    for p1, p2 in pairs:
        a, b = nearest_rows(rows, [(p1.cx_nm, p1.cy_nm), (p2.cx_nm, p2.cy_nm)], nm_per_px, 0.6 * min(p1.a_nm, p2.a_nm))
        split.append(a is not None and b is not None and a is not b)
    return {"pairs": len(pairs), "split_fraction": float(np.mean(split)),
            "split_by_neck": {str(n): float(np.mean([s for s, (_, _, nk) in zip(split, PAIRS) if nk == n]))
                              for n in sorted({q[2] for q in PAIRS})}}


def sintering(backend, nm_per_px: float = 0.5, size_px: int = 1536, n: int = 12, seed: int = 0) -> dict:
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
        fm = measure(backend.segment(Frame(sim.image, nm_per_px, stream="sintering", frame_id=str(i), origin="sim")))
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


def analysis_cost(backend, sizes=(1024, 2048), nm_per_px: float = 0.2, frames: int = 5, seed: int = 0) -> dict:
    """Seconds of ``measure`` per frame (p50 over ``frames`` simulated frames), the backend's time beside it."""
    from copilot.sim.stem import random_params

    out = {}
    rng = np.random.default_rng(seed)
    for s in sizes:
        t_an, t_cpu, t_seg = [], [], []
        for i in range(frames):
            params = random_params(rng, s, (nm_per_px, nm_per_px), modality="haadf")
            sim = simulate_frame(params, rng)
            t0 = time.perf_counter()
            seg = backend.segment(Frame(sim.image, nm_per_px, stream=f"cost-{s}-{i}", frame_id="0", origin="sim"))
            t1, c1 = time.perf_counter(), time.process_time()
            measure(seg)
            t2, c2 = time.perf_counter(), time.process_time()
            t_seg.append(t1 - t0)
            t_an.append(t2 - t1)
            t_cpu.append(c2 - c1)  # CPU seconds: steadier than wall time on a shared machine
        out[str(s)] = {"analysis_s_p50": float(np.median(t_an)), "analysis_cpu_s_p50": float(np.median(t_cpu)),
                       "segment_s_p50": float(np.median(t_seg)), "frames": frames}
    return out


def _code_version() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from copilot.inference.card import load_card
    from copilot.inference.ort_backend import OrtBackend

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="particles-stem")
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("sizing.json"))
    ap.add_argument("--quick", action="store_true", help="fewer frames (a smoke run)")
    ap.add_argument("--only", choices=("shapes", "pairs", "sintering", "cost"), default=None)
    args = ap.parse_args(argv)
    card, folder = load_card(args.model)
    backend = OrtBackend(card, folder, threads=2)
    res: dict = {"model": card.name, "version": card.version, "code": _code_version()}
    if args.only in (None, "shapes"):
        res["known_shapes"] = known_shapes(backend)
    if args.only == "pairs":
        res["pairs"] = {str(nm): touching(backend, nm) for nm in SCALES}
    if args.only in (None, "sintering"):
        res["sintering"] = sintering(backend, n=5 if args.quick else 12, size_px=768 if args.quick else 1536)
    if args.only in (None, "cost"):
        res["cost"] = analysis_cost(backend, frames=2 if args.quick else 5)
    text = json.dumps(res, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
