"""inclusions.csv: one row per EDS inclusion (the document's ``measurements.inclusions.inclusions``), and the
inclusion columns of frames.csv. Written by ``copilot.exports.ResultWriter`` beside particles.csv and grains.csv.

Element fractions are semi-quantitative (Cliff–Lorimer-style k-factors from the config); the ``composition``
column lists them as ``El=fraction±sigma`` separated by ``;``, on the basis named in ``basis``.
"""

from __future__ import annotations

import json

from copilot.document.schema import ResultDocument

INCLUSION_COLUMNS = ["frame_id", "inclusion_id", "inclusion_class", "confidence", "area_px", "area_um2",
                     "centroid_x_px", "centroid_y_px", "counts", "basis", "composition"]
INCLUSION_FRAME_COLUMNS = ["inclusions", "inclusions_per_mm2", "inclusion_classes"]


def _px_area_um2(d: ResultDocument) -> float | None:
    s = d.measurements.inclusions
    if s is None or s.field_area_mm2 is None or not s.eds_shape:
        return None
    h, w = s.eds_shape
    return s.field_area_mm2 * 1e6 / (h * w)


def composition_text(fractions: dict[str, float], sigma: dict[str, float]) -> str:
    """``O=0.520±0.030;Al=0.410±0.025``, largest fraction first."""
    parts = []
    for el, f in sorted(fractions.items(), key=lambda kv: -kv[1]):
        s = sigma.get(el)
        parts.append(f"{el}={f:.3f}" + (f"±{s:.3f}" if s is not None else ""))
    return ";".join(parts)


def inclusion_rows(d: ResultDocument):
    s = d.measurements.inclusions
    if s is None:
        return
    px_um2 = _px_area_um2(d)
    for q in s.inclusions:
        yield {"frame_id": d.frame_id, "inclusion_id": q.id, "inclusion_class": q.inclusion_class,
               "confidence": round(q.confidence, 3), "area_px": q.area_px,
               "area_um2": None if px_um2 is None else f"{q.area_px * px_um2:.6g}",
               "centroid_x_px": round(q.centroid_x_px, 2), "centroid_y_px": round(q.centroid_y_px, 2),
               "counts": q.counts, "basis": s.basis, "composition": composition_text(q.fractions, q.fraction_sigma)}


def inclusion_frame_columns(d: ResultDocument) -> dict:
    """The frames.csv inclusion columns of one document (empty when the frame had no EDS analysis)."""
    s = d.measurements.inclusions
    if s is None or s.unavailable:
        return {}
    total = sum(c.count for c in s.classes)
    per_mm2 = None if s.field_area_mm2 in (None, 0) else total / s.field_area_mm2
    return {"inclusions": total, "inclusions_per_mm2": per_mm2,
            "inclusion_classes": json.dumps({c.name: c.count for c in s.classes if c.count})}
