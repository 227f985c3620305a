"""What the views show, in plain Python: newest result per stream, text lines, colours, outline images.

Both ``copilot top`` (rich) and ``copilot overlay`` (Qt) read the same :class:`ViewModel`; nothing here imports Qt,
so every decision (which result is newest, what the sufficiency line says, which colour a particle gets) is tested
without a display.

>>> fmt_num(12.345), fmt_num(0.0123), fmt_num(1234.6)
('12.3', '0.0123', '1235')
>>> scale_bar(0.5, 1000)          # 0.5 nm per pixel, a 1000-pixel-wide image
(100.0, 200.0, '100 nm')
>>> scale_bar(None, 640)           # uncalibrated: the bar is in pixels and says so
(100.0, 100.0, '100 px (uncalibrated)')
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from copilot.document.schema import ResultDocument, Sufficiency, Trend

VERDICT_COLOURS = {"ok": "#2ecc71", "warn": "#f5b700", "fail": "#e5383b"}
UNKNOWN_COLOUR = "#7f8c8d"
EDGE_RGB = (224, 64, 251)  # particles cut by the frame edge (counted, not sized): magenta, off the size scale
# Colour by size: the bright part of "turbo" (blue → cyan → green → yellow → red), visible on a gray EM image.
_SIZE_ANCHORS = np.array([
    [48, 123, 255], [26, 214, 229], [70, 247, 131], [164, 252, 60], [237, 208, 58], [251, 128, 34], [215, 48, 31],
], float)
# Phases coloured by class (class 0, the matrix/background, is left unfilled); Okabe–Ito, colour-blind safe.
PHASE_RGB = [(0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
             (204, 121, 167)]
PHASE_FILL_ALPHA = 90
HEADLINE_NAMES = {"d50": "D50", "ecd_mean": "mean ECD", "density": "density"}


# -- numbers and words -------------------------------------------------------------------------------------------
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


def quantity_label(q: str) -> str:
    """``d50`` → ``D50``; ``fraction:gamma`` → ``gamma fraction``."""
    if q.startswith("fraction:"):
        return f"{q.split(':', 1)[1]} fraction"
    return HEADLINE_NAMES.get(q, q)


@dataclass(frozen=True)
class Headline:
    """The one number a stream is about: D50 for particles, the first phase's area fraction for phases."""

    quantity: str  # d50 | fraction:<phase>
    label: str
    value: float | None
    low: float | None
    high: float | None
    unit: str  # "nm", "px" or "" (fractions)

    def text(self) -> str:
        if self.value is None:
            return f"{self.label} –"
        unit = f" {self.unit}" if self.unit else ""
        ci = f" [{fmt_num(self.low)}–{fmt_num(self.high)}]" if self.low is not None and self.high is not None else ""
        return f"{self.label} {fmt_num(self.value)}{unit}{ci}"

    def plus_minus(self) -> str:
        """``12.3 ± 0.4 nm`` (half the 95 % interval; asymmetric intervals keep their bounds in ``text``)."""
        if self.value is None:
            return "–"
        unit = f" {self.unit}" if self.unit else ""
        if self.low is None or self.high is None:
            return f"{fmt_num(self.value)}{unit}"
        return f"{fmt_num(self.value)} ± {fmt_num((self.high - self.low) / 2, 2)}{unit}"


def headline(doc: ResultDocument) -> Headline:
    m = doc.measurements
    if m.particles is not None:
        p = m.particles
        ci = p.d50_ci
        return Headline("d50", "D50", p.d50, ci.low if ci else None, ci.high if ci else None, m.length_unit)
    if m.phases is not None and len(m.phases.phases) > 1:
        ph = m.phases.phases[1]
        ci = ph.ci
        return Headline(f"fraction:{ph.name}", f"{ph.name} fraction", ph.area_fraction, ci.low if ci else None,
                        ci.high if ci else None, "")
    return Headline("none", "–", None, None, None, "")


def count_text(doc: ResultDocument) -> str:
    p = doc.measurements.particles
    if p is None:
        ph = doc.measurements.phases
        return f"{len(ph.phases)} phases" if ph is not None else "–"
    edge = f", {p.count_edge} cut by the edge (not sized)" if p.count_edge else ""
    return f"{p.count} particles{edge}"


def edge_text(doc: ResultDocument) -> str:
    p = doc.measurements.particles
    if p is None:
        return ""
    return f"{p.count_edge} cut by the edge (counted, not sized)" if p.count_edge else "none cut by the edge"


def density_text(doc: ResultDocument) -> str:
    p = doc.measurements.particles
    if p is None:
        return "–"
    if p.density_per_um2 is None:
        return "– (uncalibrated)"
    return f"{fmt_num(p.density_per_um2)} /µm²"


def sufficiency_of(doc: ResultDocument) -> Sufficiency | None:
    """The pooled (series) sufficiency when the daemon tracks the stream, else the frame's own."""
    if doc.series is not None and doc.series.sufficiency is not None:
        return doc.series.sufficiency
    return doc.measurements.sufficiency[0] if doc.measurements.sufficiency else None


def sufficiency_text(doc: ResultDocument) -> str:
    """``enough (±1.2 % ≤ 2 %)``, ``~240 more particles / ~3 frames`` or ``not measurable yet``."""
    s = sufficiency_of(doc)
    if s is None:
        return "–"
    target = f"{s.target_rel * 100:.3g} %"
    if s.enough:
        hw = f"±{s.half_width_rel * 100:.2g} % ≤ {target}" if s.half_width_rel is not None else target
        return f"enough ({hw})"
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


def trend_text(trend: Trend | None) -> str:
    """``+0.42 nm/min ▲`` (▲/▼ when the slope's 95 % interval excludes zero), ``flat`` or ``–``."""
    if trend is None or trend.slope is None:
        return "–" if trend is None else f"– ({trend.n_frames} frames)"
    arrow = (" ▲" if trend.slope > 0 else " ▼") if trend.trending else " (flat)"
    return f"{trend.slope:+.3g} {trend.unit}{arrow}"


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


# -- colours and outline images ---------------------------------------------------------------------------------
def size_colour(t: np.ndarray | float) -> np.ndarray:
    """RGB (uint8) for positions 0..1 on the size scale (small → blue, large → red)."""
    t = np.clip(np.asarray(t, float), 0, 1) * (len(_SIZE_ANCHORS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(_SIZE_ANCHORS) - 2)
    f = (t - i)[..., None]
    return np.round(_SIZE_ANCHORS[i] * (1 - f) + _SIZE_ANCHORS[i + 1] * f).astype(np.uint8)


def size_range(doc: ResultDocument) -> tuple[float, float] | None:
    """The ECD range the colour scale spans: 5th–95th percentile of the sized particles of this frame."""
    p = doc.measurements.particles
    if p is None:
        return None
    ecd = np.array([q.ecd for q in p.particles if not q.touches_edge and math.isfinite(q.ecd)])
    if ecd.size == 0:
        return None
    lo, hi = (float(x) for x in np.percentile(ecd, [5, 95]))
    if hi - lo < 1e-9 * max(1.0, hi):
        lo, hi = lo * 0.9, hi * 1.1 + 1e-9
    return lo, hi


def label_colours(doc: ResultDocument, n_labels: int) -> np.ndarray:
    """RGBA lookup table (n_labels + 1, 4): label id → colour. 0 is transparent.

    Particles: coloured by ECD on :func:`size_colour` over :func:`size_range`; edge-cut ones ``EDGE_RGB``.
    Phases: label = class index; class 0 transparent, others from ``PHASE_RGB``.
    """
    lut = np.zeros((n_labels + 1, 4), np.uint8)
    p = doc.measurements.particles
    if p is not None:
        rng = size_range(doc)
        lut[1:, :3] = EDGE_RGB
        lut[1:, 3] = 255
        for q in p.particles:
            if 1 <= q.id <= n_labels and not q.touches_edge and rng is not None:
                lut[q.id, :3] = size_colour((q.ecd - rng[0]) / (rng[1] - rng[0]))
        return lut
    for k in range(1, n_labels + 1):
        lut[k, :3] = PHASE_RGB[1 + (k - 1) % (len(PHASE_RGB) - 1)]
        lut[k, 3] = 255
    return lut


def outline_shape(frame_shape: tuple[int, int], target_px: int, max_px: int = 2048) -> tuple[tuple[int, int], float]:
    """Resolution to draw outlines at so one drawn pixel is about one screen pixel: (shape, frame px per pixel)."""
    h, w = frame_shape
    target = int(min(max(target_px, 16), max_px))
    s = max(h, w) / target
    return (max(1, int(math.ceil(h / s))), max(1, int(math.ceil(w / s)))), s


def resample_labels(labels: np.ndarray, grid_frame_px: float, out_shape: tuple[int, int],
                    out_frame_px: float) -> np.ndarray:
    """Nearest-neighbour resample of a grid label mask to ``out_shape`` (each output pixel spans ``out_frame_px``)."""
    gh, gw = labels.shape
    rows = np.minimum(((np.arange(out_shape[0]) + 0.5) * out_frame_px / grid_frame_px).astype(np.int64), gh - 1)
    cols = np.minimum(((np.arange(out_shape[1]) + 0.5) * out_frame_px / grid_frame_px).astype(np.int64), gw - 1)
    return labels[np.ix_(rows, cols)]


def render_outlines(labels: np.ndarray, lut: np.ndarray, grid_frame_px: float, frame_shape: tuple[int, int],
                    target_px: int = 800, fill_alpha: int = 0) -> tuple[np.ndarray, float]:
    """RGBA image (uint8) of the label outlines, about ``target_px`` on the long edge, and its frame px per pixel.

    Outlines are two pixels wide (the label's own border pixel plus the background pixel next to it), coloured by
    ``lut``; with ``fill_alpha`` > 0 the regions are also filled translucently (phases).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    shape, out_frame_px = outline_shape(frame_shape, target_px)
    up = resample_labels(np.asarray(labels), grid_frame_px, shape, out_frame_px)
    up = np.minimum(up, len(lut) - 1).astype(np.int64)
    rgba = np.zeros((*shape, 4), np.uint8)
    if fill_alpha:
        rgba[...] = lut[up]
        rgba[..., 3] = np.where(lut[up][..., 3] > 0, fill_alpha, 0)
    inner = find_boundaries(up, mode="inner") & (up > 0)
    outer = find_boundaries(up, mode="outer") & (up == 0) & ~inner
    rgba[inner] = lut[up[inner]]
    if outer.any():
        near = ndi.maximum_filter(np.where(inner, up, 0), size=3)
        rgba[outer] = lut[near[outer]]
    return rgba, out_frame_px


# -- the model ----------------------------------------------------------------------------------------------------
@dataclass
class Preview:
    header: dict[str, Any]
    jpeg: bytes
    _image: np.ndarray | None = None

    @property
    def frame_id(self) -> str | None:
        return self.header.get("frame_id")

    @property
    def scale(self) -> float:
        """Frame pixels per preview pixel."""
        return float(self.header.get("scale") or 1.0)

    def image(self) -> np.ndarray:
        if self._image is None:
            from copilot.publish.preview import decode_preview

            self._image = decode_preview(self.jpeg)
        return self._image


@dataclass
class HistoryPoint:
    t: datetime
    value: float
    low: float | None
    high: float | None


@dataclass
class StreamState:
    """One stream as the views see it: the newest result (and its label mask and preview) plus recent history."""

    name: str
    source: str = ""
    doc: ResultDocument | None = None
    labels: np.ndarray | None = None
    received_at: float = 0.0  # time.time() when the newest result arrived
    delivery_ms: float | None = None  # processed_at → received here (needs synchronised clocks)
    from_snapshot: bool = False  # the result shown came from the snapshot socket (a late join or a catch-up)
    results: int = 0  # result messages received
    stale: int = 0  # results received that were older than the one shown (dropped)
    version: int = 0  # bumps whenever what is shown changes
    previews: OrderedDict = field(default_factory=OrderedDict)
    history: deque = field(default_factory=lambda: deque(maxlen=500))
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=50))
    alerts: deque = field(default_factory=lambda: deque(maxlen=20))
    _alert_keys: deque = field(default_factory=lambda: deque(maxlen=200))

    MAX_PREVIEWS = 8
    PREVIEW_GRACE_S = 0.5  # the preview follows its result within milliseconds; wait this long before going without

    def ready(self, now: float | None = None) -> bool:
        """Whether to paint the newest result now: its preview is here, previews do not flow, or waiting is over.

        Painting a result before its preview would flash the outlines on black for one tick.
        """
        if self.doc is None:
            return False
        if not self.previews or self.preview() is not None:
            return True
        return (time.time() if now is None else now) - self.received_at > self.PREVIEW_GRACE_S

    @property
    def frame_id(self) -> str | None:
        return self.doc.frame_id if self.doc is not None else None

    def preview(self) -> Preview | None:
        """The preview of the frame shown (``None`` until it arrives: outlines are never drawn on another frame)."""
        return self.previews.get(self.frame_id) if self.doc is not None else None

    def add_alert(self, frame_id: str | None, alert: dict[str, Any], at: float) -> bool:
        key = (frame_id, alert.get("kind"), alert.get("quantity"), alert.get("message"))
        if key in self._alert_keys:
            return False
        self._alert_keys.append(key)
        self.alerts.append({"frame_id": frame_id, "received_at": at, **alert})
        return True


class ViewModel:
    """Feeds on subscriber messages; keeps only the newest result per stream (older ones are counted and dropped).

    ``ingest`` returns the stream whose view changed (or ``None``), so a view repaints once per tick however many
    messages arrived since the last one.
    """

    def __init__(self, streams: list[str] | tuple[str, ...] | None = None):
        self.only = set(streams) if streams else None
        self.streams: dict[str, StreamState] = {}
        self.status: dict[str, dict[str, Any]] = {}  # source → last status document
        self.status_at: dict[str, float] = {}

    def wants(self, stream: str | None) -> bool:
        return stream is not None and (self.only is None or stream in self.only)

    def stream(self, name: str, source: str = "") -> StreamState:
        st = self.streams.get(name)
        if st is None:
            st = self.streams[name] = StreamState(name, source)
        return st

    def ingest(self, msg, source: str = "", now: float | None = None) -> str | None:
        """One :class:`copilot.publish.subscriber.Message`; returns the stream whose view changed, if any."""
        now = time.time() if now is None else now
        kind = msg.kind
        if kind == "status":
            self.status[source] = msg.doc
            self.status_at[source] = now
            return None
        stream = msg.stream
        if not self.wants(stream):
            return None
        if kind == "result":
            return self.add_result(msg.doc, msg.parts.get("labels"), source, now, from_snapshot=msg.from_snapshot)
        if kind == "preview":
            return self.add_preview(stream, msg.doc, msg.parts.get("preview"), source)
        if kind == "alert":
            st = self.stream(stream, source)
            return stream if st.add_alert(msg.doc.get("frame_id"), msg.doc, now) else None
        return None

    def add_result(self, doc: ResultDocument, labels: Any = None, source: str = "", now: float | None = None,
                   from_snapshot: bool = False) -> str | None:
        now = time.time() if now is None else now
        st = self.stream(doc.stream, source)
        st.results += 1
        if doc.series is not None:  # alerts ride on every result, shown or not
            for a in doc.series.alerts:
                st.add_alert(doc.frame_id, a.model_dump(), now)
        cur = st.doc
        if cur is not None and (doc.frame_id == cur.frame_id or _older(doc, cur)):
            st.stale += 1
            return None
        st.doc = doc
        st.labels = labels if isinstance(labels, np.ndarray) else None
        st.source = source or st.source
        st.received_at = now
        st.from_snapshot = from_snapshot
        try:
            st.delivery_ms = (now - doc.processed_at.timestamp()) * 1e3
        except (TypeError, ValueError, OverflowError):
            st.delivery_ms = None
        e2e = e2e_ms(doc)
        if e2e is not None:
            st.latency_ms.append(e2e)
        h = headline(doc)
        if h.value is not None:
            st.history.append(HistoryPoint(doc.acquired_at, float(h.value), h.low, h.high))
        st.version += 1
        return doc.stream

    def add_preview(self, stream: str, header: dict[str, Any], jpeg: Any, source: str = "") -> str | None:
        if not isinstance(jpeg, (bytes, bytearray)):
            return None
        st = self.stream(stream, source)
        fid = header.get("frame_id")
        st.previews[fid] = Preview(dict(header), bytes(jpeg))
        st.previews.move_to_end(fid)
        while len(st.previews) > st.MAX_PREVIEWS:
            st.previews.popitem(last=False)
        if st.doc is not None and fid == st.doc.frame_id:
            st.version += 1
            return stream
        return None

    # -- derived text -----------------------------------------------------------------------------------------
    def lines(self, name: str) -> dict[str, str]:
        """The text a view shows for one stream, keyed by what it is."""
        st = self.streams[name]
        doc = st.doc
        if doc is None:
            return {"waiting": f"{name}: waiting for the first result"}
        h = headline(doc)
        trend = trend_of(doc, h.quantity)
        unit = doc.measurements.length_unit
        return {
            "title": f"{name} · {doc.frame_id}",
            "verdict": doc.verdict.level.upper(),
            "reasons": "; ".join(doc.verdict.reasons) if doc.verdict.reasons else "no concerns",
            "count": count_text(doc),
            "headline": h.text() + (" (95 %)" if h.low is not None else ""),
            "density": density_text(doc),
            "sufficiency": sufficiency_text(doc),
            "trend": f"{h.label} trend {trend_text(trend)}",
            "latency": latency_text(doc, None if st.from_snapshot else st.delivery_ms)
            + (" (from the snapshot)" if st.from_snapshot else ""),
            "edge": edge_text(doc),
            "model": f"{doc.model.name} {doc.model.version} on {doc.model.engine}",
            "calibration": (f"{fmt_num(doc.calibration.nm_per_px)} nm/px ({doc.calibration.source})"
                            if doc.calibration.calibrated else "uncalibrated: lengths in px"),
            "unit": unit,
        }


def _older(doc: ResultDocument, cur: ResultDocument) -> bool:
    try:
        return doc.processed_at < cur.processed_at
    except TypeError:  # naive vs aware: fall back to acquisition time, then arrival order
        try:
            return doc.acquired_at < cur.acquired_at
        except TypeError:
            return False
