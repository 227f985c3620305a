"""Radiation damage against dose: slopes of swelling and defect densities over the frames' dose (read from each
frame's metadata, ``copilot.analysis.defects.DOSE_KEYS``), beside the time trends of ``copilot.analysis.series``.

In-situ irradiation raises the dose during a session; swelling per dpa is what a nuclear-materials group compares
with other alloys. A trend against dose needs frames at ≥ 3 distinct doses in the rolling window.

>>> from datetime import datetime, timezone
>>> from copilot.analysis.series import FramePoint
>>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> pts = [FramePoint(str(i), at, {"swelling": 0.001 * i}, "nm", dose=float(i)) for i in range(1, 6)]
>>> [(t.quantity, round(t.slope, 6)) for t in dose_trends(pts)]
[('swelling vs dose', 0.1)]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DOSE_QUANTITIES = ("swelling", "density:cavity", "density:loop")
DOSE_SUFFIX = " vs dose"  # a dose trend's quantity: "swelling vs dose"


def dose_trends(window: Sequence) -> list:
    """One ``TrendFit`` per defect quantity against dose (slope per unit dose; swelling in % per unit dose)."""
    from copilot.analysis.series import TrendFit, _shown, fit_slope, quantity_name, value_unit

    out = []
    for q in DOSE_QUANTITIES:
        pts = [(w.dose, w.values[q]) for w in window
               if getattr(w, "dose", None) is not None and w.values.get(q) is not None and w.verdict != "fail"]
        if len({d for d, _ in pts}) < 3:
            continue
        x, y = (np.array(v, float) for v in zip(*pts))
        fit = fit_slope(x, y)
        unit = f"{value_unit(q, 'nm')}/dose unit"
        name = f"{quantity_name(q)} against dose"
        if fit is None:
            continue
        slope, low, high, _, _ = fit
        out.append(TrendFit(q + DOSE_SUFFIX, name, unit, _shown(q, slope), _shown(q, low), _shown(q, high), 0.95,
                            int(y.size), _shown(q, float(y[-1])), bool(low > 0 or high < 0)))
    return out
