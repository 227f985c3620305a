"""Held-out metrics per domain group, measured the way the daemon measures a frame.

Each frame of a group (``copilot.sim.domains.sample_domain_frame``) goes through ``OrtBackend.segment`` (resample to
the card's working nm/px, normalize, network, whole or tiled) and ``copilot.analysis.measure`` (instances by the
daemon's own watershed split, D50 over particles not cut by the edge; or phase fractions), and is scored against the
simulator's exact masks taken to the analysis grid (nearest neighbour at grid pixel centres).

Particles: object F1 at IoU >= 0.5 pooled over the group's objects, precision, recall, mean and median relative D50
error (daemon's D50 vs the median ECD of the drawn interior particles, frames with >= 5 of them), median
per-particle ECD error (matched particles not cut by the edge, daemon's ECD vs the drawn particle's exact ECD). Phases: pooled
per-class IoU and mIoU, the mean absolute area-fraction error per class in percentage points and the largest of those
(``fraction_error_pp_max_class_mean``).

    python -m copilot.train.heldout ENGINE_DIR_OR_NAME [--per-group 24] [--seed S] [--size 512] [--json out.json]
                                    [--update-card]

``--update-card`` writes the results into the card's metrics as ``heldout:<group>`` (model.onnx and its sha256 are
untouched), which is what the training recipes do at their end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from copilot.train.data import labels_to_grid
from copilot.train.metrics import match_instances, particle_ecd_errors

HELDOUT_SEED = 20_261_125


def particle_group_metrics(backend, group: str, n: int, seed: int, size_px: int = 512,
                           modality: str | None = None) -> dict[str, float]:
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame

    rng = np.random.default_rng(seed)
    tp = npred = ntrue = 0
    d50_err, ecd_err = [], []
    for i in range(n):
        sim = sample_domain_frame(group, rng, size_px, task="particles", modality=modality)
        fm = measure(backend.segment(Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")))
        truth = labels_to_grid(sim.instances, fm.instances.shape)
        a, b, c = match_instances(fm.instances, truth)
        tp, npred, ntrue = tp + a, npred + b, ntrue + c
        table = fm.summary.particles.table
        exact = {q["instance"]: q["ecd_nm"] for q in sim.truth["particles"] if not q["touches_edge"]}
        ecd_err.append(particle_ecd_errors(fm.instances, truth, table.ecd, exact, ~table.sized))
        t50 = sim.truth.get("d50_nm", float("nan"))
        inner = sum(1 for q in sim.truth["particles"] if not q["touches_edge"])
        p = fm.summary.particles
        if inner >= 5 and np.isfinite(t50):
            d50 = None if p is None else p.d50
            d50_err.append(abs(d50 - t50) / t50 if d50 is not None else 1.0)
    prec, rec = tp / max(npred, 1), tp / max(ntrue, 1)
    return {
        "object_f1": float(2 * tp / max(npred + ntrue, 1)),
        "precision": float(prec),
        "recall": float(rec),
        "d50_rel_error_mean": float(np.mean(d50_err)) if d50_err else float("nan"),
        "d50_rel_error_median": float(np.median(d50_err)) if d50_err else float("nan"),
        "ecd_rel_error_median": float(np.median(np.concatenate(ecd_err))) if ecd_err else float("nan"),
        "frames": float(n),
        "truth_objects": float(ntrue),
    }


def phase_truth(fm, sim) -> tuple[np.ndarray, np.ndarray]:
    """A measured phase frame against its simulated truth: the true class map on the analysis grid (the model's
    class order, nearest at grid pixel centres) and the true area fraction of each class (the exact native map's)."""
    names = list(fm.segmentation.class_names)
    lut = np.array([names.index(c) for c in sim.truth["class_names"]], np.int32)
    truth_native = lut[sim.instances]
    k = len(names)
    return (labels_to_grid(truth_native, fm.instances.shape),
            np.bincount(truth_native.ravel(), minlength=k)[:k] / truth_native.size)


def phase_group_metrics(backend, group: str, n: int, seed: int, size_px: int = 512) -> dict[str, float]:
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame

    names = list(backend.card.class_names)
    k = len(names)
    rng = np.random.default_rng(seed)
    inter, union = np.zeros(k), np.zeros(k)
    errs = []
    for i in range(n):
        sim = sample_domain_frame(group, rng, size_px, task="phases")
        fm = measure(backend.segment(Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")))
        truth, true_frac = phase_truth(fm, sim)
        pred = fm.instances
        for c in range(k):
            inter[c] += np.sum((pred == c) & (truth == c))
            union[c] += np.sum((pred == c) | (truth == c))
        pred_frac = np.array([ph.area_fraction for ph in fm.summary.phases.phases])
        errs.append(100 * np.abs(pred_frac - true_frac))
    e = np.mean(errs, axis=0)
    iou = inter / np.maximum(union, 1)
    present = union > 0
    out = {"miou": float(iou[present].mean()), "fraction_error_pp_max_class_mean": float(e.max()), "frames": float(n)}
    for c, name in enumerate(names):
        out[f"iou_{name}"] = float(iou[c]) if present[c] else float("nan")
        out[f"fraction_error_pp_{name}"] = float(e[c])
    return out


def evaluate_backend(backend, task: str, per_group: int = 24, seed: int = HELDOUT_SEED, size_px: int = 512,
                     groups: tuple[str, ...] | None = None, log=print) -> dict[str, dict[str, float]]:
    """Metrics per group (the same frames for every backend given the same seed). Particles add the in-domain group
    split by modality (``in-domain-haadf``, ``in-domain-bf-tem``)."""
    from copilot.sim.domains import groups_for

    groups = groups or groups_for(task)
    out: dict[str, dict[str, float]] = {}
    jobs: list[tuple[str, str, str | None]] = [(g, g, None) for g in groups]
    if task == "particles":
        jobs = [("in-domain-haadf", "in-domain", "haadf"), ("in-domain-bf-tem", "in-domain", "bf-tem")] + jobs
    for j, (key, group, modality) in enumerate(jobs):
        t0 = time.perf_counter()
        s = seed + 1009 * j
        if task == "particles":
            m = particle_group_metrics(backend, group, per_group, s, size_px, modality)
        elif task == "defects":
            from copilot.train.defect_scores import defect_group_metrics

            m = defect_group_metrics(backend, group, per_group, s, size_px)
        elif task == "grains":
            from copilot.train.grains_metrics import grain_group_metrics

            m = grain_group_metrics(backend, group, per_group, s, size_px)
        else:
            m = phase_group_metrics(backend, group, per_group, s, size_px)
        out[key] = m
        if log is not None:
            log(f"  {key:18s} " + " ".join(f"{k}={v:.4f}" for k, v in m.items() if k not in ("frames",))
                + f"  ({time.perf_counter() - t0:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.train.heldout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model name (engines/<name>) or folder with card.json + model.onnx")
    ap.add_argument("--per-group", type=int, default=24, help="frames per domain group")
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED, help="seed of the held-out frames")
    ap.add_argument("--size", type=int, default=512, help="frame edge in pixels")
    ap.add_argument("--json", type=Path, default=None, help="write the metrics here")
    ap.add_argument("--update-card", action="store_true", help="store the results in the card as heldout:<group>")
    a = ap.parse_args(argv)
    from copilot.inference.card import load_card, save_card
    from copilot.inference.ort_backend import OrtBackend

    card, folder = load_card(a.model)
    backend = OrtBackend(card, folder, threads=2)
    print(f"{card.name} {card.version} ({folder}): {a.per_group} frames of {a.size}² per group, seed {a.seed}")
    res = evaluate_backend(backend, card.task, a.per_group, a.seed, a.size)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    if a.update_card:
        from copilot.train.recipe import finite_metrics

        metrics = {k: v for k, v in card.metrics.items() if not k.startswith("heldout:")}
        metrics.update(finite_metrics({f"heldout:{g}": m for g, m in res.items()}))
        save_card(card.model_copy(update={"metrics": metrics}), folder)
        load_card(folder)  # still valid
        print(f"updated {folder / 'card.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
