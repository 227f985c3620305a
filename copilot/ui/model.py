"""What the views know, in plain Python: the newest result per stream, its session, its alerts, and whether the
daemon behind it is alive.

Both ``copilot top`` and ``copilot overlay`` read one :class:`ViewModel`; nothing here imports Qt.

- **Liveness** comes from the daemon's status heartbeats (every ~2 s): silent for more than ``silent_after_s``
  (three heartbeats) or a ``stopped`` status, and every stream of that daemon is shown as not live.
- **Sessions**: results carry the daemon's session epoch (status heartbeats too). A new epoch starts the stream's
  history and alerts afresh; the previous session is dropped from the plots and named in a note.
- **Alerts** carry their frame and the time they arrived and age out after ``alert_max_age_s``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from copilot.document.schema import ResultDocument
from copilot.ui.text import (
    clock, count_text, density_text, dose_text, e2e_ms, edge_text, fmt_num, headline, inclusion_text, latency_text,
    sufficiency_text, trend_of, trend_text, withheld,
)

HEARTBEAT_S = 2.0  # the daemon's status interval


@dataclass(frozen=True)
class Liveness:
    """Whether a daemon is heard: ``live``, ``waiting`` (never heard), ``stopped``, ``unreachable`` or (for a
    stream) ``restarted``."""

    state: str
    last_result_at: float | None  # time.time() of the newest result from it
    last_heard_at: float | None  # of anything from it (heartbeats included)

    @property
    def live(self) -> bool:
        return self.state == "live"

    def text(self, now: float | None = None) -> str:
        """``no results since 12:03:44 — daemon stopped`` (empty while live)."""
        if self.live:
            return ""
        if self.state == "waiting":
            return "waiting for the daemon…"
        since = f"no results since {clock(self.last_result_at)}" if self.last_result_at else "no results yet"
        if self.state == "stopped":
            return f"{since} — daemon stopped"
        if self.state == "restarted":
            return f"{since} — daemon restarted (a new session); the frame shown is from the previous one"
        quiet = ""
        if self.last_heard_at is not None:
            quiet = f", nothing heard for {max((now or time.time()) - self.last_heard_at, 0):.0f} s"
        return f"{since} — daemon stopped or unreachable{quiet}"


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
    value: float | None  # None: the frame's numbers are withheld (FAIL)
    low: float | None
    high: float | None
    fail: bool = False


@dataclass
class StreamState:
    """One stream as the views see it: the newest result (with mask and preview), this session's history, alerts."""

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
    session: str | None = None  # the daemon session the history belongs to
    session_note: str = ""  # "new daemon session since 12:04:10 (the previous one is no longer plotted)"
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
        self.alerts.append({**alert, "frame_id": frame_id or alert.get("frame_id"), "received_at": at})
        return True

    def fresh_alerts(self, now: float, max_age_s: float) -> list[dict[str, Any]]:
        """This session's alerts younger than ``max_age_s``, oldest first."""
        return [a for a in self.alerts if now - a["received_at"] <= max_age_s]

    def new_session(self, epoch: str | None, now: float) -> None:
        had = self.session is not None or bool(self.history)
        self.session = epoch
        self.history.clear()
        self.alerts.clear()
        self.latency_ms.clear()
        self.session_note = f"new daemon session since {clock(now)} (the previous one is no longer plotted)" \
            if had else ""


class ViewModel:
    """Feeds on subscriber messages; keeps only the newest result per stream (older ones are counted and dropped).

    ``ingest`` returns the stream whose view changed (or ``None``), so a view repaints once per tick however many
    messages arrived since the last one.
    """

    def __init__(self, streams: list[str] | tuple[str, ...] | None = None, *, silent_after_s: float = 3 * HEARTBEAT_S,
                 alert_max_age_s: float = 600.0, history_points: int = 500):
        self.only = set(streams) if streams else None
        self.history_points = history_points  # per stream, for the trend plot and sparkline
        self.silent_after_s = silent_after_s
        self.alert_max_age_s = alert_max_age_s
        self.streams: dict[str, StreamState] = {}
        self.status: dict[str, dict[str, Any]] = {}  # source → last status document
        self.status_at: dict[str, float] = {}
        self.heard_at: dict[str, float] = {}  # source → last message of any kind
        self.result_at: dict[str, float] = {}  # source → last result
        self.sessions: dict[str, str | None] = {}  # source → its session epoch (from heartbeats)
        self._uptime: dict[str, float] = {}
        self._restarts: dict[str, int] = {}  # heartbeats without an epoch: count restarts seen by uptime

    def watch(self, source: str) -> None:
        """Know a daemon before it speaks, so its liveness reads ``waiting``."""
        self.heard_at.setdefault(source, None)  # type: ignore[arg-type]

    def wants(self, stream: str | None) -> bool:
        return stream is not None and (self.only is None or stream in self.only)

    def stream(self, name: str, source: str = "") -> StreamState:
        st = self.streams.get(name)
        if st is None:
            st = self.streams[name] = StreamState(name, source, history=deque(maxlen=self.history_points))
        return st

    # -- liveness --------------------------------------------------------------------------------------------------
    def liveness(self, source: str, now: float | None = None) -> Liveness:
        now = time.time() if now is None else now
        heard = self.heard_at.get(source)
        last_result = self.result_at.get(source)
        if heard is None:
            return Liveness("waiting", last_result, None)
        if (self.status.get(source) or {}).get("state") == "stopped":
            return Liveness("stopped", last_result, heard)
        if now - heard > self.silent_after_s:
            return Liveness("unreachable", last_result, heard)
        return Liveness("live", last_result, heard)

    def stream_liveness(self, name: str, now: float | None = None) -> Liveness:
        """The daemon's liveness, and ``restarted`` while a new session has sent no result for this stream yet."""
        st = self.streams.get(name)
        live = self.liveness(st.source if st is not None else "", now)
        epoch = self.sessions.get(st.source) if st is not None else None
        if live.live and st.session and epoch and not epoch.startswith("restart-") and epoch != st.session:
            return Liveness("restarted", live.last_result_at, live.last_heard_at)
        return live

    # -- messages ----------------------------------------------------------------------------------------------------
    def ingest(self, msg, source: str = "", now: float | None = None) -> str | None:
        """One :class:`copilot.publish.subscriber.Message`; returns the stream whose view changed, if any."""
        now = time.time() if now is None else now
        kind = msg.kind
        self.heard_at[source] = now
        if kind == "status":
            self._status(source, msg.doc if isinstance(msg.doc, dict) else {}, now)
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

    def _status(self, source: str, doc: dict[str, Any], now: float) -> None:
        self.status[source] = doc
        self.status_at[source] = now
        uptime = doc.get("uptime_s")
        if isinstance(uptime, (int, float)):
            if uptime < self._uptime.get(source, 0.0) - 0.5:
                self._restarts[source] = self._restarts.get(source, 0) + 1
            self._uptime[source] = float(uptime)
        self.sessions[source] = doc.get("session_epoch") or f"restart-{self._restarts.get(source, 0)}"

    def _session_of(self, doc: ResultDocument, source: str) -> str | None:
        return doc.session_epoch or self.sessions.get(source)

    def add_result(self, doc: ResultDocument, labels: Any = None, source: str = "", now: float | None = None,
                   from_snapshot: bool = False) -> str | None:
        now = time.time() if now is None else now
        st = self.stream(doc.stream, source)
        st.results += 1
        session = self._session_of(doc, source)
        cur = st.doc
        if cur is not None and (doc.frame_id == cur.frame_id and session == st.session or _older(doc, cur)):
            st.stale += 1
            return None
        if cur is None or (session != st.session and st.session is not None and session is not None):
            st.new_session(session, now)
        st.session = session or st.session
        if doc.series is not None:  # alerts ride on every result
            for a in doc.series.alerts:
                st.add_alert(doc.frame_id, a.model_dump(mode="json"), now)
        st.doc = doc
        st.labels = labels if isinstance(labels, np.ndarray) else None
        st.source = source or st.source
        st.received_at = now
        self.result_at[st.source] = now
        st.from_snapshot = from_snapshot
        try:
            st.delivery_ms = (now - doc.processed_at.timestamp()) * 1e3
        except (TypeError, ValueError, OverflowError):
            st.delivery_ms = None
        e2e = e2e_ms(doc)
        if e2e is not None:
            st.latency_ms.append(e2e)
        h = headline(doc)
        fail = doc.verdict.level == "fail"
        if h.value is not None:
            st.history.append(HistoryPoint(doc.acquired_at, float(h.value), h.low, h.high, fail))
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

    def lines(self, name: str, now: float | None = None) -> dict[str, str]:
        """The text a view shows for one stream, keyed by what it is ("headline", "liveness", "withheld", …)."""
        now = time.time() if now is None else now
        st = self.streams[name]
        doc = st.doc
        live = self.stream_liveness(name, now)
        if doc is None:
            return {"waiting": f"{name}: waiting for the first result", "liveness": live.text(now)}
        h = headline(doc)
        why = withheld(doc)
        trend = trend_of(doc, h.quantity)
        excluded = doc.series.frames_excluded if doc.series is not None else 0
        return {
            "title": f"{name} · {doc.frame_id}",
            "verdict": doc.verdict.level.upper(),
            "reasons": "; ".join(doc.verdict.reasons) if doc.verdict.reasons else "no concerns",
            "withheld": why or "",
            "count": count_text(doc),
            "headline": f"{h.label} withheld" if why else h.text(),
            "value": "withheld" if why else h.value_text(),
            "interval": "" if why else h.interval_text(),
            "density": "withheld" if why else density_text(doc),
            "dose": "" if why else dose_text(doc),
            "sufficiency": sufficiency_text(doc),
            "trend": f"{h.label} trend {trend_text(trend)}"
                     + (f" · {excluded} FAIL frame{'s' if excluded != 1 else ''} left out" if excluded else ""),
            "latency": latency_text(doc, None if st.from_snapshot else st.delivery_ms)
            + (" (from the snapshot)" if st.from_snapshot else ""),
            "edge": edge_text(doc),
            "inclusions": "withheld" if why and doc.measurements.inclusions is not None else inclusion_text(doc),
            "model": f"{doc.model.name} {doc.model.version} on {doc.model.backend}",
            "calibration": (f"{fmt_num(doc.calibration.nm_per_px)} nm/px ({doc.calibration.source})"
                            if doc.calibration.calibrated else "uncalibrated: lengths in px"),
            "unit": doc.measurements.length_unit,
            "liveness": live.text(now),
            "session": st.session_note,
        }

    def alerts(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        st = self.streams.get(name)
        if st is None:
            return []
        return st.fresh_alerts(time.time() if now is None else now, self.alert_max_age_s)


def _older(doc: ResultDocument, cur: ResultDocument) -> bool:
    try:
        return doc.processed_at < cur.processed_at
    except TypeError:  # naive vs aware: fall back to acquisition time, then arrival order
        try:
            return doc.acquired_at < cur.acquired_at
        except TypeError:
            return False
