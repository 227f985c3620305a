"""Scoring against the simulator's truth, shared by training (held-out metrics), bench/accuracy and the tests: the
IoU ≥ 0.5 object matcher (:func:`match_instances`, :func:`object_scores`), equivalent diameters with objects cut by
the frame edge left out (:func:`ecd_nm`), pixel mIoU and the pooled patch metrics. No torch."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed


def instances_from_probabilities(probs: np.ndarray, min_seed_px: int = 3) -> np.ndarray:
    """Simple instance extraction: seeds = connected components of the particle class (boundary pixels separate
    touching particles), grown by watershed over the boundary probability within the foreground
    (particle + boundary). probs: (3, H, W). Returns int32 labels."""
    labels = probs.argmax(axis=0)
    fg = labels > 0
    seeds, n = ndi.label(labels == 1)
    if n == 0:
        return np.zeros(labels.shape, np.int32)
    sizes = np.bincount(seeds.ravel())
    small = sizes < min_seed_px
    small[0] = False
    if small.any():
        seeds[small[seeds]] = 0
    return watershed(probs[2], seeds, mask=fg).astype(np.int32)


def pixel_miou(pred: np.ndarray, target: np.ndarray, n_classes: int = 3) -> tuple[float, list[float]]:
    ious = []
    for c in range(n_classes):
        p, t = pred == c, target == c
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(float(np.logical_and(p, t).sum() / union))
        else:
            ious.append(float("nan"))
    return float(np.nanmean(ious)), ious


def matched_pairs(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """(k, 2) array of (pred label, truth label) pairs with IoU ≥ ``iou_threshold`` (unique when the threshold is
    at least 0.5, so no assignment step is needed)."""
    n_t = int(truth.max(initial=0))
    both = (pred > 0) & (truth > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pair = pred[both].astype(np.int64) * (n_t + 1) + truth[both]
    uniq, inter = np.unique(pair, return_counts=True)
    pa = np.bincount(pred.ravel())
    ta = np.bincount(truth.ravel(), minlength=n_t + 1)
    pi, ti = uniq // (n_t + 1), uniq % (n_t + 1)
    iou = inter / (pa[pi] + ta[ti] - inter)
    keep = iou >= iou_threshold
    return np.stack([pi[keep], ti[keep]], axis=1)


def match_instances(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, n_pred, n_truth): objects with pixels, matched at IoU ≥ ``iou_threshold``."""
    n_pred = int(np.unique(pred[pred > 0]).size)
    n_truth = int(np.unique(truth[truth > 0]).size)
    if n_pred == 0 or n_truth == 0:
        return 0, n_pred, n_truth
    pairs = matched_pairs(pred, truth, iou_threshold)
    return int(np.unique(pairs[:, 1]).size), n_pred, n_truth


def particle_ecd_errors(pred: np.ndarray, truth: np.ndarray, pred_ecd: np.ndarray, truth_ecd: dict[int, float],
                        skip_pred: np.ndarray | None = None) -> np.ndarray:
    """Relative ECD error of every matched particle: ``pred_ecd[label - 1]`` (the measurement, e.g. the daemon's
    table) against ``truth_ecd[truth label]`` (e.g. the simulator's exact diameters); predicted labels flagged in
    ``skip_pred`` (index label - 1, e.g. cut by the frame edge) and truth labels without a diameter are left out."""
    out = []
    for p, t in matched_pairs(pred, truth):
        if (skip_pred is not None and skip_pred[p - 1]) or t not in truth_ecd:
            continue
        out.append(abs(pred_ecd[p - 1] - truth_ecd[t]) / truth_ecd[t])
    return np.asarray(out, float)


def object_scores(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object precision, recall and F1 at IoU ≥ ``iou_threshold`` with the counts behind them (objects count when
    they have pixels; labels need not be sequential). Empty vs empty scores 1.

    >>> a = np.zeros((8, 8), int); a[1:4, 1:4] = 1; a[5:7, 5:7] = 2
    >>> object_scores(a, a)["f1"], object_scores(a, np.where(a == 2, 0, a))["precision"]
    (1.0, 0.5)
    """
    tp, n_pred, n_truth = match_instances(pred, truth, iou_threshold)
    if n_pred == 0 and n_truth == 0:
        return {"f1": 1.0, "precision": 1.0, "recall": 1.0, "tp": 0, "n_pred": 0, "n_truth": 0}
    return {"f1": 2 * tp / (n_pred + n_truth), "precision": tp / n_pred if n_pred else 0.0,
            "recall": tp / n_truth if n_truth else 0.0, "tp": tp, "n_pred": n_pred, "n_truth": n_truth}


def ecd_nm(labels: np.ndarray, nm_per_px: float, exclude_edge: bool = True) -> np.ndarray:
    """Equivalent circular diameters (nm) of labelled objects, optionally leaving out those cut by the edge."""
    areas = np.bincount(labels.ravel())
    ids = np.nonzero(areas)[0]
    ids = ids[ids > 0]
    if exclude_edge:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        ids = np.setdiff1d(ids, edge)
    return 2.0 * np.sqrt(areas[ids] / np.pi) * nm_per_px


def evaluate(probs_list, targets, instances_list, working_nm_per_px: float) -> dict[str, float]:
    """Pool metrics over a held-out set: mIoU (pixels pooled), object F1 (objects pooled), D50 rel. error (median
    over frames with >= 5 interior truth particles; truth ECD from the exact working-scale masks)."""
    n_classes = probs_list[0].shape[0]
    inter = np.zeros(n_classes)
    union = np.zeros(n_classes)
    tp = npred = ntrue = 0
    d50_err = []
    for probs, tgt, inst in zip(probs_list, targets, instances_list):
        lab = probs.argmax(axis=0)
        for c in range(n_classes):
            p, t = lab == c, tgt == c
            inter[c] += np.logical_and(p, t).sum()
            union[c] += np.logical_or(p, t).sum()
        pred_inst = instances_from_probabilities(probs)
        a, b, c_ = match_instances(pred_inst, inst)
        tp, npred, ntrue = tp + a, npred + b, ntrue + c_
        d_true = ecd_nm(inst, working_nm_per_px)
        d_pred = ecd_nm(pred_inst, working_nm_per_px)
        if len(d_true) >= 5 and len(d_pred) >= 1:
            t50 = float(np.median(d_true))
            d50_err.append(abs(float(np.median(d_pred)) - t50) / t50)
    iou = inter / np.maximum(union, 1)
    prec = tp / max(npred, 1)
    rec = tp / max(ntrue, 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-9)
    out = {
        "pixel_miou": float(iou.mean()),
        "object_f1_iou50": float(f1),
        "object_precision": float(prec),
        "object_recall": float(rec),
        "d50_rel_error": float(np.mean(d50_err)) if d50_err else float("nan"),
        "n_frames": float(len(targets)),
        "n_truth_objects": float(ntrue),
    }
    for c in range(n_classes):
        out[f"iou_class{c}"] = float(iou[c])
    return out
