"""Scoring a defects frame against the simulator's truth (``copilot.sim.irradiation``), shared by the held-out
metrics, bench/accuracy/defects and the reliability recipe. No torch.

Per class, objects are matched at IoU ≥ 0.5 (``copilot.train.metrics.matched_pairs``) on the analysis grid. With a
size floor ``min_nm`` (e.g. cavities ≥ 3 nm) the truth keeps its defects of at least that diameter, and the
prediction drops its objects matched to a smaller true defect and its unmatched objects measured below the floor:
so the score neither rewards nor punishes what is below the floor.
"""

from __future__ import annotations

import numpy as np

from copilot.sim.irradiation import CLASS_NAMES
from copilot.train.data import labels_to_grid
from copilot.train.metrics import matched_pairs

# class → diameter floors reported (nm); the first is the target's
FLOORS_NM = {"cavity": (3.0, 0.0), "loop": (5.0, 0.0)}


def truth_tables(sim, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth instances on a ``shape`` grid, class index per label (index = label), diameter per label)."""
    grid = labels_to_grid(sim.instances, shape)
    n = int(sim.instances.max(initial=0))
    cls = np.zeros(n + 1, np.int32)
    dia = np.zeros(n + 1)
    for row in sim.truth["defects"]:
        cls[row["instance"]] = CLASS_NAMES.index(row["class"])
        dia[row["instance"]] = row["diameter_nm"]
    return grid, cls, dia


def class_counts(pred: np.ndarray, pred_cls: np.ndarray, pred_d: np.ndarray, truth: np.ndarray,
                 truth_cls: np.ndarray, truth_d: np.ndarray, c_pred: int, c_truth: int,
                 min_nm: float = 0.0) -> tuple[int, int, int]:
    """(true positives, predictions, truths) of one class above the floor (see the module doc): ``c_pred`` its index
    in the model's classes, ``c_truth`` in the simulator's.

    ``pred_cls``/``pred_d``: per predicted label - 1; ``truth_cls``/``truth_d``: indexed by truth label."""
    lut_p = np.zeros(pred_cls.size + 1, bool)
    lut_p[1:] = pred_cls == c_pred
    p = np.where(lut_p[pred], pred, 0)
    t = np.where(truth_cls[truth] == c_truth, truth, 0)
    pairs = matched_pairs(p, t)
    p_ids = np.unique(p[p > 0])
    t_ids = np.unique(t[t > 0])
    t_keep = t_ids[truth_d[t_ids] >= min_nm]
    matched_to = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    n_pred = 0
    for i in p_ids.tolist():
        j = matched_to.get(i)
        if (j is not None and truth_d[j] >= min_nm) or (j is None and pred_d[i - 1] >= min_nm):
            n_pred += 1
    tp = int(sum(1 for i, j in matched_to.items() if truth_d[j] >= min_nm))
    return tp, n_pred, int(t_keep.size)


def frame_scores(fm, sim) -> dict[str, float]:
    """One frame: per class and floor ``{class}_{tp,pred,truth}[_{floor}nm]`` counts, and the swelling pair."""
    d = fm.summary.defects
    truth, tcls, tdia = truth_tables(sim, fm.instances.shape)
    names = tuple(fm.segmentation.class_names)
    out: dict[str, float] = {}
    for name, floors in FLOORS_NM.items():
        for floor in floors:
            key = name if floor == 0 else f"{name}_{floor:g}nm"
            tp, n_p, n_t = class_counts(fm.instances, d.instance_classes, d.instance_diameters, truth, tcls, tdia,
                                        names.index(name), CLASS_NAMES.index(name), floor)
            out.update({f"{key}_tp": tp, f"{key}_pred": n_p, f"{key}_truth": n_t})
    out["swelling_true"] = float(sim.truth["swelling"])
    out["swelling_pred"] = float("nan") if d.swelling is None else float(d.swelling)
    return out


def f1(tp: float, n_pred: float, n_truth: float) -> float:
    """2 tp / (pred + truth); 1 when both are empty."""
    return 1.0 if n_pred + n_truth == 0 else 2.0 * tp / (n_pred + n_truth)


def pooled(rows: list[dict[str, float]]) -> dict[str, float]:
    """Object F1 / precision / recall pooled over frames per class and floor; swelling relative errors (frames whose
    true swelling is above 1e-5)."""
    out: dict[str, float] = {}
    keys = sorted({k[:-3] for k in rows[0] if k.endswith("_tp")}) if rows else []
    for key in keys:
        tp = sum(r[f"{key}_tp"] for r in rows)
        n_p = sum(r[f"{key}_pred"] for r in rows)
        n_t = sum(r[f"{key}_truth"] for r in rows)
        out[f"{key}_f1"] = f1(tp, n_p, n_t)
        out[f"{key}_precision"] = tp / n_p if n_p else float("nan")
        out[f"{key}_recall"] = tp / n_t if n_t else float("nan")
        out[f"{key}_truth_objects"] = float(n_t)
    err = [abs(r["swelling_pred"] - r["swelling_true"]) / r["swelling_true"] for r in rows
           if r["swelling_true"] > 1e-5 and np.isfinite(r["swelling_pred"])]
    signed = [(r["swelling_pred"] - r["swelling_true"]) / r["swelling_true"] for r in rows
              if r["swelling_true"] > 1e-5 and np.isfinite(r["swelling_pred"])]
    if err:
        out["swelling_rel_error_median"] = float(np.median(err))
        out["swelling_rel_error_mean"] = float(np.mean(err))
        out["swelling_rel_bias_mean"] = float(np.mean(signed))
        out["swelling_pooled_ratio"] = float(sum(r["swelling_pred"] for r in rows if r["swelling_true"] > 1e-5
                                                 and np.isfinite(r["swelling_pred"]))
                                             / sum(r["swelling_true"] for r in rows if r["swelling_true"] > 1e-5
                                                   and np.isfinite(r["swelling_pred"])))
    out["frames"] = float(len(rows))
    return out


def defect_group_metrics(backend, group: str, n: int, seed: int, size_px: int = 512) -> dict[str, float]:
    """Held-out metrics of one domain group through the daemon's path (backend.segment + analysis.measure); the
    frame's metadata carries the foil thickness, as a microscope's would."""
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sim = sample_domain_frame(group, rng, size_px, task="defects")
        frame = Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim",
                      meta={"foil_thickness_nm": sim.truth["foil_thickness_nm"]})
        rows.append(frame_scores(measure(backend.segment(frame)), sim))
    return pooled(rows)
