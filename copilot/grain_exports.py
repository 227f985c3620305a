"""grains.csv: one row per grain inside the frame (the document's ``measurements.grains.grains``), and the grain
columns of frames.csv. Written by ``copilot.exports.ResultWriter`` beside particles.csv."""

from __future__ import annotations

from copilot.document.schema import ResultDocument

GRAIN_COLUMNS = ["frame_id", "grain_id", "centroid_x_px", "centroid_y_px", "area_um2", "ecd_um", "g"]
GRAIN_FRAME_COLUMNS = ["grain_count", "grain_count_edge", "grains_per_mm2", "g_planimetric", "g_planimetric_ci_low",
                       "g_planimetric_ci_high", "g_intercept", "g_intercept_ci_low", "g_intercept_ci_high",
                       "mean_intercept_um", "ala_g"]


def grain_rows(d: ResultDocument):
    g = d.measurements.grains
    if g is None:
        return
    for q in g.grains:
        yield {"frame_id": d.frame_id, "grain_id": q.id, "centroid_x_px": round(q.centroid_x_px, 2),
               "centroid_y_px": round(q.centroid_y_px, 2), "area_um2": f"{q.area_um2:.6g}", "ecd_um": f"{q.ecd_um:.6g}",
               "g": round(q.g, 3)}


def grain_frame_columns(d: ResultDocument) -> dict:
    """The frames.csv grain columns of one document (empty for other tasks)."""
    g = d.measurements.grains
    if g is None:
        return {}
    pc, ic = g.g_planimetric_ci, g.g_intercept_ci
    return {"grain_count": g.count, "grain_count_edge": g.count_edge, "grains_per_mm2": g.grains_per_mm2,
            "g_planimetric": g.g_planimetric, "g_planimetric_ci_low": pc.low if pc else None,
            "g_planimetric_ci_high": pc.high if pc else None, "g_intercept": g.g_intercept,
            "g_intercept_ci_low": ic.low if ic else None, "g_intercept_ci_high": ic.high if ic else None,
            "mean_intercept_um": g.mean_intercept_um, "ala_g": g.ala_g}
