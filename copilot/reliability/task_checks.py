"""Verdict reasons that belong to one task's measurements: grains (ASTM E112 counting rules and label-free
consistency checks of the boundary map), inclusions from EDS (counting statistics, class confidence) and phase
morphology (enough medial axis to quote a width).

Each check returns ``(level, reason)`` pairs for ``copilot.reliability.score.Assessor.verdict``.

* grains: no closed grain → fail; boundaries over ``grain_max_boundary_fraction`` of the frame (the model sees no
  grain structure) → fail; grains under ``min_grain_px`` across (mean ECD on the model's grid) → warn; fewer than
  ``min_grains`` counted (E112 §11 asks for 50 or more per field) → warn; the
  planimetric G's 95 % interval wider than ±``grain_g_ci_half`` → warn; planimetric and intercept G more than
  ``grain_method_gap`` apart → warn (broken boundaries merge grains and lower the planimetric G much more than the
  intercept G; spurious boundaries do the opposite); the reliability regressor's predicted |ΔG| above
  ``grain_predicted_g_error`` → warn.
* inclusions (EDS): the file's EDS could not be analysed → warn; fewer than ``eds_min_counts_per_px`` counts per
  EDS pixel → warn (class accuracy falls to about 0.92 at 10 counts/px on simulated cubes, bench/accuracy/eds.md);
  mean class confidence under ``eds_min_confidence`` or more than ``eds_max_unclassified`` of the inclusions
  unclassified → warn.
* phases: the reliability regressor's predicted largest phase-fraction error above
  ``phase_predicted_fraction_error`` pp → warn; a phase covering at least 1 % of the frame with fewer than
  ``min_width_samples`` medial-axis samples → warn (its width distribution is not measurable here).
"""

from __future__ import annotations

from copilot.analysis.measurements import FrameMeasurements
from copilot.reliability.settings import VerdictThresholds


def grain_reasons(fm: FrameMeasurements, t: VerdictThresholds,
                  predicted: dict[str, float] | None = None) -> list[tuple[str, str]]:
    g = fm.summary.grains
    if g is None:
        return []
    found: list[tuple[str, str]] = []
    dg = (predicted or {}).get("g_abs_error")
    if dg is not None and g.count > 0 and dg > t.grain_predicted_g_error:
        found.append(("warn", f"predicted G error ±{dg:.1f} on this frame (good practice: ±0.25)"))
    counted = g.count + 0.5 * g.count_edge
    if g.count == 0:
        found.append(("fail", "no closed grains: no grain boundary network found"))
    if g.boundary_fraction is not None and g.boundary_fraction > t.grain_max_boundary_fraction:
        found.append(("fail", f"boundaries cover {g.boundary_fraction:.0%} of the frame: no grain structure the "
                              "model recognises"))
    nm = fm.segmentation.nm_per_px
    if g.ecd_mean_um is not None and nm and g.ecd_mean_um * 1e3 / nm < t.min_grain_px:
        found.append(("warn", f"grains only {g.ecd_mean_um * 1e3 / nm:.0f} px across on the model's grid: boundaries "
                              "take much of them (raise the magnification)"))
    if 0 < counted < t.min_grains:
        found.append(("warn", f"only {counted:g} grains counted: ASTM E112 asks for {t.min_grains} or more per field "
                              "(lower the magnification)"))
    ci = g.g_planimetric_ci
    if g.g_planimetric is not None and ci is not None and (ci.high - ci.low) / 2 > t.grain_g_ci_half:
        found.append(("warn", f"G imprecise in this frame (95 % interval ±{(ci.high - ci.low) / 2:.2f})"))
    if g.g_planimetric is not None and g.g_intercept is not None:
        gap = g.g_intercept - g.g_planimetric
        if abs(gap) > t.grain_method_gap:
            why = "broken boundaries merging grains?" if gap > 0 else "spurious boundaries splitting grains?"
            found.append(("warn", f"planimetric and intercept G disagree by {abs(gap):.1f} ({why})"))
    return found


def phase_reasons(fm: FrameMeasurements, t: VerdictThresholds,
                  predicted: dict[str, float] | None = None) -> list[tuple[str, str]]:
    ph = fm.summary.phases
    if ph is None:
        return []
    found: list[tuple[str, str]] = []
    err = (predicted or {}).get("fraction_error")
    if err is not None and err > t.phase_predicted_fraction_error:
        found.append(("warn", f"predicted phase-fraction error ±{err:.0f} pp on this frame"))
    m = fm.morphology
    if m is not None:
        fraction = {p.name: p.area_fraction for p in ph.phases}
        found += [("warn", f"{p.name}: too little of it to measure widths ({p.width_samples} medial-axis samples)")
                  for p in m.phases[1:] if fraction.get(p.name, 0.0) >= 0.01 and p.width_samples < t.min_width_samples]
    return found


def inclusion_reasons(fm: FrameMeasurements, t: VerdictThresholds) -> list[tuple[str, str]]:
    fi = fm.inclusions
    if fi is None:
        return []
    if fi.report is None:
        return [("warn", f"EDS not analysed: {fi.unavailable}")]
    found: list[tuple[str, str]] = []
    if fi.counts_per_px is not None and fi.counts_per_px < t.eds_min_counts_per_px:
        found.append(("warn", f"EDS counts low ({fi.counts_per_px:.0f} per pixel): inclusion classes less certain"))
    objs = fi.report.objects
    if objs:
        conf = sum(o.confidence for o in objs) / len(objs)
        unclassified = sum(o.inclusion_class == "unclassified" for o in objs) / len(objs)
        if conf < t.eds_min_confidence:
            found.append(("warn", f"inclusion classes uncertain (mean confidence {conf:.2f})"))
        if unclassified > t.eds_max_unclassified:
            found.append(("warn", f"{unclassified:.0%} of the inclusions match no class rule"))
    return found


def task_reasons(fm: FrameMeasurements, t: VerdictThresholds,
                 predicted: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """All task-specific reasons of one frame (``predicted``: the regressor's task targets, e.g. g_abs_error or
    fraction_error)."""
    return grain_reasons(fm, t, predicted) + phase_reasons(fm, t, predicted) + inclusion_reasons(fm, t)
