"""Scoring the shipped models and the classical baseline on every simulated domain group.

The same simulated frames go through the learned model exactly as the daemon runs it (``OrtBackend`` →
``backend.segment`` → ``copilot.analysis.measure``) and through the classical baseline (``copilot.baseline``) at the
frame's own resolution. Objects are scored on the model's analysis grid by the shared scorer
(``copilot.train.metrics``: IoU ≥ 0.5 matcher, edge-excluded ECD); sizes and fractions are the daemon's own numbers
(measured at the frame's resolution), against the simulator's exact truth.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress
from skimage.segmentation import relabel_sequential

from common import MIN_D50_PARTICLES, OUT, _fmt, console
from copilot.analysis import measure
from copilot.baseline import classical_particles, classical_phases, particles_are_bright
from copilot.frame import Frame
from copilot.inference.preprocess import nearest_resample as nearest_to_grid
from copilot.sim.domains import groups_for, sample_domain_frame
from copilot.train.metrics import ecd_nm, object_scores, particle_ecd_errors
from figures import overlay_png, pore_class


def groups_for_task(task: str) -> tuple[list[str], str]:
    """The simulator's domain groups for ``task``."""
    return list(groups_for(task)), f"copilot.sim.domains.groups_for({task!r})"


def group_rng(seed: int, group: str) -> np.random.Generator:
    """The generator of a group's frames: the same seed gives every model (and every script) the same frames."""
    return np.random.default_rng([seed, sum(map(ord, group)), len(group)])


def sample_frame(group: str, rng: np.random.Generator, size_px: int, task: str):
    return sample_domain_frame(group, rng, size_px=size_px, task=task)


def interior_ecd_nm(labels: np.ndarray, nm_per_px: float) -> np.ndarray:
    """ECD (nm) of labelled objects not cut by the frame edge (the shared scorer's)."""
    return ecd_nm(labels, nm_per_px, exclude_edge=True)


def counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Object scores and the counts behind them (the shared scorer's)."""
    return object_scores(pred, truth)


def fg_iou(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    p, t = pred > 0, truth > 0
    return {"fg_inter": int(np.sum(p & t)), "fg_union": int(np.sum(p | t)),
            "bg_inter": int(np.sum(~p & ~t)), "bg_union": int(np.sum(~p | ~t))}


def rel_err(pred: float | None, truth: float) -> float | None:
    if pred is None or not np.isfinite(truth) or truth <= 0 or pred is None or not np.isfinite(pred):
        return None
    return float(abs(pred - truth) / truth)


def seq(labels: np.ndarray) -> np.ndarray:
    return relabel_sequential(np.asarray(labels, np.int32))[0].astype(np.int32)


REPORTED_TASKS = ("particles", "phases")  # grains and defects have their own benches (grains_model.md, defects.md)


def discover_engines(names: list[str] | None = None) -> list[str]:
    import json

    from copilot.inference.locate import ENGINES_DIR

    found = sorted(d.name for d in ENGINES_DIR.iterdir()
                   if (d / "card.json").is_file() and (d / "model.onnx").is_file()
                   and json.loads((d / "card.json").read_text()).get("task") in REPORTED_TASKS) \
        if ENGINES_DIR.is_dir() else []
    if names:
        paths = [n for n in names if (Path(n) / "card.json").is_file()]  # an engine folder outside engines/
        missing = [n for n in names if n not in found and n not in paths]
        if missing:
            console.log(f"[yellow]not shipped (skipped): {missing}; shipped: {found}")
        return [n for n in names if n in found or n in paths]
    return found


# ---------------------------------------------------------------------------------------------------------------
# particles


@dataclass
class Kept:
    """One frame kept for an overlay."""

    image: np.ndarray
    truth: np.ndarray
    model: np.ndarray
    baseline: np.ndarray
    row: dict[str, Any]



_ASSESSORS: dict[str, Any] = {}


def daemon_verdict(backend, fm) -> dict[str, Any]:
    """The daemon's own reliability verdict for this frame (ok / warn / fail, predicted F1, reasons), if the backend
    ships a reliability regressor; the rolling shift window runs per stream (= per group here), as in a session."""
    try:
        from copilot.reliability.score import Assessor

        key = f"{backend.card.name}:{backend.card.model_sha256}"
        if key not in _ASSESSORS:
            _ASSESSORS[key] = Assessor(backend.card, backend.folder)
        rel, verdict, _ = _ASSESSORS[key].assess(fm)
        return {"level": verdict.level, "reasons": list(verdict.reasons), "predicted_f1": rel.predicted_f1}
    except Exception as exc:  # noqa: BLE001 - the accuracy bench must not depend on the reliability stage
        return {"level": None, "error": f"{type(exc).__name__}: {exc}"}


def run_model(backend, sim, group: str, i: int):
    """The simulated frame through the daemon's path: (measurements, seconds it took, the daemon's verdict)."""
    frame = Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")
    t0 = time.perf_counter()
    fm = measure(backend.segment(frame))
    t_model = time.perf_counter() - t0
    return fm, t_model, daemon_verdict(backend, fm)


def eval_particle_frame(backend, sim, group: str, i: int) -> tuple[dict[str, Any], Kept]:
    fm, t_model, verdict = run_model(backend, sim, group, i)
    grid = fm.instances.shape
    truth_native = seq(sim.instances)
    truth_g = seq(nearest_to_grid(sim.instances, grid))
    t0 = time.perf_counter()
    bl = classical_particles(sim.image, sim.nm_per_px, bright_particles=None)
    t_base = time.perf_counter() - t0
    bl_g = seq(nearest_to_grid(bl, grid))
    pred = fm.instances
    ps = fm.summary.particles
    truth_d50 = float(sim.truth.get("d50_nm", float("nan")))
    n_int = sum(1 for q in sim.truth.get("particles", []) if not q.get("touches_edge"))
    bl_ecd = interior_ecd_nm(bl, sim.nm_per_px)
    truth_mask_d50_grid = interior_ecd_nm(truth_g, fm.segmentation.nm_per_px)
    params = sim.truth.get("params", {})
    row: dict[str, Any] = {
        "group": group, "i": i, "nm_per_px": float(sim.nm_per_px), "grid_shape": list(grid),
        "modality": sim.truth.get("modality", params.get("modality", "haadf")),
        "grid_nm_per_px": float(fm.segmentation.nm_per_px),
        "in_trained_range": bool(backend.card.trained_nm_per_px_range[0] * 0.999 <= sim.nm_per_px
                                 <= backend.card.trained_nm_per_px_range[1] * 1.001),
        "params": {k: params.get(k) for k in ("d50_nm", "area_fraction", "dose", "probe_blur_nm", "drift_shear",
                                               "line_jitter_px", "scanline_noise", "touching_fraction",
                                               "particle_signal", "background", "support_contrast")},
        "truth_n": int(truth_native.max(initial=0)), "truth_n_grid": int(truth_g.max(initial=0)),
        "truth_n_interior": n_int, "truth_d50_nm": truth_d50,
        "truth_mask_d50_nm_grid": float(np.median(truth_mask_d50_grid)) if truth_mask_d50_grid.size else None,
        "bright_guess": bool(particles_are_bright(sim.image)),
        "verdict": verdict,
        "model": {**counts(pred, truth_g), **fg_iou(pred, truth_g), "d50_nm": ps.d50, "count": ps.count,
                  "count_sized": ps.count_sized, "seconds": t_model},
        "baseline": {**counts(bl_g, truth_g), **fg_iou(bl_g, truth_g),
                     "d50_nm": float(np.median(bl_ecd)) if bl_ecd.size else None, "count": int(bl.max(initial=0)),
                     "count_sized": int(bl_ecd.size), "seconds": t_base,
                     "native": {k: v for k, v in counts(bl, truth_native).items()}},
    }
    for who in ("model", "baseline"):
        row[who]["d50_rel_error"] = rel_err(row[who]["d50_nm"], truth_d50) if n_int >= MIN_D50_PARTICLES else None
    table = getattr(ps, "table", None)
    if table is not None:  # per-particle ECD error of matched particles (daemon's ECD vs the exact drawn one)
        exact = {q["instance"]: q["ecd_nm"] for q in sim.truth.get("particles", []) if not q.get("touches_edge")}
        errs = particle_ecd_errors(pred, nearest_to_grid(sim.instances, grid), table.ecd, exact, ~table.sized)
        row["model"]["ecd_rel_errors"] = [round(float(e), 5) for e in errs]
    if n_int >= MIN_D50_PARTICLES and row["truth_mask_d50_nm_grid"]:
        row["model"]["d50_rel_error_vs_grid_mask"] = rel_err(ps.d50, row["truth_mask_d50_nm_grid"])
    kept = Kept(sim.image, truth_native, nearest_to_grid(pred, sim.image.shape), bl, row)
    return row, kept


def pool_particles(rows: list[dict[str, Any]], who: str) -> dict[str, Any]:
    tp = sum(r[who]["tp"] for r in rows)
    n_pred = sum(r[who]["n_pred"] for r in rows)
    n_truth = sum(r[who]["n_truth"] for r in rows)
    fi, fu = sum(r[who]["fg_inter"] for r in rows), sum(r[who]["fg_union"] for r in rows)
    bi, bu = sum(r[who]["bg_inter"] for r in rows), sum(r[who]["bg_union"] for r in rows)
    d50 = [r[who]["d50_rel_error"] for r in rows if r[who]["d50_rel_error"] is not None]
    d50_eligible = sum(1 for r in rows if r["truth_n_interior"] >= MIN_D50_PARTICLES)
    f1s = [r[who]["f1"] for r in rows]
    # 95 % interval of the pooled F1 by resampling frames (frames, not objects, are the independent units)
    rng = np.random.default_rng(0)
    arr = np.array([[r[who]["tp"], r[who]["n_pred"], r[who]["n_truth"]] for r in rows], float)
    idx = rng.integers(0, len(rows), size=(1000, len(rows)))
    sums = arr[idx].sum(axis=1)
    boot = 2 * sums[:, 0] / np.maximum(sums[:, 1] + sums[:, 2], 1)
    out = {
        "object_f1_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "object_f1": 2 * tp / max(n_pred + n_truth, 1),
        "object_precision": tp / n_pred if n_pred else 0.0,
        "object_recall": tp / n_truth if n_truth else 0.0,
        "object_f1_frame_mean": float(np.mean(f1s)),
        "object_f1_frame_p10": float(np.percentile(f1s, 10)),
        "miou_fg_bg": 0.5 * (fi / max(fu, 1) + bi / max(bu, 1)),
        "iou_fg": fi / max(fu, 1),
        "d50_rel_error_mean": float(np.mean(d50)) if d50 else None,
        "d50_rel_error_median": float(np.median(d50)) if d50 else None,
        "d50_frames": len(d50),
        "d50_frames_eligible": d50_eligible,
        "d50_frames_without_estimate": d50_eligible - len(d50),
        "tp": tp, "n_pred": n_pred, "n_truth": n_truth,
        "seconds_per_frame": float(np.mean([r[who]["seconds"] for r in rows])),
    }
    if who == "model":
        e = [x for r in rows for x in r["model"].get("ecd_rel_errors", [])]
        out["ecd_rel_error_median"] = float(np.median(e)) if e else None
        out["ecd_particles_matched"] = len(e)
        g = [r["model"]["d50_rel_error_vs_grid_mask"] for r in rows if r["model"].get("d50_rel_error_vs_grid_mask")
             is not None]
        out["d50_rel_error_vs_grid_mask_mean"] = float(np.mean(g)) if g else None
    if who == "baseline":
        tpn = sum(r[who]["native"]["tp"] for r in rows)
        npn = sum(r[who]["native"]["n_pred"] for r in rows)
        ntn = sum(r[who]["native"]["n_truth"] for r in rows)
        out["object_f1_native_grid"] = 2 * tpn / max(npn + ntn, 1)
    return out


# ---------------------------------------------------------------------------------------------------------------
# phases


def truth_classes(sim, class_names: list[str]) -> np.ndarray:
    """The simulator's class map, in the model's class order where the simulator names its classes."""
    m = None
    for a in ("classes", "class_map", "phases", "labels"):
        v = getattr(sim, a, None)
        if isinstance(v, np.ndarray) and v.ndim == 2:
            m = v
            break
    truth = getattr(sim, "truth", {}) or {}
    if m is None:
        for k in ("classes", "class_map"):
            if isinstance(truth.get(k), np.ndarray):
                m = truth[k]
                break
    if m is None:
        m = sim.instances
    m = np.asarray(m).astype(np.int32)
    names = truth.get("class_names")
    if names and set(names) <= set(class_names):
        lut = np.array([class_names.index(n) for n in names], np.int32)
        m = lut[np.clip(m, 0, len(lut) - 1)]
    return m


def baseline_phase_map(image: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    """The microscopist's classical phase map: (multi-)Otsu with as many classes as the sample has phases (known to
    whoever prepared it: "porous gold" is two), the k-th darkest level given to the phase whose true pixels are the
    k-th darkest (pores are dark in SE). The truth orients the levels and counts the phases; it never sets a
    threshold."""
    present = [c for c in range(n) if np.mean(truth == c) > 0.005]
    if len(present) < 2:
        return np.full(truth.shape, present[0] if present else 0, np.int32)
    levels = classical_phases(image, len(present))
    order = sorted(present, key=lambda c: float(image[truth == c].mean()))
    return np.asarray(order, np.int32)[levels]


def eval_phase_frame(backend, sim, group: str, i: int) -> tuple[dict[str, Any], Kept]:
    names = list(backend.card.class_names)
    n = len(names)
    fm, t_model, verdict = run_model(backend, sim, group, i)
    grid = fm.instances.shape
    truth_native = truth_classes(sim, names)
    truth_g = nearest_to_grid(truth_native, grid)
    t0 = time.perf_counter()
    bl_native = baseline_phase_map(sim.image, truth_native, n)
    t_base = time.perf_counter() - t0
    bl_g = nearest_to_grid(bl_native, grid)
    pred = fm.instances
    true_frac = np.bincount(truth_native.ravel(), minlength=n)[:n] / truth_native.size
    row: dict[str, Any] = {"group": group, "i": i, "nm_per_px": float(sim.nm_per_px), "grid_shape": list(grid),
                           "true_fractions": true_frac.tolist(), "verdict": verdict}
    daemon = None if fm.summary.phases is None else np.array([p.area_fraction for p in fm.summary.phases.phases])
    for who, lab, secs in (("model", pred, t_model), ("baseline", bl_g, t_base)):
        frac = np.bincount(lab.ravel(), minlength=n)[:n] / lab.size
        if who == "model" and daemon is not None:
            frac = daemon  # the daemon's own fractions (phase boundaries measured sub-pixel)
        inter = [int(np.sum((lab == c) & (truth_g == c))) for c in range(n)]
        union = [int(np.sum((lab == c) | (truth_g == c))) for c in range(n)]
        row[who] = {"fractions": frac.tolist(), "abs_error_pp": (100 * np.abs(frac - true_frac)).tolist(),
                    "inter": inter, "union": union, "seconds": secs}
    kept = Kept(sim.image, truth_native, nearest_to_grid(pred, sim.image.shape), bl_native, row)
    return row, kept


def pool_phases(rows: list[dict[str, Any]], who: str, names: list[str]) -> dict[str, Any]:
    n = len(names)
    inter = np.sum([r[who]["inter"] for r in rows], axis=0)
    union = np.sum([r[who]["union"] for r in rows], axis=0)
    err = np.array([r[who]["abs_error_pp"] for r in rows])
    seen = union > 0  # a class absent from truth and prediction in every frame of the group does not count
    iou = np.where(seen, inter / np.maximum(union, 1), np.nan)
    return {
        "miou": float(np.nanmean(iou)) if seen.any() else float("nan"),
        "iou_per_class": {names[c]: (float(iou[c]) if seen[c] else None) for c in range(n)},
        "fraction_error_pp_mean": {names[c]: float(err[:, c].mean()) for c in range(n)},
        "fraction_error_pp_max_class_mean": float(err.mean(axis=0).max()),
        "fraction_error_pp_p90": float(np.percentile(err.max(axis=1), 90)),
        "seconds_per_frame": float(np.mean([r[who]["seconds"] for r in rows])),
    }


# ---------------------------------------------------------------------------------------------------------------
# a model over every group


def evaluate_model(name: str, per_group: int, size_px: int, seed: int, progress: Progress) -> dict[str, Any]:
    from copilot.inference.ort_backend import OrtBackend

    backend = OrtBackend.from_name(name, threads=2)
    task = backend.card.task
    groups, how = groups_for_task(task)
    from copilot.inference.locate import ENGINES_DIR

    name_arg, name = name, backend.card.name
    if Path(backend.folder).resolve().parent != ENGINES_DIR.resolve():  # a candidate outside engines/: say which
        name = f"{backend.card.name}@{Path(backend.folder).name}"
    out: dict[str, Any] = {"model": name, "source": str(name_arg), "version": backend.card.version, "task": task,
                           "class_names": list(backend.card.class_names),
                           "working_nm_per_px": backend.card.working_nm_per_px,
                           "trained_nm_per_px_range": list(backend.card.trained_nm_per_px_range),
                           "card_metrics": backend.card.metrics, "groups_source": how, "groups": {}, "frames": []}
    if not groups:
        out["note"] = f"copilot.sim.domains offers no simulated groups for task {task!r}: nothing to score"
        console.log(f"[yellow]{name}: {out['note']}")
        return out
    # same frames for every model of the task: the seed depends on the group only
    bar = progress.add_task(f"{name}", total=per_group * len(groups))
    evaluate_frame = eval_particle_frame if task == "particles" else eval_phase_frame
    for group in groups:
        rng = group_rng(seed, group)
        rows, kept = [], []
        for i in range(per_group):
            sim = sample_frame(group, rng, size_px, task)
            row, k = evaluate_frame(backend, sim, group, i)
            rows.append(row)
            kept.append(k)
            progress.update(bar, advance=1, description=f"{name} · {group} {i + 1}/{per_group}")
        if task == "particles":
            summary = {"model": pool_particles(rows, "model"), "baseline": pool_particles(rows, "baseline")}
            key = lambda r: r["model"]["f1"]  # noqa: E731
            console.log(f"{name} · {group}: F1 model {summary['model']['object_f1']:.3f} "
                        f"baseline {summary['baseline']['object_f1']:.3f}; D50 err model "
                        f"{_fmt(summary['model']['d50_rel_error_mean'], pct=True)} baseline "
                        f"{_fmt(summary['baseline']['d50_rel_error_mean'], pct=True)}")
        else:
            names = list(backend.card.class_names)
            summary = {"model": pool_phases(rows, "model", names), "baseline": pool_phases(rows, "baseline", names)}
            key = lambda r: -max(r["model"]["abs_error_pp"])  # noqa: E731
            console.log(f"{name} · {group}: fraction error model "
                        f"{summary['model']['fraction_error_pp_max_class_mean']:.2f} pp baseline "
                        f"{summary['baseline']['fraction_error_pp_max_class_mean']:.2f} pp")
        summary["frames"] = len(rows)
        levels = [r["verdict"].get("level") for r in rows]
        summary["verdicts"] = {lv: levels.count(lv) for lv in ("ok", "warn", "fail")}
        pf = [r["verdict"].get("predicted_f1") for r in rows if r["verdict"].get("predicted_f1") is not None]
        summary["predicted_f1_mean"] = float(np.mean(pf)) if pf else None
        summary["nm_per_px_range"] = [min(r["nm_per_px"] for r in rows), max(r["nm_per_px"] for r in rows)]
        out["groups"][group] = summary
        out["frames"] += rows
        order = sorted(range(len(rows)), key=lambda j: key(rows[j]))
        for tag, j in (("worst", order[0]), ("median", order[len(order) // 2])):
            p = OUT / f"overlay_{name}_{group}_{tag}.png"
            overlay_png(p, kept[j], f"{name} on '{group}' — {tag} frame of {len(rows)} (#{j})", task,
                        pore_class(backend.card.class_names))
            summary.setdefault("overlays", {})[tag] = p.name
        del kept
    return out


def is_in_domain(group: str) -> bool:
    """``in-domain`` (or a task-prefixed ``sem-in-domain``): the training distribution itself."""
    return group == "in-domain" or group.endswith("in-domain")


def show_frames(name: str, specs: list[str], per_group: int, size_px: int, seed: int, crop: int = 192) -> None:
    """Re-simulate frames named ``GROUP:INDEX`` (same seeds as the run) and save a full overlay plus a zoom on the
    top-left ``crop`` px as ``diag_<model>_<group>_<index>.png``: the evidence behind diagnosis.md."""
    from copilot.inference.ort_backend import OrtBackend

    from copilot.inference.locate import ENGINES_DIR

    backend = OrtBackend.from_name(name, threads=2)
    task = backend.card.task
    label = backend.card.name
    if Path(backend.folder).resolve().parent != ENGINES_DIR.resolve():
        label = f"{backend.card.name}@{Path(backend.folder).name}"
    evaluate_frame = eval_particle_frame if task == "particles" else eval_phase_frame
    for spec in specs:
        group, idx = spec.rsplit(":", 1)
        rng = group_rng(seed, group)
        for i in range(int(idx) + 1):
            sim = sample_frame(group, rng, size_px, task)
        row, kept = evaluate_frame(backend, sim, group, int(idx))
        base = OUT / f"diag_{label}_{group}_{idx}"
        tint = pore_class(backend.card.class_names)
        overlay_png(base.with_suffix(".png"), kept, f"{label} on '{group}' frame #{idx}", task, tint)
        c = min(crop, kept.image.shape[0])
        zoom = Kept(kept.image[:c, :c], seq(kept.truth[:c, :c]), seq(kept.model[:c, :c]), seq(kept.baseline[:c, :c]),
                    row)
        overlay_png(base.with_name(base.name + "_zoom.png"), zoom,
                    f"{label} on '{group}' frame #{idx}: top-left {c}×{c} px (scores: whole frame)", task, tint)
        console.log(f"{spec}: {json.dumps({k: row[k] for k in ('nm_per_px', 'params', 'truth_n')}, default=str)}")
