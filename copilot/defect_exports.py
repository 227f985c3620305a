"""defects.csv: one row per radiation defect inside the frame (cavity or loop: the document's
``measurements.defects.classes[].diameters``), and the defect columns of frames.csv (per class count, density and
diameter with their intervals; the cavities' volume fraction and swelling with theirs; the foil thickness and dose
they were computed for; the predicted F1 per class). Written by ``copilot.exports.ResultWriter`` beside
particles.csv."""

from __future__ import annotations

from copilot.analysis.defect_instances import DEFECT_CLASSES
from copilot.document.schema import Interval, ResultDocument

DEFECT_COLUMNS = ["frame_id", "defect_class", "diameter_nm", "diameter_px", "size_measure"]
_PER_CLASS = ["count", "count_edge", "density_per_um2", "density_ci_low", "density_ci_high", "diameter_mean",
              "diameter_mean_ci_low", "diameter_mean_ci_high", "diameter_median", "predicted_f1"]
DEFECT_FRAME_COLUMNS = [f"{c}_{k}" for c in DEFECT_CLASSES for k in _PER_CLASS] + [
    "foil_thickness_nm", "thickness_source", "volume_fraction", "volume_fraction_ci_low", "volume_fraction_ci_high",
    "swelling", "swelling_ci_low", "swelling_ci_high", "dose"]


def _bounds(ci: Interval | None) -> tuple[float | None, float | None]:
    return (ci.low, ci.high) if ci is not None else (None, None)


def defect_rows(d: ResultDocument):
    """Each inner defect's diameter (ECD of a cavity, fitted-ellipse major axis of a loop), in nm where the frame is
    calibrated and in frame pixels always; defects cut by the frame edge are counted, not sized, so not listed."""
    s = d.measurements.defects
    if s is None:
        return
    nm_per_px = d.calibration.nm_per_px if d.measurements.length_unit == "nm" else None
    for c in s.classes:
        for v in c.diameters:
            yield {"frame_id": d.frame_id, "defect_class": c.name,
                   "diameter_nm": f"{v:.6g}" if nm_per_px else None,
                   "diameter_px": f"{v / nm_per_px if nm_per_px else v:.6g}", "size_measure": c.size_measure}


def defect_frame_columns(d: ResultDocument) -> dict:
    """The frames.csv defect columns of one document (empty for other tasks)."""
    s = d.measurements.defects
    if s is None:
        return {}
    predicted = d.reliability.predicted_per_class
    row: dict = {}
    for c in s.classes:
        if c.name not in DEFECT_CLASSES:
            continue
        (dl, dh), (ml, mh) = _bounds(c.density_ci), _bounds(c.diameter_mean_ci)
        row.update({f"{c.name}_{k}": v for k, v in zip(_PER_CLASS, (
            c.count, c.count_edge, c.density_per_um2, dl, dh, c.diameter_mean, ml, mh, c.diameter_median,
            predicted.get(f"{c.name}_f1")))})
    (vl, vh), (sl, sh) = _bounds(s.volume_fraction_ci), _bounds(s.swelling_ci)
    row.update(foil_thickness_nm=s.foil_thickness_nm, thickness_source=s.thickness_source,
               volume_fraction=s.volume_fraction, volume_fraction_ci_low=vl, volume_fraction_ci_high=vh,
               swelling=s.swelling, swelling_ci_low=sl, swelling_ci_high=sh, dose=s.dose)
    return row
