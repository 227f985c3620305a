"""The words and numbers the views show, from result documents (no Qt, no terminal).

Rules: a FAIL frame's numbers are withheld with the reason; an interval is shown as its bounds (never a "±" that
would hide a lopsided interval); a trend is stated only when its 95 % interval excludes zero.

>>> fmt_num(12.345), fmt_num(0.0123), fmt_num(1234.6)
('12.3', '0.0123', '1235')
>>> scale_bar(0.5, 1000)          # 0.5 nm per pixel, a 1000-pixel-wide image
(100.0, 200.0, '100 nm')
>>> scale_bar(None, 640)           # uncalibrated: the bar is in pixels and says so
(100.0, 100.0, '100 px (uncalibrated)')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from copilot.document.schema import ResultDocument, Sufficiency, Trend

VERDICT_COLOURS = {"ok": "#2ecc71", "warn": "#f5b700", "fail": "#e5383b"}
UNKNOWN_COLOUR = "#7f8c8d"
HEADLINE_NAMES = {"d50": "D50", "ecd_mean": "mean ECD", "density": "density"}
QUANTITY_NAMES = {"d50": "median particle size (D50)", "ecd_mean": "mean particle size", "density": "particle density"}


def fmt_num(v: float | None, digits: int = 3) -> str:
    """Three significant figures without scientific notation for the usual range; '–' for None."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    a = abs(v)
    if a >= 10 ** digits:
        return f"{v:.0f}"
    if a == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
    return f"{v:.{decimals}f}"


def fmt_signed(v: float) -> str:
    """``+1.2`` / ``−0.3`` (a real minus sign), three significant figures without trailing zeros.

    >>> fmt_signed(0.42), fmt_signed(-63.0), fmt_signed(1234.5)
    ('+0.42', '−63', '+1234')
    """
    a = abs(v)
    text = f"{a:.3g}" if 1e-3 <= a < 1000 else fmt_num(a)
    return ("+" if v > 0 else "−" if v < 0 else "") + text


def clock(ts: float | None) -> str:
    """Local wall-clock time ``HH:MM:SS`` of a ``time.time()`` value."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts else "–"


def quantity_label(q: str) -> str:
    """``d50`` → ``D50``; ``fraction:gamma`` → ``gamma fraction``."""
    if q.startswith("fraction:"):
        return f"{q.split(':', 1)[1]} fraction"
    return HEADLINE_NAMES.get(q, q)


def quantity_name(q: str) -> str:
    """What a person calls it: ``ecd_mean`` → ``mean particle size``."""
    if q.startswith("fraction:"):
        return f"{q.split(':', 1)[1]} area fraction"
    return QUANTITY_NAMES.get(q, q)


@dataclass(frozen=True)
class Headline:
    """The one number a stream is about: D50 for particles, the first phase's area fraction for phases."""

    quantity: str  # d50 | fraction:<phase>
    label: str
    value: float | None
    low: float | None
    high: float | None
    unit: str  # "nm", "px" or "" (fractions)

    def value_text(self) -> str:
        """``16.6 nm`` — the number alone."""
        if self.value is None:
            return "–"
        return f"{fmt_num(self.value)}{' ' + self.unit if self.unit else ''}"

    def interval_text(self) -> str:
        """``95 % interval 14.2–16.9 nm`` (its bounds, however lopsided), or ``''``."""
        if self.low is None or self.high is None:
            return ""
        return f"95 % interval {fmt_num(self.low)}–{fmt_num(self.high)}{' ' + self.unit if self.unit else ''}"

    def text(self) -> str:
        iv = self.interval_text()
        return f"{self.label} {self.value_text()}" + (f" ({iv})" if iv and self.value is not None else "")


def headline(doc: ResultDocument) -> Headline:
    m = doc.measurements
    if m.particles is not None:
        p = m.particles
        ci = p.d50_ci
        return Headline("d50", "D50", p.d50, ci.low if ci else None, ci.high if ci else None, m.length_unit)
    if m.grains is not None:
        ci = m.grains.g_planimetric_ci
        return Headline("g", "G", m.grains.g_planimetric, ci.low if ci else None, ci.high if ci else None, "")
    if m.phases is not None and len(m.phases.phases) > 1:
        ph = m.phases.phases[1]
        ci = ph.ci
        return Headline(f"fraction:{ph.name}", f"{ph.name} fraction", ph.area_fraction, ci.low if ci else None,
                        ci.high if ci else None, "")
    d = m.defects
    if d is not None:
        ci = d.swelling_ci
        pct = (lambda v: None if v is None else 100 * v)
        return Headline("swelling", "swelling ΔV/V", pct(d.swelling), pct(ci.low) if ci else None,
                        pct(ci.high) if ci else None, "%")
    return Headline("none", "–", None, None, None, "")


def withheld(doc: ResultDocument) -> str | None:
    """Why this frame's numbers are not shown (``FAIL: reason``), or None when they stand."""
    if doc.verdict.level != "fail":
        return None
    return "FAIL: " + ("; ".join(doc.verdict.reasons) if doc.verdict.reasons else "the model is not right here")


def plural(name: str) -> str:
    """``cavity`` → ``cavities``, ``loop`` → ``loops``."""
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def count_text(doc: ResultDocument) -> str:
    p, g = doc.measurements.particles, doc.measurements.grains
    if g is not None:
        intercept = "" if g.g_intercept is None else f", G intercept {g.g_intercept:.2f}"
        return f"{g.count} grains, {g.count_edge} cut by the edge{intercept}" + (" · ALA" if g.ala else "")
    d = doc.measurements.defects
    if d is not None:
        edge = sum(c.count_edge for c in d.classes)
        return ", ".join(f"{c.count} {plural(c.name)}" for c in d.classes) + (f" ({edge} cut by the edge)" if edge else "")
    if p is None:
        ph = doc.measurements.phases
        return f"{len(ph.phases)} phases" if ph is not None else "–"
    edge = f", {p.count_edge} cut by the edge (not sized)" if p.count_edge else ""
    return f"{p.count} particles{edge}"


def inclusion_text(doc: ResultDocument, max_classes: int = 4) -> str:
    """``7 inclusions: oxide 4 (12.5/mm²), sulfide 3 (9.4/mm²)`` from the frame's EDS; "" without EDS analysis."""
    s = doc.measurements.inclusions
    if s is None:
        return ""
    if s.unavailable:
        return f"EDS not analysed: {s.unavailable}"
    found = sorted((c for c in s.classes if c.count), key=lambda c: -c.count)
    total = sum(c.count for c in found)
    if not total:
        return "no inclusions in the EDS map"
    parts = [f"{c.name} {c.count}" + (f" ({fmt_num(c.count_per_mm2)}/mm²)" if c.count_per_mm2 is not None else "")
             for c in found[:max_classes]]
    if len(found) > max_classes:
        parts.append(f"+{len(found) - max_classes} more classes")
    return f"{total} inclusion{'s' if total != 1 else ''}: " + ", ".join(parts)


def edge_text(doc: ResultDocument) -> str:
    p = doc.measurements.particles
    if p is None:
        return ""
    return f"{p.count_edge} cut by the edge (counted, not sized)" if p.count_edge else "none cut by the edge"


def density_text(doc: ResultDocument) -> str:
    p, g = doc.measurements.particles, doc.measurements.grains
    if g is not None:
        return "– (uncalibrated)" if g.grains_per_mm2 is None else f"{fmt_num(g.grains_per_mm2)} grains/mm²"
    d = doc.measurements.defects
    if d is not None:
        if d.analysed_area_um2 is None:
            return "– (uncalibrated)"
        return ", ".join(f"{plural(c.name)} {fmt_num(c.density_per_um2)}/µm²"
                         + (f" ({fmt_num(c.density_ci.low)}–{fmt_num(c.density_ci.high)})" if c.density_ci else "")
                         for c in d.classes)
    if p is None:
        return "–"
    if p.density_per_um2 is None:
        return "– (uncalibrated)"
    return f"{fmt_num(p.density_per_um2)} particles/µm²"


def sufficiency_of(doc: ResultDocument) -> Sufficiency | None:
    """The pooled (series) sufficiency when the daemon tracks the stream, else the frame's own."""
    if doc.series is not None and doc.series.sufficiency is not None:
        return doc.series.sufficiency
    return doc.measurements.sufficiency[0] if doc.measurements.sufficiency else None


def is_enough(doc: ResultDocument) -> bool:
    """'Enough' only when the estimate says so, the frame stands (not FAIL) and sized something."""
    s = sufficiency_of(doc)
    p = doc.measurements.particles
    return bool(s is not None and s.enough and withheld(doc) is None and (p is None or p.count_sized > 0))


def sufficiency_text(doc: ResultDocument) -> str:
    """``enough (±1.2 % ≤ 2 %)``, ``~240 more particles / ~3 frames``, ``not measurable yet`` or withheld."""
    if withheld(doc) is not None:
        return "– (FAIL frame: not counted)"
    s = sufficiency_of(doc)
    if s is None:
        return "–"
    target = f"{s.target_rel * 100:.3g} %"
    if is_enough(doc):
        hw = f"±{s.half_width_rel * 100:.2g} % ≤ {target}" if s.half_width_rel is not None else target
        return f"enough ({hw})"
    if s.enough:  # the pooled estimate would do, but this frame sized (almost) nothing
        return "not measurable in this frame (no particles sized)"
    if s.more_objects_needed is None:
        return "not measurable yet"
    what = "particles" if doc.measurements.task == "particles" else ("frames" if s.scope == "series" else "points")
    more = f"~{s.more_objects_needed} more {what}"
    if s.more_frames_needed is not None and what != "frames":
        more += f" / ~{s.more_frames_needed} frame{'s' if s.more_frames_needed != 1 else ''}"
    return f"{more} (for ±{target})"


def trend_of(doc: ResultDocument, quantity: str) -> Trend | None:
    if doc.series is None:
        return None
    return next((t for t in doc.series.trends if t.quantity == quantity), None)


def significant(trend: Trend | None) -> bool:
    """The slope's 95 % interval excludes zero."""
    ci = trend.slope_ci if trend is not None else None
    return ci is not None and (ci.low > 0 or ci.high < 0)


def trend_text(trend: Trend | None) -> str:
    """``+0.42 nm/min ▲ (95 % CI 0.31–0.53)`` when the interval excludes zero, ``no clear trend …`` otherwise."""
    if trend is None or trend.slope is None:
        return "–" if trend is None else f"– ({trend.n_frames} frames)"
    ci = trend.slope_ci
    if not significant(trend):
        bounds = f" (95 % CI {fmt_signed(ci.low)} to {fmt_signed(ci.high)} {trend.unit})" if ci is not None else ""
        return f"no clear trend{bounds}"
    arrow = " ▲" if trend.slope > 0 else " ▼"
    lo, hi = sorted((ci.low, ci.high))
    return f"{fmt_signed(trend.slope)} {trend.unit}{arrow} (95 % CI {fmt_signed(lo)} to {fmt_signed(hi)})"


def dose_text(doc: ResultDocument) -> str:
    """``1.5 · swelling +2.41 %/dose unit ▲ (95 % CI …)`` for a defects frame that carries a dose (the slope once
    the stream has frames at three doses); "" otherwise."""
    d = doc.measurements.defects
    if d is None or d.dose is None:
        return ""
    trend = trend_of(doc, "swelling vs dose")  # copilot.analysis.defect_series names it so
    return fmt_num(d.dose) + (f" · swelling {trend_text(trend)}" if trend is not None else "")


def verdict_colour(level: str | None) -> str:
    return VERDICT_COLOURS.get(level or "", UNKNOWN_COLOUR)


def e2e_ms(doc: ResultDocument) -> float | None:
    """File written (arrival) → result published, measured by the daemon."""
    t = doc.timings_ms.get("end_to_end", doc.timings_ms.get("total"))
    return None if t is None else float(t)


def latency_text(doc: ResultDocument, delivery_ms: float | None = None) -> str:
    e2e = e2e_ms(doc)
    parts = [f"{e2e:.0f} ms frame→result" if e2e is not None else "–"]
    if delivery_ms is not None and -5_000 < delivery_ms < 3_600_000:
        parts.append(f"+{max(delivery_ms, 0):.0f} ms to here")
    return ", ".join(parts)


def alert_text(alert: dict[str, Any]) -> str:
    """``12:03:44 · frame_0031 · mean particle size rising 2.1 nm/min (95 % CI 1.4–2.8)``."""
    when = clock(alert.get("received_at"))
    frame = alert.get("frame_id") or ""
    return " · ".join(x for x in (when, frame, str(alert.get("message") or alert.get("kind", ""))) if x)


def scale_bar(units_per_px: float | None, width_px: float, fraction: float = 0.2) -> tuple[float, float, str]:
    """A round scale bar about ``fraction`` of the image wide: (length in nm or px, length in px, label)."""
    per_px = units_per_px if units_per_px else 1.0
    target = max(width_px * fraction * per_px, 1e-12)
    exp = math.floor(math.log10(target))
    length = max((m * 10**exp for m in (1, 2, 5, 10) if m * 10**exp <= target), default=10**exp)
    if units_per_px:
        label = f"{length / 1000:g} µm" if length >= 1000 else f"{length:g} nm"
    else:
        label = f"{length:g} px (uncalibrated)"
    return float(length), float(length / per_px), label


def log_ticks(lo: float, hi: float, min_ticks: int = 3) -> list[tuple[float, str]]:
    """Ticks for a log10 axis from ``lo`` to ``hi``, labelled in plain numbers: 1, 2, 5 × 10^k, then every
    mantissa 1…9 when that leaves fewer than ``min_ticks``, and the ends themselves as a last resort.

    >>> [t for _, t in log_ticks(1, 100)]
    ['1', '2', '5', '10', '20', '50', '100']
    >>> [t for _, t in log_ticks(8, 14)]
    ['8', '9', '10']
    >>> [t for _, t in log_ticks(11, 14)]
    ['11', '14']
    """
    def ticks(mantissas):
        out = []
        for k in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
            for m in mantissas:
                v = m * 10.0**k
                if lo <= v * (1 + 1e-9) and v <= hi * (1 + 1e-9):
                    out.append((math.log10(v), f"{v:g}"))
        return out

    out = ticks((1, 2, 5))
    if len(out) < min_ticks:
        out = ticks(range(1, 10))
    if len(out) < min_ticks:
        have = {label for _, label in out}
        for v in (lo, hi):
            if fmt_num(v, 2) not in have:
                out.append((math.log10(v), fmt_num(v, 2)))
        out.sort()
    return out


def adaptation_text(status: dict[str, Any]) -> str | None:
    """The daemon's background adaptation (status ``adaptation``), or None when there is nothing to say.

    >>> adaptation_text({"adaptation": {"state": "running", "stage": "adapt", "done": 30, "total": 120}})
    'adapting the model: adapt 30/120'
    >>> adaptation_text({"adaptation": {"state": "kept aside", "version": "0.2.0+selftrain.x", "reasons": ["shift up"]}})
    'adapted model 0.2.0+selftrain.x kept aside: shift up'
    >>> adaptation_text({"adaptation": {"state": "idle"}}) is None
    True
    """
    a = status.get("adaptation") or {}
    state = a.get("state")
    if state == "running":
        return f"adapting the model: {a.get('stage', '')} {a.get('done', 0)}/{a.get('total', 0)}"
    if state == "promoted":
        return f"adapted model {a.get('version')} promoted"
    if state == "kept aside":
        return f"adapted model {a.get('version')} kept aside: " + "; ".join(a.get("reasons") or [])
    if state == "failed":
        return f"adaptation failed: {a.get('error')}"
    return None
