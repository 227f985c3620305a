"""Label-free checks that decide whether an adapted model replaces its parent.

Both models see the same target frames through the daemon's own path (backend, analysis, reliability). The adapted
model is promoted only if every check passes:

* ``predicted_f1``: the reliability regressor's mean predicted F1 is up by more than ``min_f1_gain`` (0.03: in the
  adaptation bench, predicted rises below that came with true changes anywhere from −0.008 to +0.116, so they say
  nothing; the promoted models that gained 0.03 or more had been predicted +0.08 to +0.16); a model whose card has
  no regressor, or one whose regressor predicts F1 on domains it never saw only to more than ``max_regressor_mae``
  (its leave-one-domain-out MAE, ``reliability.json``), is never promoted automatically (nothing label-free says it
  got better: phases-sem's regressor, MAE 0.11, rated a self-trained model up whose phase-fraction error rose
  19.8 → 30.9 pp);
* ``shift``: the frames' mean shift score against each model's own reference, in units of that reference's own
  typical score (median over its samples), is not up (the adapted reference is what it learnt from);
* ``view_agreement``: its labels agree with those of a rotated and mirrored copy of the frame (mean IoU over the
  non-background classes) at least as well as the parent's (within ``view_tolerance``);
* ``confident_agreement``: where the parent is sure of a pixel (confidence ≥ 0.9) the adapted model mostly agrees;
* ``no_collapse``: on the frames the parent is most confident about, the object count (particles) and the
  non-background area fraction do not drift from the parent's beyond the limits;
* ``sizes_kept`` (particles): on those frames, the particles both models find (matched at IoU ≥ 0.5, not cut by
  the frame edge) keep their size: the median of adapted ECD / parent ECD is within ``d50_drift`` of 1. Sizes the
  parent measured with confidence are what a microscopist checks against a standard; self-trained models can grow
  every outline a little. Matched particles, not the frame's D50: a model that stops finding noise specks, or finds
  the small particles the parent missed, changes the D50 without changing any outline (on a low-dose stream the
  frames' D50 went ×1.18 while F1 rose 0.33 → 0.90). The D50 ratio is recorded beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from copilot.frame import Frame


@dataclass(frozen=True)
class CheckLimits:
    min_f1_gain: float = 0.03
    max_regressor_mae: float = 0.1
    view_tolerance: float = 0.02
    min_confident_agreement: float = 0.85
    count_ratio: tuple[float, float] = (0.67, 1.5)
    area_ratio: tuple[float, float] = (0.67, 1.5)
    d50_drift: float = 0.03
    view_frames: int = 6


@dataclass
class ModelReport:
    """One model on the target frames (means over frames)."""

    predicted_f1: float | None
    shift: float | None
    view_agreement: float
    counts: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    d50s: list[float] = field(default_factory=list)  # particles: each frame's D50 (NaN where none was measured)
    # per frame: its instance labels and the ECD of label k at [k - 1] (NaN where cut by the edge); None without a
    # particle summary (phases)
    outlines: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)
    image_confidence: list[float] = field(default_factory=list)


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    checks: dict[str, bool]
    parent: dict
    adapted: dict

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reasons": self.reasons, "checks": self.checks, "parent": self.parent,
                "adapted": self.adapted}


def _class_iou(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    ious = []
    for c in range(1, n_classes):
        union = np.count_nonzero((a == c) | (b == c))
        if union:
            ious.append(np.count_nonzero((a == c) & (b == c)) / union)
    return float(np.mean(ious)) if ious else 1.0


def _to_shape(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from copilot.train.data import labels_to_grid

    return labels if labels.shape == shape else labels_to_grid(labels, shape)


def _view_agreement(backend, frame: Frame, labels: np.ndarray, n_classes: int) -> float:
    """IoU between the labels of the frame and those of its transposed copy, taken back."""
    from dataclasses import replace

    view = replace(frame, pixels=np.ascontiguousarray(frame.pixels.T))
    back = backend.segment(view).maps.labels.T
    return _class_iou(labels, _to_shape(back, labels.shape), n_classes)


def survey(backend, assessor, frames: list[Frame], limits: CheckLimits) -> tuple[ModelReport, list]:
    """Run one model over the frames; returns its report and each frame's (labels, confidence) for comparison."""
    from copilot.analysis import measure

    n_classes = len(backend.card.class_names)
    f1, shift, views, maps = [], [], [], []
    rep = ModelReport(None, None, 0.0)
    for i, frame in enumerate(frames):
        fm = measure(backend.segment(frame))
        r = assessor.frame(fm)
        if r.predicted_f1 is not None:
            f1.append(r.predicted_f1)
        if r.shift_score is not None:
            shift.append(r.shift_score)
        labels = fm.segmentation.maps.labels
        maps.append((labels, fm.segmentation.maps.confidence))
        ps = fm.summary.particles
        rep.counts.append(float(fm.instances.max(initial=0)) if ps is not None else 0.0)
        rep.areas.append(float(np.count_nonzero(labels > 0) / labels.size))
        rep.d50s.append(float(ps.d50) if ps is not None and ps.d50 is not None else float("nan"))
        rep.outlines.append(None if ps is None else (fm.instances, np.where(ps.table.touches_edge, np.nan,
                                                                             ps.table.ecd)))
        rep.image_confidence.append(float(r.image_confidence or 0.0))
        if i < limits.view_frames:
            views.append(_view_agreement(backend, frame, labels, n_classes))
    rep.predicted_f1 = float(np.mean(f1)) if f1 else None
    typical = _typical_shift(assessor)
    rep.shift = float(np.mean(shift)) / typical if shift and typical else None
    rep.view_agreement = float(np.mean(views)) if views else 1.0
    return rep, maps


def _typical_shift(assessor) -> float | None:
    """Median shift score of the reference's own samples: the scale a frame's shift score is read against."""
    ref = assessor.reference
    if ref is None or not ref.ref.samples:
        return None
    return float(np.median([ref.distance(np.asarray(s)) for s in ref.ref.samples])) or None


def _d50_ratio(adapted: np.ndarray, parent: np.ndarray) -> float | None:
    """Mean D50 of the adapted model over that of the parent, on the frames where both measured one."""
    both = np.isfinite(adapted) & np.isfinite(parent) & (parent > 0)
    return float(adapted[both].mean() / parent[both].mean()) if both.any() else None


def matched_size_ratio(parent: list, adapted: list) -> tuple[float | None, int]:
    """Median of adapted ECD / parent ECD over the particles both models found in the same frames (IoU ≥ 0.5 on the
    parent's grid, neither cut by the edge), and how many there were; None without any. Frames are
    ``ModelReport.outlines`` entries; a frame either model has none for is skipped."""
    from copilot.train.metrics import matched_pairs

    ratios = []
    for (pl, pe), (al, ae) in (pair for pair in zip(parent, adapted) if None not in pair):
        for q, r in matched_pairs(pl, _to_shape(al, pl.shape)):
            if q <= pe.size and r <= ae.size and pe[q - 1] > 0 and ae[r - 1] > 0:  # NaN (edge) compares False
                ratios.append(ae[r - 1] / pe[q - 1])
    return (float(np.median(ratios)) if ratios else None), len(ratios)


def _ratio_ok(a: float, b: float, lo_hi: tuple[float, float]) -> tuple[bool, float]:
    if b <= 0:
        return a <= 0, float("inf") if a > 0 else 1.0
    r = a / b
    return lo_hi[0] <= r <= lo_hi[1], r


def decide(parent_backend, adapted_backend, frames: list[Frame], limits: CheckLimits | None = None,
           thresholds=None) -> Decision:
    """Compare the adapted model with its parent on ``frames`` (no labels); promote only if every check passes."""
    from copilot.reliability.score import Assessor

    limits = limits or CheckLimits()
    for e in (parent_backend, adapted_backend):
        e.scale_memory = False  # each frame from the card's scale: the same input for both models
    pa = Assessor(parent_backend.card, parent_backend.folder, thresholds)
    aa = Assessor(adapted_backend.card, adapted_backend.folder, thresholds)
    p, pmaps = survey(parent_backend, pa, frames, limits)
    a, amaps = survey(adapted_backend, aa, frames, limits)
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    mae = (pa.calibration.metrics.get("f1_mae_grouped") if pa.calibration is not None else None)
    judge = mae is None or mae <= limits.max_regressor_mae
    if p.predicted_f1 is not None and a.predicted_f1 is not None:
        if not judge:
            reasons.append(f"the reliability regressor predicts F1 on unseen domains only to ±{mae:.2f} (leave-one-"
                           f"domain-out MAE, > {limits.max_regressor_mae:g}): too loose to judge an adapted model")
        else:
            checks["predicted_f1"] = a.predicted_f1 > p.predicted_f1 + limits.min_f1_gain
            if not checks["predicted_f1"]:
                reasons.append(f"predicted F1 not up by more than {limits.min_f1_gain:g} ({p.predicted_f1:.3f} → "
                               f"{a.predicted_f1:.3f})")
    if p.shift is not None and a.shift is not None:
        checks["shift"] = a.shift <= p.shift
        if not checks["shift"]:
            reasons.append(f"shift score up ({p.shift:.2f} → {a.shift:.2f} × its reference's typical score)")
    checks["view_agreement"] = a.view_agreement >= p.view_agreement - limits.view_tolerance
    if not checks["view_agreement"]:
        reasons.append(f"less consistent between views ({p.view_agreement:.3f} → {a.view_agreement:.3f})")
    agree = []
    for (pl, pc), (al, _) in zip(pmaps, amaps):
        sure = pc >= 0.9
        if sure.any():
            agree.append(float(np.mean(_to_shape(al, pl.shape)[sure] == pl[sure])))
    confident_agreement = float(np.mean(agree)) if agree else 1.0
    checks["confident_agreement"] = confident_agreement >= limits.min_confident_agreement
    if not checks["confident_agreement"]:
        reasons.append(f"disagrees with the parent where the parent is sure ({confident_agreement:.1%} of pixels "
                       f"agree, < {limits.min_confident_agreement:.0%})")
    sure_frames = np.argsort(p.image_confidence)[len(frames) // 2:] if len(frames) > 1 else np.arange(len(frames))
    pick = lambda xs: float(np.sum(np.asarray(xs)[sure_frames]))  # noqa: E731
    area_ok, area_ratio = _ratio_ok(pick(a.areas), pick(p.areas), limits.area_ratio)
    count_ok, count_ratio = True, 1.0
    if parent_backend.card.task == "particles":
        count_ok, count_ratio = _ratio_ok(pick(a.counts), pick(p.counts), limits.count_ratio)
    checks["no_collapse"] = area_ok and count_ok
    if not checks["no_collapse"]:
        reasons.append(f"drifts from the parent on its confident frames (objects ×{count_ratio:.2f}, "
                       f"area ×{area_ratio:.2f})")
    d50_ratio = _d50_ratio(np.asarray(a.d50s)[sure_frames], np.asarray(p.d50s)[sure_frames])
    size_ratio, matched = matched_size_ratio([p.outlines[i] for i in sure_frames], [a.outlines[i] for i in sure_frames])
    if size_ratio is not None:
        checks["sizes_kept"] = abs(size_ratio - 1) <= limits.d50_drift
        if not checks["sizes_kept"]:
            reasons.append(f"changes the sizes the parent measured with confidence (the {matched} particles both "
                           f"find on its confident frames: ECD ×{size_ratio:.3f}, beyond ±{limits.d50_drift:.0%})")
    # a shift score that went down only says the model now looks like the frames it learnt from; without a regressor
    # that predicts its F1 nothing says it got better (phases: self-training promoted twice, worse on true labels)
    evidence = "predicted_f1" in checks
    if not evidence:
        reasons.append(("no reliability regressor to predict its quality" if judge else "no trusted prediction of "
                        "its quality") + ": kept aside for a person to check (copilot engines install FOLDER "
                        "promotes it by hand)")
    promote = evidence and all(checks.values())

    def summary(r: ModelReport) -> dict:
        return {"predicted_f1": r.predicted_f1, "shift": r.shift, "view_agreement": r.view_agreement,
                "objects_on_confident_frames": pick(r.counts), "area_on_confident_frames": pick(r.areas)}

    adapted = summary(a) | {"confident_agreement": confident_agreement, "count_ratio": count_ratio,
                            "area_ratio": area_ratio, "d50_ratio": d50_ratio, "matched_ecd_ratio": size_ratio,
                            "matched_particles": matched}
    return Decision(promote, reasons, checks, summary(p), adapted)
