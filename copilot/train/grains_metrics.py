"""Grains metrics: boundary F1 with a distance tolerance, and ASTM E112 G errors, measured the daemon's way.

Boundary F1 (as for contour detection, BSDS-style): predicted and true boundaries are thinned to 1-px centre lines;
precision = share of predicted centre-line pixels within ``tol_px`` of a true one, recall = share of true centre-line
pixels within ``tol_px`` of a predicted one, pooled over a group's frames. Truth: where the simulator's grain ids
change, on the analysis grid (nearest neighbour at grid pixel centres).

G errors: the daemon's planimetric G (``measure`` of ``backend.segment``) minus the simulator's realized seed density
G, and the intercept G minus E112's intercept G of the true mean intercept (for 2-D Voronoi they differ; see
``bench/accuracy/grains.md``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from copilot.analysis.phases import boundary_pixels as label_edges  # pixels with a 4-neighbour of another label
from copilot.train.data import labels_to_grid

TOLERANCE_PX = 2.0


def boundary_match(pred: np.ndarray, truth_labels: np.ndarray, tol_px: float = TOLERANCE_PX) -> tuple[int, int, int, int]:
    """(predicted centre-line pixels near a true one, predicted ones, true near a predicted one, true ones).

    >>> lab = np.repeat([[1] * 8 + [2] * 8], 16, axis=0)
    >>> pred = np.zeros((16, 16), bool); pred[:, 8] = True
    >>> m = boundary_match(pred, lab); m[0] == m[1] and m[2] == m[3]
    True
    """
    p = skeletonize(np.asarray(pred, bool))
    t = skeletonize(label_edges(truth_labels))
    if not p.any() or not t.any():
        return 0, int(p.sum()), 0, int(t.sum())
    dt = ndi.distance_transform_edt(~t)
    dp = ndi.distance_transform_edt(~p)
    return int((dt[p] <= tol_px).sum()), int(p.sum()), int((dp[t] <= tol_px).sum()), int(t.sum())


def f1_from(counts: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) from summed ``boundary_match`` counts."""
    tp_p, n_p, tp_t, n_t = (float(v) for v in counts)
    prec, rec = tp_p / max(n_p, 1), tp_t / max(n_t, 1)
    return prec, rec, 2 * prec * rec / max(prec + rec, 1e-12)


def grain_frame_errors(fm, sim) -> dict[str, float]:
    """One frame: boundary counts and G errors of the daemon's measurements ``fm`` against the simulator's truth."""
    truth = labels_to_grid(sim.instances, fm.instances.shape)
    tp_p, n_p, tp_t, n_t = boundary_match(fm.boundaries, truth)
    g = fm.summary.grains
    dgp = g.g_planimetric - sim.truth["g"] if g.g_planimetric is not None else np.nan
    dgi = g.g_intercept - sim.truth["g_intercept"] if g.g_intercept is not None else np.nan
    covered = g.g_planimetric_ci is not None and g.g_planimetric_ci.low <= sim.truth["g"] <= g.g_planimetric_ci.high
    return {"tp_pred": tp_p, "n_pred": n_p, "tp_true": tp_t, "n_true": n_t, "dg_planimetric": dgp,
            "dg_intercept": dgi, "ci_covers": float(covered)}


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Pooled boundary F1 and G error statistics of a group's frames."""
    counts = np.array([[r["tp_pred"], r["n_pred"], r["tp_true"], r["n_true"]] for r in rows]).sum(axis=0)
    prec, rec, f1 = f1_from(counts)
    dp = np.array([r["dg_planimetric"] for r in rows])
    di = np.array([r["dg_intercept"] for r in rows])
    ok = np.isfinite(dp)
    dpa, dia = np.abs(dp[ok]), np.abs(di[np.isfinite(di)])
    nan = float("nan")
    return {
        "boundary_f1": f1, "boundary_precision": prec, "boundary_recall": rec,
        "g_planimetric_error_mean": float(dp[ok].mean()) if ok.any() else nan,
        "g_planimetric_abs_error_mean": float(dpa.mean()) if ok.any() else nan,
        "g_planimetric_abs_error_p90": float(np.percentile(dpa, 90)) if ok.any() else nan,
        "g_planimetric_abs_error_max": float(dpa.max()) if ok.any() else nan,
        "g_within_0.25": float((dpa <= 0.25).sum() / len(rows)),
        "g_within_0.5": float((dpa <= 0.5).sum() / len(rows)),
        "g_intercept_error_mean": float(di[np.isfinite(di)].mean()) if dia.size else nan,
        "g_intercept_abs_error_mean": float(dia.mean()) if dia.size else nan,
        "g_ci_coverage": float(np.mean([r["ci_covers"] for r in rows])),
        "frames": float(len(rows)),
    }


def grain_group_metrics(backend, group: str, n: int, seed: int, size_px: int = 512) -> dict[str, float]:
    """``n`` frames of ``group`` through ``backend.segment`` + ``copilot.analysis.measure``, scored."""
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.sim.domains import sample_domain_frame

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sim = sample_domain_frame(group, rng, size_px, task="grains")
        fm = measure(backend.segment(Frame(sim.image, sim.nm_per_px, stream=group, frame_id=str(i), origin="sim")))
        rows.append(grain_frame_errors(fm, sim))
    return summarize(rows)
