"""The honest accuracy report: every shipped model, every simulated domain group, beside the classical baseline.

    .venv/bin/python bench/accuracy/run.py [--per-group 24] [--size 512] [--seed 20261125] [--models NAME ...]
    .venv/bin/python bench/accuracy/run.py --report-only      # rebuild report.md (+ PNGs) from results.json

For every engine under ``engines/`` (card.json + model.onnx) and every domain group the simulator offers for the
engine's task (``copilot.sim.domains``; every group except ``in-domain`` is a held-out shift), the same simulated
frames go through

* the learned model, run exactly as the daemon runs it: ``OrtEngine.from_name(name, threads=2)`` →
  ``engine.segment(frame)`` → ``copilot.analysis.measure`` (instances on the analysis grid, the card's working nm/px);
* the classical baseline (``copilot.baseline``: Otsu + distance-transform watershed; contrast guessed per frame),
  run on the frame at its own resolution, as a microscopist would run Fiji.

Both are scored against the simulator's exact masks on the model's analysis grid (``nearest_to_grid`` of the truth;
the baseline's labels are taken to the same grid the same way), so both face the same reference:

* pixel mIoU: mean of the foreground and background IoU (particles), or over all classes (phases), pooled;
* object F1 / precision / recall at IoU ≥ 0.5 (``copilot.train.reliability.object_scores`` per frame; pooled over
  the group's objects for the headline);
* per-frame D50 relative error, particles cut by the frame edge excluded on both sides: the model's D50 is the
  daemon's own ``summary.particles.d50``, the baseline's the median ECD (nm) of its interior objects at full
  resolution, the truth the simulator's median ECD of the drawn interior particles (``truth["d50_nm"]``); only frames
  with at least ``MIN_D50_PARTICLES`` interior truth particles count;
* phase models: absolute error of each class's area fraction in percentage points.

Three real instrument files (no labels) are run through the right model and the baseline; overlays are saved.
Outputs: results.json, report.md, f1_by_group_<model>.png, overlay_<model>_<group>_{median,worst}.png,
real_<name>.png — all in bench/accuracy/. ``diagnosis.md`` (hand-written after looking at the overlays) is
included in the report when present.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from skimage.segmentation import find_boundaries, relabel_sequential  # noqa: E402

from copilot.analysis import measure  # noqa: E402
from copilot.baseline import classical_particles, classical_phases, particles_are_bright  # noqa: E402
from copilot.frame import Frame  # noqa: E402
from copilot.train.reliability import nearest_to_grid, object_scores  # noqa: E402

OUT = Path(__file__).resolve().parent
RESULTS = OUT / "results.json"
REPORT = OUT / "report.md"
DIAGNOSIS = OUT / "diagnosis.md"
MIN_D50_PARTICLES = 5

# targets from the issue
TARGETS = {
    "particles_in_domain_f1": 0.95,
    "particles_in_domain_d50_rel_error": 0.03,
    "particles_shifted_f1": 0.85,
    "phases_fraction_error_pp": 1.5,
}

# real files without labels: (package, version, member, task, label, what the microscopist knows)
REAL_FILES = [
    ("hyperspy", "1.7.6", "hyperspy/tests/io/bruker_data/bcf_v2_50x50px.bcf", "particles",
     "Bruker BCF, real SEM image with bright particles", {"bright_particles": True}),
    ("hyperspy", "1.7.6", "hyperspy/tests/io/dm3_2D_data/multi_signal.dm3", "particles",
     "DigitalMicrograph DM3, real HAADF-STEM image", {"bright_particles": True}),
    ("aquami", "1.1.0", "aquami/micrographs/Sample.tif", "phases",
     "Zeiss SEM TIFF, nanoporous gold (data bar cropped by the reader)", {"n_phases": 2}),  # ligament + pore
]

console = Console(log_path=False, width=120)


# ---------------------------------------------------------------------------------------------------------------
# what exists at run time: engines and domain groups


def discover_engines(names: list[str] | None = None) -> list[str]:
    from copilot.inference.card import ENGINES_DIR

    found = sorted(d.name for d in ENGINES_DIR.iterdir()
                   if (d / "card.json").is_file() and (d / "model.onnx").is_file()) if ENGINES_DIR.is_dir() else []
    if names:
        paths = [n for n in names if (Path(n) / "card.json").is_file()]  # an engine folder outside engines/
        missing = [n for n in names if n not in found and n not in paths]
        if missing:
            console.log(f"[yellow]not shipped (skipped): {missing}; shipped: {found}")
        return [n for n in names if n in found or n in paths]
    return found


def _domains():
    import copilot.sim.domains as domains  # read at run time: whatever groups the simulator offers now

    return domains


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def frame_task(sim) -> str:
    """What a simulated frame is labelled for: its own ``truth['task']`` if it says, else phases when it carries a
    class map / phase fractions, else particles."""
    truth = getattr(sim, "truth", {}) or {}
    if truth.get("task") in ("particles", "phases"):
        return truth["task"]
    if any(k in truth for k in ("phase_fractions", "fractions", "class_names", "phases")) or any(
            getattr(sim, a, None) is not None for a in ("classes", "class_map", "phases")):
        return "phases"
    return "particles"


def groups_for_task(task: str) -> tuple[list[str], str]:
    """Domain groups for ``task`` and how they were found. Prefers an explicit API of copilot.sim.domains
    (a function taking the task, a per-task mapping or tuple); otherwise probes one small frame per group."""
    d = _domains()
    for fn_name in ("groups_for", "groups_for_task", "domain_groups", "task_groups"):
        fn = getattr(d, fn_name, None)
        if callable(fn):
            try:
                return list(fn(task)), f"copilot.sim.domains.{fn_name}({task!r})"
            except Exception:  # noqa: BLE001 - a different signature: try the next way
                pass
    for map_name in ("DOMAIN_GROUPS_BY_TASK", "GROUPS_BY_TASK", "TASK_GROUPS", "TASK_DOMAIN_GROUPS"):
        mapping = getattr(d, map_name, None)
        if isinstance(mapping, dict) and task in mapping:
            return list(mapping[task]), f"copilot.sim.domains.{map_name}[{task!r}]"
    for tuple_name in (f"{task.upper()}_GROUPS", f"{task.upper()}_DOMAIN_GROUPS",
                       f"{task.upper().rstrip('S')}_GROUPS"):
        groups = getattr(d, tuple_name, None)
        if isinstance(groups, (tuple, list)) and groups:
            return list(groups), f"copilot.sim.domains.{tuple_name}"
    # probe: one tiny frame per group, keep those labelled for this task
    keep = []
    for g in d.DOMAIN_GROUPS:
        try:
            sim = sample_frame(g, np.random.default_rng(0), 64, task)
        except Exception:  # noqa: BLE001
            continue
        if frame_task(sim) == task:
            keep.append(g)
    return keep, "probed copilot.sim.domains.DOMAIN_GROUPS (one 64² frame per group)"


def sample_frame(group: str, rng: np.random.Generator, size_px: int, task: str):
    fn = _domains().sample_domain_frame
    if _accepts(fn, "task"):
        return fn(group, rng, size_px=size_px, task=task)
    return fn(group, rng, size_px=size_px)


# ---------------------------------------------------------------------------------------------------------------
# metrics


def interior_ecd_nm(labels: np.ndarray, nm_per_px: float) -> np.ndarray:
    """ECD (nm) of labelled objects not cut by the frame edge."""
    areas = np.bincount(labels.ravel())
    ids = np.nonzero(areas)[0]
    ids = ids[ids > 0]
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ids = np.setdiff1d(ids, edge)
    return 2.0 * np.sqrt(areas[ids] / np.pi) * nm_per_px


def counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """object_scores plus the object counts behind them (labels must be sequential)."""
    s = object_scores(pred, truth)
    n_pred, n_truth = int(pred.max(initial=0)), int(truth.max(initial=0))
    tp = int(round(s["precision"] * n_pred)) if n_pred else 0
    return {**s, "tp": tp, "n_pred": n_pred, "n_truth": n_truth}


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


def daemon_verdict(engine, fm) -> dict[str, Any]:
    """The daemon's own reliability verdict for this frame (ok / warn / fail, predicted F1, reasons), if the engine
    ships a reliability regressor; the rolling shift window runs per stream (= per group here), as in a session."""
    try:
        from copilot.reliability.score import Assessor

        key = f"{engine.card.name}:{engine.card.model_sha256}"
        if key not in _ASSESSORS:
            _ASSESSORS[key] = Assessor(engine.card, engine.folder)
        rel, verdict, _ = _ASSESSORS[key].assess(fm)
        return {"level": verdict.level, "reasons": list(verdict.reasons), "predicted_f1": rel.predicted_f1}
    except Exception as exc:  # noqa: BLE001 - the accuracy bench must not depend on the reliability stage
        return {"level": None, "error": f"{type(exc).__name__}: {exc}"}


def eval_particle_frame(engine, sim, group: str, i: int) -> tuple[dict[str, Any], Kept]:
    frame = Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")
    t0 = time.perf_counter()
    fm = measure(engine.segment(frame))
    t_model = time.perf_counter() - t0
    verdict = daemon_verdict(engine, fm)
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
        "in_trained_range": bool(engine.card.trained_nm_per_px_range[0] * 0.999 <= sim.nm_per_px
                                 <= engine.card.trained_nm_per_px_range[1] * 1.001),
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


def eval_phase_frame(engine, sim, group: str, i: int) -> tuple[dict[str, Any], Kept]:
    names = list(engine.card.class_names)
    n = len(names)
    frame = Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")
    t0 = time.perf_counter()
    fm = measure(engine.segment(frame))
    t_model = time.perf_counter() - t0
    verdict = daemon_verdict(engine, fm)
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
    for who, lab, secs in (("model", pred, t_model), ("baseline", bl_g, t_base)):
        frac = np.bincount(lab.ravel(), minlength=n)[:n] / lab.size
        inter = [int(np.sum((lab == c) & (truth_g == c))) for c in range(n)]
        union = [int(np.sum((lab == c) | (truth_g == c))) for c in range(n)]
        row[who] = {"fractions": frac.tolist(), "abs_error_pp": (100 * np.abs(frac - true_frac)).tolist(),
                    "inter": inter, "union": union, "seconds": secs}
    if fm.summary.phases is not None:
        row["model"]["daemon_fractions"] = [p.area_fraction for p in fm.summary.phases.phases]
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
# figures


def stretch(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(float(hi - lo), 1e-6), 0, 1)


def outline_rgb(img: np.ndarray, labels: np.ndarray, color: tuple[float, float, float],
                tint_class: int | None = None) -> np.ndarray:
    """Grey image with the labels' outlines in ``color`` (thickened on large frames so they survive the display);
    ``tint_class``: also tint that class (phase maps: the pores)."""
    from scipy import ndimage as ndi

    g = stretch(img)
    rgb = np.stack([g, g, g], axis=-1)
    if tint_class is not None:
        sel = labels == tint_class
        rgb[sel] = 0.6 * rgb[sel] + 0.4 * np.asarray(color)
        b = find_boundaries(labels, mode="inner")
    else:
        b = find_boundaries(labels, mode="inner") & (labels > 0)
    if max(labels.shape) > 300:
        b = ndi.binary_dilation(b)
    rgb[b] = color
    return rgb


COLORS = {"truth": (0.1, 1.0, 0.1), "model": (1.0, 0.2, 0.2), "baseline": (0.2, 0.8, 1.0)}


def save_compact(fig, path: Path, dpi: int = 90) -> None:
    """Save a figure of noisy micrographs as a small PNG: 32 grey levels plus the outline colours (and their tints)
    as a fixed palette, no dithering. Noise does not compress; fewer grey levels do (~4x smaller, colours exact)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    img = Image.open(buf).convert("RGB")
    pal = [(round(255 * i / 31),) * 3 for i in range(32)]
    for c in COLORS.values():
        pal.append(tuple(round(255 * v) for v in c))
        pal += [tuple(round(255 * (0.6 * g + 0.4 * v)) for v in c) for g in np.linspace(0, 1, 8)]
    flat = [v for rgb in pal for v in rgb] + [0] * (768 - 3 * len(pal))
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat)
    img.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def pore_class(class_names) -> int:
    """The class to tint in phase overlays: the pores if the model has them, else class 0."""
    names = [str(n).lower() for n in class_names]
    return next((i for i, n in enumerate(names) if "pore" in n), 0)


def overlay_png(path: Path, kept: Kept, title: str, task: str, tint_class: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = kept.row
    if task == "particles":
        panels = [("truth (simulator)", kept.truth, COLORS["truth"], f"{r['truth_n']} particles"),
                  ("learned model", kept.model, COLORS["model"],
                   f"F1 {r['model']['f1']:.2f}  P {r['model']['precision']:.2f}  R {r['model']['recall']:.2f}"),
                  ("classical Otsu+watershed", kept.baseline, COLORS["baseline"],
                   f"F1 {r['baseline']['f1']:.2f}  P {r['baseline']['precision']:.2f}  "
                   f"R {r['baseline']['recall']:.2f}")]
    else:
        panels = [("truth (simulator)", kept.truth, COLORS["truth"], ""),
                  ("learned model", kept.model, COLORS["model"],
                   "err pp " + ", ".join(f"{e:.1f}" for e in r["model"]["abs_error_pp"])),
                  ("classical (multi-)Otsu", kept.baseline, COLORS["baseline"],
                   "err pp " + ", ".join(f"{e:.1f}" for e in r["baseline"]["abs_error_pp"]))]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.6))
    axes[0].imshow(stretch(kept.image), cmap="gray")
    mod = f"{r['modality']}, " if r.get("modality") else ""
    axes[0].set_title(f"frame ({mod}{r['nm_per_px']:.3f} nm/px, analysis grid {r['grid_shape'][0]}²)", fontsize=10)
    for ax, (name, lab, color, sub) in zip(axes[1:], panels):
        ax.imshow(outline_rgb(kept.image, lab, color, None if task == "particles" else tint_class))
        ax.set_title(f"{name}\n{sub}", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_compact(fig, path, dpi=72)
    plt.close(fig)


def bar_chart(path: Path, model: str, groups: list[str], ours: list[float], base: list[float], ylabel: str,
              targets: list[tuple[float, str]], higher_is_better: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 4), 4.2))
    b1 = ax.bar(x - 0.2, ours, 0.4, label=f"learned ({model})", color="#d62728")
    b2 = ax.bar(x + 0.2, base, 0.4, label="classical Otsu + watershed", color="#1f9ac9")
    for bars in (b1, b2):
        for rect in bars:
            ax.annotate(f"{rect.get_height():.2f}", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                        ha="center", va="bottom", fontsize=8)
    for y, lab in targets:
        ax.axhline(y, ls="--", lw=1, color="k")
        ax.text(-0.55, y, lab, ha="left", va="bottom", fontsize=8)
    ax.set_xticks(x, groups, rotation=20)
    ax.set_ylabel(ylabel)
    if higher_is_better:
        ax.set_ylim(0, 1.08)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(f"{ylabel} per domain group (in-domain vs held-out shifts)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# running


def evaluate_model(name: str, per_group: int, size_px: int, seed: int, progress: Progress) -> dict[str, Any]:
    from copilot.inference.ort_engine import OrtEngine

    engine = OrtEngine.from_name(name, threads=2)
    task = engine.card.task
    groups, how = groups_for_task(task)
    from copilot.inference.card import ENGINES_DIR

    name_arg, name = name, engine.card.name
    if Path(engine.folder).resolve().parent != ENGINES_DIR.resolve():  # a candidate outside engines/: say which
        name = f"{engine.card.name}@{Path(engine.folder).name}"
    out: dict[str, Any] = {"model": name, "source": str(name_arg), "version": engine.card.version, "task": task,
                           "class_names": list(engine.card.class_names),
                           "working_nm_per_px": engine.card.working_nm_per_px,
                           "trained_nm_per_px_range": list(engine.card.trained_nm_per_px_range),
                           "card_metrics": engine.card.metrics, "groups_source": how, "groups": {}, "frames": []}
    if not groups:
        out["note"] = f"copilot.sim.domains offers no simulated groups for task {task!r}: nothing to score"
        console.log(f"[yellow]{name}: {out['note']}")
        return out
    # same frames for every model of the task: the seed depends on the group only
    bar = progress.add_task(f"{name}", total=per_group * len(groups))
    evaluate_frame = eval_particle_frame if task == "particles" else eval_phase_frame
    for group in groups:
        rng = np.random.default_rng([seed, sum(map(ord, group)), len(group)])
        rows, kept = [], []
        for i in range(per_group):
            sim = sample_frame(group, rng, size_px, task)
            row, k = evaluate_frame(engine, sim, group, i)
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
            names = list(engine.card.class_names)
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
                        pore_class(engine.card.class_names))
            summary.setdefault("overlays", {})[tag] = p.name
        del kept
    return out


def is_in_domain(group: str) -> bool:
    """``in-domain`` (or a task-prefixed ``sem-in-domain``): the training distribution itself."""
    return group == "in-domain" or group.endswith("in-domain")


def show_frames(name: str, specs: list[str], per_group: int, size_px: int, seed: int, crop: int = 192) -> None:
    """Re-simulate frames named ``GROUP:INDEX`` (same seeds as the run) and save a full overlay plus a zoom on the
    top-left ``crop`` px as ``diag_<model>_<group>_<index>.png``: the evidence behind diagnosis.md."""
    from copilot.inference.ort_engine import OrtEngine

    from copilot.inference.card import ENGINES_DIR

    engine = OrtEngine.from_name(name, threads=2)
    task = engine.card.task
    label = engine.card.name
    if Path(engine.folder).resolve().parent != ENGINES_DIR.resolve():
        label = f"{engine.card.name}@{Path(engine.folder).name}"
    evaluate_frame = eval_particle_frame if task == "particles" else eval_phase_frame
    for spec in specs:
        group, idx = spec.rsplit(":", 1)
        rng = np.random.default_rng([seed, sum(map(ord, group)), len(group)])
        for i in range(int(idx) + 1):
            sim = sample_frame(group, rng, size_px, task)
        row, kept = evaluate_frame(engine, sim, group, int(idx))
        base = OUT / f"diag_{label}_{group}_{idx}"
        tint = pore_class(engine.card.class_names)
        overlay_png(base.with_suffix(".png"), kept, f"{label} on '{group}' frame #{idx}", task, tint)
        c = min(crop, kept.image.shape[0])
        zoom = Kept(kept.image[:c, :c], seq(kept.truth[:c, :c]), seq(kept.model[:c, :c]), seq(kept.baseline[:c, :c]),
                    row)
        overlay_png(base.with_name(base.name + "_zoom.png"), zoom,
                    f"{label} on '{group}' frame #{idx}: top-left {c}×{c} px (scores: whole frame)", task, tint)
        console.log(f"{spec}: {json.dumps({k: row[k] for k in ('nm_per_px', 'params', 'truth_n')}, default=str)}")


def _fmt(v, pct=False, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}f}"


def run_real_files(models: list[str]) -> list[dict[str, Any]]:
    from copilot.inference.ort_engine import OrtEngine
    from copilot.readers import read_frame
    from copilot.readers.vendor_samples import fetch_vendor_file

    out = []
    engines: dict[str, Any] = {}
    by_task: dict[str, list[str]] = {}
    for name in models:
        try:
            eng = OrtEngine.from_name(name, threads=2)
        except Exception as exc:  # noqa: BLE001
            console.log(f"[yellow]cannot load {name}: {exc}")
            continue
        engines[name] = eng
        by_task.setdefault(eng.card.task, []).append(name)
    preferred = {"particles": "particles-stem", "phases": "phases-sem"}
    for package, version, member, task, label, known in REAL_FILES:
        entry: dict[str, Any] = {"file": f"{package}=={version}:{member}", "label": label, "task": task}
        try:
            path = fetch_vendor_file(package, version, member)
            frame = read_frame(path, stream="real")
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {exc}"
            out.append(entry)
            continue
        entry.update(shape=list(frame.shape), nm_per_px=frame.nm_per_px, calibration=frame.calibration_source,
                     data_bar_rows=frame.meta.get("data_bar_rows"), signal=frame.meta.get("signal"))
        candidates = by_task.get(task, [])
        model = preferred[task] if preferred[task] in candidates else (candidates[0] if candidates else None)
        stem = Path(member).stem
        model_labels = None
        if model is None:
            entry["model"] = None
            entry["model_note"] = (f"no shipped engine for task {task!r} (wanted {preferred[task]}); "
                                   f"shipped: {sorted(engines)}")
        else:
            eng = engines[model]
            lo, hi = eng.card.trained_nm_per_px_range
            t0 = time.perf_counter()
            fm = measure(eng.segment(frame))
            entry["model"] = model
            entry["model_seconds"] = time.perf_counter() - t0
            entry["grid_shape"] = list(fm.instances.shape)
            entry["grid_nm_per_px"] = fm.segmentation.nm_per_px
            entry["in_trained_range"] = frame.nm_per_px is not None and lo <= frame.nm_per_px <= hi
            entry["trained_nm_per_px_range"] = [lo, hi]
            if fm.summary.particles is not None:
                p = fm.summary.particles
                entry["model_result"] = {"count": p.count, "count_edge": p.count_edge, "count_sized": p.count_sized,
                                         "d50_nm": p.d50, "ecd_mean_nm": p.ecd_mean,
                                         "length_unit": fm.summary.length_unit}
            if fm.summary.phases is not None:
                entry["model_result"] = {"fractions": {q.name: q.area_fraction for q in fm.summary.phases.phases}}
            model_labels = nearest_to_grid(fm.instances, frame.shape)
            probs = fm.segmentation.probabilities
            entry["model_mean_confidence"] = float(probs.max(axis=0).mean())
            entry["verdict"] = daemon_verdict(eng, fm)
        nm = frame.nm_per_px
        if task == "particles":
            # both particle files are known to show bright particles (SEM SE/BSE, HAADF): the microscopist sets it
            bright = particles_are_bright(frame.pixels)
            bl = classical_particles(frame.pixels, nm, bright_particles=known["bright_particles"])
            ecd = interior_ecd_nm(bl, nm if nm else 1.0)
            entry["baseline"] = {"bright_particles": known["bright_particles"], "bright_guess_auto": bright, "count": int(bl.max(initial=0)), "count_sized": int(ecd.size),
                                 "d50_nm": float(np.median(ecd)) if ecd.size else None,
                                 "ecd_mean_nm": float(ecd.mean()) if ecd.size else None,
                                 "length_unit": "nm" if nm else "px"}
        else:
            n = known["n_phases"]
            bl = classical_phases(frame.pixels, n)
            entry["baseline"] = {"n_phases": n,
                                 "fractions_dark_to_bright": (np.bincount(bl.ravel(), minlength=n)[:n] / bl.size).tolist(),
                                 "pore_fraction": float(np.mean(bl == 0))}
        png = OUT / f"real_{stem}.png"
        model_tint = pore_class(engines[model].card.class_names) if model else 0
        real_overlay_png(png, frame.pixels, model_labels, bl, entry, model_tint)
        entry["overlay"] = png.name
        out.append(entry)
        console.log(f"real {stem}: {json.dumps({k: entry.get(k) for k in ('model_result', 'baseline')}, default=str)}")
    return out


def real_overlay_png(path: Path, image: np.ndarray, model_labels, baseline, entry, model_tint: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("frame", None, None, 0)]
    if model_labels is not None:
        panels.append((f"learned: {entry['model']}", model_labels, COLORS["model"], model_tint))
    else:
        panels.append(("learned: no engine for this task", None, None, 0))
    panels.append(("classical baseline" + (" (darkest Otsu class tinted)" if entry["task"] == "phases" else ""),
                   baseline, COLORS["baseline"], 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.8))
    for ax, (name, lab, color, tint) in zip(axes, panels):
        if lab is None:
            ax.imshow(stretch(image), cmap="gray", interpolation="nearest")
        else:
            ax.imshow(outline_rgb(image, lab, color, None if entry["task"] == "particles" else tint),
                      interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
    nm = entry.get("nm_per_px")
    fig.suptitle(f"{entry['file']}  —  {entry['shape'][0]}×{entry['shape'][1]} px, "
                 f"{'%.4g nm/px' % nm if nm else 'uncalibrated'}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_compact(fig, path, dpi=72)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# report


def verdicts(model: dict[str, Any]) -> list[str]:
    """Target checks, one line each: met, or missed by how much."""
    lines = []
    g = model["groups"]
    if model["task"] == "particles":
        for group, s in g.items():
            m, b = s["model"], s["baseline"]
            if is_in_domain(group):
                f1t, d50t = TARGETS["particles_in_domain_f1"], TARGETS["particles_in_domain_d50_rel_error"]
                lines.append(_check(f"{group}: object F1 ≥ {f1t}", m["object_f1"], f1t, True))
                d = m["d50_rel_error_mean"]
                lines.append(_check(f"{group}: D50 error ≤ {100 * d50t:.0f} % (mean over frames)", d, d50t, False,
                                    pct=True))
                sel = [r for r in model["frames"] if r["group"] == group]
                mods = sorted({r.get("modality", "haadf") for r in sel})
                for mod in mods if len(mods) > 1 else []:
                    pm = pool_particles([r for r in sel if r.get("modality", "haadf") == mod], "model")
                    lines.append(_check(f"{group}, {mod} frames only: object F1 ≥ {f1t}", pm["object_f1"], f1t, True))
                    lines.append(_check(f"{group}, {mod} frames only: D50 error ≤ {100 * d50t:.0f} %",
                                        pm["d50_rel_error_mean"], d50t, False, pct=True))
            else:
                f1t = TARGETS["particles_shifted_f1"]
                lines.append(_check(f"{group}: object F1 ≥ {f1t}", m["object_f1"], f1t, True))
                lines.append(_check(f"{group}: learned beats classical (F1 {m['object_f1']:.3f} vs "
                                    f"{b['object_f1']:.3f})", m["object_f1"] - b["object_f1"], 0.0, True, strict=True))
    else:
        t = TARGETS["phases_fraction_error_pp"]
        for group, s in g.items():
            m, b = s["model"], s["baseline"]
            lines.append(_check(f"{group}: phase-fraction error ≤ {t} pp", m["fraction_error_pp_max_class_mean"], t,
                                False, unit=" pp"))
            if not is_in_domain(group):
                lines.append(_check(f"{group}: learned beats classical ({m['fraction_error_pp_max_class_mean']:.2f} "
                                    f"vs {b['fraction_error_pp_max_class_mean']:.2f} pp)",
                                    b["fraction_error_pp_max_class_mean"] - m["fraction_error_pp_max_class_mean"],
                                    0.0, True, strict=True))
    return lines


def _check(what: str, value, target: float, higher: bool, pct=False, unit="", strict=False) -> str:
    if value is None:
        return f"- ❔ {what}: no estimate"
    ok = (value > target if strict else value >= target) if higher else value <= target
    gap = abs(value - target)
    if pct:
        v, gtxt = f"{100 * value:.1f} %", f"{100 * gap:.1f} points"
    else:
        v, gtxt = f"{value:.3f}{unit}", f"{gap:.3f}{unit}"
    if strict:
        return f"- {'✅' if ok else '❌'} {what}" + ("" if ok else f" — behind by {gtxt}")
    return f"- {'✅' if ok else '❌'} {what}: {v}" + ("" if ok else f" — missed by {gtxt}")


def breakdowns(model: dict[str, Any]) -> list[str]:
    """Where the misses come from, computed from the per-frame rows (magnification split by side, etc.)."""
    rows = [r for r in model["frames"] if "truth_n" in r]
    if not rows:
        return []
    lines = ["| slice | frames | model F1 (pooled) [95 % CI over frames] | P | R | baseline F1 | model D50 err | "
             "baseline D50 err |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lo, hi = model["trained_nm_per_px_range"]

    def add(label, sel):
        if not sel:
            return
        m, b = pool_particles(sel, "model"), pool_particles(sel, "baseline")
        ci = m["object_f1_ci95"]
        lines.append(f"| {label} | {len(sel)} | {m['object_f1']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
                     f"{m['object_precision']:.3f} | "
                     f"{m['object_recall']:.3f} | {b['object_f1']:.3f} | {_fmt(m['d50_rel_error_mean'], True)} | "
                     f"{_fmt(b['d50_rel_error_mean'], True)} |")

    for group in model["groups"]:
        sel = [r for r in rows if r["group"] == group]
        mods = sorted({r.get("modality", "haadf") for r in sel})
        if len(mods) > 1:
            for mod in mods:
                add(f"{group}: {mod} frames", [r for r in sel if r.get("modality", "haadf") == mod])
        if group == "magnification":
            add("magnification: finer than trained (< %.2g nm/px)" % lo, [r for r in sel if r["nm_per_px"] < lo])
            add("magnification: coarser than trained (> %.2g nm/px)" % hi, [r for r in sel if r["nm_per_px"] > hi])
        d = [r["params"].get("d50_nm") for r in sel]
        if all(v is not None for v in d) and len(sel) >= 8:
            med = float(np.median(d))
            add(f"{group}: small particles (sim D50 < {med:.1f} nm)", [r for r in sel if r["params"]["d50_nm"] < med])
            add(f"{group}: large particles (sim D50 ≥ {med:.1f} nm)", [r for r in sel if r["params"]["d50_nm"] >= med])
        if group == "dose":
            dd = [r["params"]["dose"] for r in sel]
            med = float(np.median(dd))
            add(f"dose < {med:.1f} counts/px", [r for r in sel if r["params"]["dose"] < med])
            add(f"dose ≥ {med:.1f} counts/px", [r for r in sel if r["params"]["dose"] >= med])
        if group == "defocus":
            dd = [r["params"]["probe_blur_nm"] for r in sel]
            med = float(np.median(dd))
            add(f"probe blur < {med:.2f} nm", [r for r in sel if r["params"]["probe_blur_nm"] < med])
            add(f"probe blur ≥ {med:.2f} nm", [r for r in sel if r["params"]["probe_blur_nm"] >= med])
    return lines


def _real_verdict(e: dict[str, Any]) -> str:
    v = e.get("verdict")
    if not v or not v.get("level"):
        return "–"
    pf = v.get("predicted_f1")
    return f"**{v['level']}**" + (f" (pred. F1 {pf:.2f})" if pf is not None else "") + (
        ": " + "; ".join(v["reasons"]) if v.get("reasons") else "")


def _verdicts(s: dict[str, Any]) -> str:
    v = s.get("verdicts")
    if not v or not any(v.values()):
        return "–"
    pf = s.get("predicted_f1_mean")
    return f"{v['ok']}/{v['warn']}/{v['fail']}" + (f" ({pf:.2f})" if pf is not None else "")


def write_report(results: dict[str, Any]) -> None:
    L: list[str] = []
    L.append("# Accuracy report: learned models vs the classical baseline\n")
    L.append(f"Generated {results['generated']} by `{results['command']}` "
             f"({results['per_group']} simulated frames of {results['size_px']}² per group, seed {results['seed']}; "
             f"{results['host']}). Numbers in `results.json`; re-render with `--report-only`.\n")
    L.append("**How it is measured.** The learned model runs exactly as the daemon runs it (`OrtEngine` on the CPU, "
             "2 threads → `copilot.analysis.measure`), so its instances live on the analysis grid (the card's working "
             "nm/px). The classical baseline (`copilot.baseline`: 1-px Gaussian, global Otsu with the contrast guessed "
             "per frame, holes filled, objects < 2 nm² removed, distance-transform watershed with seeds ≥ 2 nm apart) "
             "runs on the frame at its own resolution with fixed parameters, as one would run Fiji's Analyze "
             "Particles. Both are scored against the simulator's exact masks taken to the analysis grid "
             "(`nearest_to_grid`). Object F1 = IoU ≥ 0.5 matching, pooled over the group's objects. mIoU = mean of "
             "foreground and background IoU (F1 frame mean: the per-frame F1 averaged, every frame weighing the same, where "
             "the pooled F1 lets frames with many particles dominate). D50 error = |D50 − true D50| / true D50 per frame, edge particles "
             "excluded on both sides, mean over frames with ≥ %d interior truth particles; truth = median ECD of the "
             "simulator's drawn interior particles (the physical size, not a pixel mask).\n" % MIN_D50_PARTICLES)
    for model in results["models"]:
        name = model["model"]
        L.append(f"## {name} {model['version']} ({model['task']})\n")
        L.append(f"Working scale {model['working_nm_per_px']} nm/px, trained on frames of "
                 f"{model['trained_nm_per_px_range'][0]}–{model['trained_nm_per_px_range'][1]} nm/px. "
                 f"Groups: {model['groups_source']}.\n")
        if model.get("note"):
            L.append(f"_{model['note']}_\n")
            continue
        if model["task"] == "particles":
            L.append("| group | frames | nm/px | **F1 model** [95 % CI] | F1 baseline [95 % CI] | F1 frame mean model / baseline | "
                     "P / R model | P / R baseline | "
                     "mIoU model | mIoU baseline | **D50 err model** (mean / median) | D50 err baseline (mean / median) | "
                     "daemon verdict ok/warn/fail (pred. F1) |")
            L.append("| --- | ---: | --- | ---: | ---: | --- | --- | --- | ---: | ---: | --- | --- | --- |")
            for group, s in model["groups"].items():
                m, b = s["model"], s["baseline"]
                lo, hi = s["nm_per_px_range"]
                ci, cib = m.get("object_f1_ci95"), b.get("object_f1_ci95")
                L.append(f"| {group} | {s['frames']} | {lo:.2g}–{hi:.2g} | **{m['object_f1']:.3f}**"
                         + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" | {b['object_f1']:.3f}"
                         + (f" [{cib[0]:.2f}, {cib[1]:.2f}]" if cib else "") + " | "
                         f"{m['object_f1_frame_mean']:.3f} / {b['object_f1_frame_mean']:.3f} | "
                         f"{m['object_precision']:.2f} / {m['object_recall']:.2f} | "
                         f"{b['object_precision']:.2f} / {b['object_recall']:.2f} | {m['miou_fg_bg']:.3f} | "
                         f"{b['miou_fg_bg']:.3f} | **{_fmt(m['d50_rel_error_mean'], True)}** / "
                         f"{_fmt(m['d50_rel_error_median'], True)} ({m['d50_frames']}/{m['d50_frames_eligible']}) | "
                         f"{_fmt(b['d50_rel_error_mean'], True)} / {_fmt(b['d50_rel_error_median'], True)} "
                         f"({b['d50_frames']}/{b['d50_frames_eligible']}) | {_verdicts(s)} |")
            L.append("\n(a/b after a D50 error: frames with an estimate / frames with ≥ %d interior truth particles.) "
                     "Baseline F1 scored at its own full resolution instead of the analysis grid: " % MIN_D50_PARTICLES
                     + ", ".join(f"{g} {s['baseline']['object_f1_native_grid']:.3f}"
                                 for g, s in model["groups"].items()) + ". Model D50 error against the truth mask "
                     "measured on the same grid (isolates segmentation from pixelation): "
                     + ", ".join(f"{g} {_fmt(s['model'].get('d50_rel_error_vs_grid_mask_mean'), True)}"
                                 for g, s in model["groups"].items()) + ".\n")
            L.append(f"![F1 per group](f1_by_group_{name}.png)\n")
        else:
            names = model["class_names"]
            L.append("| group | frames | mIoU model | mIoU baseline | fraction error model (pp, per class) | "
                     "fraction error baseline (pp, per class) | daemon verdict ok/warn/fail |")
            L.append("| --- | ---: | ---: | ---: | --- | --- | --- |")
            for group, s in model["groups"].items():
                m, b = s["model"], s["baseline"]
                L.append(f"| {group} | {s['frames']} | {m['miou']:.3f} | {b['miou']:.3f} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in m["fraction_error_pp_mean"].items()) + " | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in b["fraction_error_pp_mean"].items())
                         + f" | {_verdicts(s)} |")
            L.append(f"\n![fraction error per group](f1_by_group_{name}.png)\n")
            del names
        L.append("### Targets\n")
        L += verdicts(model)
        L.append("")
        bd = breakdowns(model)
        if bd:
            L.append("### Where the errors come from (slices of the same frames)\n")
            L += bd
            L.append("")
        L.append("### Example overlays (green: truth, red: learned model, blue: classical baseline)\n")
        for group, s in model["groups"].items():
            ov = s.get("overlays", {})
            L.append(f"- {group}: [median frame]({ov.get('median')}), [worst frame]({ov.get('worst')})")
        L.append("")
    for task, info in results.get("tasks_without_engine", {}).items():
        L.append(f"## Task '{task}': no shipped engine\n")
        L.append(f"The simulator offers {len(info['groups'])} '{task}' groups ({', '.join(info['groups']) or '–'}; "
                 f"{info['source']}), but no engine under `engines/` has task '{task}', so nothing is scored and "
                 f"the phase-fraction target (≤ {TARGETS['phases_fraction_error_pp']} pp) is not measured. "
                 "Rerun this benchmark once one ships; it is picked up automatically.\n")
    L.append("## Real instrument files (no labels)\n")
    L.append("| file | frame | nm/px (trained range) | model | model: count / sized / D50 / ECD mean | "
             "baseline: count / sized / D50 / ECD mean | daemon verdict | overlay |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for e in results.get("real", []):
        if "error" in e:
            L.append(f"| {e['file']} | – | – | – | {e['error']} | – | – | – |")
            continue
        nm = e.get("nm_per_px")
        rng_txt = (f"{nm:.4g} ({'in' if e.get('in_trained_range') else 'OUTSIDE'} "
                   f"{e['trained_nm_per_px_range'][0]}–{e['trained_nm_per_px_range'][1]})"
                   if nm and e.get("trained_nm_per_px_range") else (f"{nm:.4g}" if nm else "uncalibrated"))
        mr, br = e.get("model_result"), e["baseline"]
        if e["task"] == "particles":
            mtxt = (f"{mr['count']} / {mr['count_sized']} / {_fmt(mr['d50_nm'], digits=2)} nm / "
                    f"{_fmt(mr['ecd_mean_nm'], digits=2)} nm" if mr else "–")
            btxt = (f"{br['count']} / {br['count_sized']} / {_fmt(br['d50_nm'], digits=2)} nm / "
                    f"{_fmt(br['ecd_mean_nm'], digits=2)} nm")
        else:
            mtxt = (", ".join(f"{k} {100 * v:.1f} %" for k, v in mr["fractions"].items()) if mr
                    else e.get("model_note", "–"))
            btxt = f"pore (darkest Otsu class) fraction {100 * br['pore_fraction']:.1f} %"
        grid = f", grid {e['grid_shape'][0]}×{e['grid_shape'][1]}" if e.get("grid_shape") else ""
        L.append(f"| {e['label']} | {e['shape'][0]}×{e['shape'][1]}{grid} | {rng_txt} | {e.get('model') or '–'} | "
                 f"{mtxt} | {btxt} | {_real_verdict(e)} | [png]({e['overlay']}) |")
    L.append("")
    if DIAGNOSIS.is_file():
        L.append(DIAGNOSIS.read_text().strip() + "\n")
    else:
        L.append("_No diagnosis written yet (bench/accuracy/diagnosis.md)._\n")
    REPORT.write_text("\n".join(L) + "\n")


def charts(results: dict[str, Any]) -> None:
    for model in results["models"]:
        if not model["groups"]:
            continue
        groups = list(model["groups"])
        if model["task"] == "particles":
            bar_chart(OUT / f"f1_by_group_{model['model']}.png", model["model"], groups,
                      [model["groups"][g]["model"]["object_f1"] for g in groups],
                      [model["groups"][g]["baseline"]["object_f1"] for g in groups], "object F1 (IoU ≥ 0.5)",
                      [(TARGETS["particles_in_domain_f1"], "in-domain target 0.95"),
                       (TARGETS["particles_shifted_f1"], "shifted target 0.85")])
        else:
            bar_chart(OUT / f"f1_by_group_{model['model']}.png", model["model"], groups,
                      [model["groups"][g]["model"]["fraction_error_pp_max_class_mean"] for g in groups],
                      [model["groups"][g]["baseline"]["fraction_error_pp_max_class_mean"] for g in groups],
                      "phase-fraction error (pp)", [(TARGETS["phases_fraction_error_pp"], "target 1.5 pp")],
                      higher_is_better=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/accuracy/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-group", type=int, default=24, help="simulated frames per domain group (default 24)")
    ap.add_argument("--size", type=int, default=512, help="frame edge in pixels (default 512)")
    ap.add_argument("--seed", type=int, default=20261125, help="the same seed gives the same frames per group")
    ap.add_argument("--models", nargs="*",
                    help="engine names or engine folders (default: every engine under engines/)")
    ap.add_argument("--no-real", action="store_true", help="skip the real vendor files")
    ap.add_argument("--report-only", action="store_true", help="rebuild report.md and charts from results.json")
    ap.add_argument("--show", nargs="+", metavar="GROUP:INDEX",
                    help="re-simulate these frames of the first model and save diag_*.png overlays (full + zoom)")
    args = ap.parse_args(argv)
    if args.show:
        show_frames((args.models or discover_engines())[0], args.show, args.per_group, args.size, args.seed)
        return 0
    if args.report_only:
        results = json.loads(RESULTS.read_text())
        for model in results["models"]:  # pooled numbers are recomputed from the per-frame rows
            for group, summary in model["groups"].items():
                rows = [r for r in model["frames"] if r["group"] == group]
                if model["task"] == "particles" and rows:
                    summary["model"], summary["baseline"] = pool_particles(rows, "model"), pool_particles(rows, "baseline")
        charts(results)
        write_report(results)
        console.log(f"wrote {REPORT}")
        return 0
    models = discover_engines(args.models)
    if not models:
        console.log("[red]no shipped engines (engines/<name>/card.json + model.onnx)")
        return 1
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/accuracy/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "per_group": args.per_group, "size_px": args.size, "seed": args.seed,
        "host": f"{platform.machine()}, {platform.python_version()}, onnxruntime CPU 2 threads",
        "domain_groups_available": list(_domains().DOMAIN_GROUPS),
        "min_d50_particles": MIN_D50_PARTICLES, "targets": TARGETS, "models": [], "real": [],
    }
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        for name in models:
            results["models"].append(evaluate_model(name, args.per_group, args.size, args.seed, progress))
            RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    tasks_scored = {m["task"] for m in results["models"]}
    for task in getattr(_domains(), "TASKS", ("particles", "phases")):
        if task not in tasks_scored:
            try:
                groups, how = groups_for_task(task)
            except Exception as exc:  # noqa: BLE001
                groups, how = [], f"{type(exc).__name__}: {exc}"
            results.setdefault("tasks_without_engine", {})[task] = {"groups": groups, "source": how}
    if not args.no_real:
        results["real"] = run_real_files(models)
    results["seconds"] = time.perf_counter() - t0
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    charts(results)
    write_report(results)
    console.log(f"wrote {RESULTS}, {REPORT} and PNGs in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
