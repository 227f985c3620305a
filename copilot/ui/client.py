"""Connections to one or more daemons for the views: non-blocking drains, reconnect and snapshot refetch.

A view calls :meth:`Client.poll` once per tick; it takes every message that arrived since the last tick (never
waiting) and feeds the :class:`~copilot.ui.model.ViewModel`, which keeps only the newest result per stream. So a
view that paints slower than results arrive shows the newest one and drops the rest; nothing queues up.

Daemon restarts: ZeroMQ reconnects a SUB socket by itself, but what was published while the daemon was away is
lost. A connection that hears nothing for ``stale_s`` (the daemon publishes ``status`` every 2 s) reopens its
subscriber, which asks the snapshot socket again; after a ``status`` with ``state: stopped``, a silence, or a
``status`` whose ``uptime_s`` went backwards (a crash and a quick restart), the next message from the daemon triggers
a snapshot refetch, so the view catches up with the last result per stream.

>>> parse_endpoint("tcp://10.0.0.5:5555")
Endpoint(pub='tcp://10.0.0.5:5555', snapshot='tcp://10.0.0.5:5556')
>>> parse_endpoint("tcp://127.0.0.1:6000,tcp://127.0.0.1:7000").snapshot
'tcp://127.0.0.1:7000'
>>> parse_endpoint("ipc:///run/copilot.pub,none").snapshot is None
True
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from copilot.publish.subscriber import Message, Subscriber
from copilot.ui.model import ViewModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    pub: str
    snapshot: str | None


def parse_endpoint(text: str) -> Endpoint:
    """``PUB[,SNAPSHOT]``; without SNAPSHOT a ``tcp://host:port`` gets ``port + 1`` (the daemon's default pairing);
    ``none`` means no snapshot socket (no catch-up for late joiners)."""
    pub, _, snap = (x.strip() for x in text.partition(","))
    if not pub:
        raise ValueError(f"empty endpoint in {text!r}")
    if snap.lower() == "none":
        return Endpoint(pub, None)
    if snap:
        return Endpoint(pub, snap)
    m = re.fullmatch(r"(tcp://.+):(\d+)", pub)
    return Endpoint(pub, f"{m.group(1)}:{int(m.group(2)) + 1}" if m else None)


def topics_for(streams: Sequence[str] | None, kinds: Sequence[str] = ("result", "preview", "alert")) -> tuple[str, ...]:
    if not streams:
        return (*(f"{k}." for k in kinds), "status")
    return (*(f"{k}.{s}" for k in kinds for s in streams), "status")


class Connection:
    """One daemon: a :class:`Subscriber` that is drained without blocking and reopened when the daemon goes quiet."""

    def __init__(self, endpoint: Endpoint, topics: Sequence[str], *, stale_s: float = 6.0,
                 snapshot_timeout_s: float = 1.0, rcvhwm: int = 200, clock: Callable[[], float] = time.monotonic):
        self.endpoint = endpoint
        self.topics = tuple(topics)
        self.stale_s = stale_s
        self.rcvhwm = rcvhwm
        self.clock = clock
        self.state = "connecting"  # connecting | live | silent | stopped
        self.reconnects = 0
        self.received = 0
        self.sub: Subscriber | None = None
        self._open(snapshot_timeout_s)
        self.last_rx = self.last_attempt = clock()
        self._catch_up = False
        self._uptime: float | None = None

    @property
    def name(self) -> str:
        return self.endpoint.pub

    def _open(self, snapshot_timeout_s: float) -> None:
        self.sub = Subscriber(self.endpoint.pub, self.endpoint.snapshot, topics=self.topics, rcvhwm=self.rcvhwm,
                              snapshot_timeout_s=snapshot_timeout_s)

    def reopen(self, snapshot_timeout_s: float = 0.25) -> None:
        """A fresh SUB socket and a snapshot request (blocks at most ~``snapshot_timeout_s``)."""
        if self.sub is not None:
            self.sub.close()
            self.sub = None
        self.reconnects += 1
        self.last_attempt = self.clock()
        sublog = logging.getLogger("copilot.publish.subscriber")
        level = sublog.level
        sublog.setLevel(logging.ERROR)  # "no snapshot" every few seconds while the daemon is away is noise
        try:
            self._open(snapshot_timeout_s)
        finally:
            sublog.setLevel(level)

    def drain(self, max_messages: int = 5000) -> list[Message]:
        """Every message waiting now (snapshot ones first), without blocking."""
        assert self.sub is not None
        msgs: list[Message] = []
        while len(msgs) < max_messages and (m := self.sub.recv(timeout_s=0)) is not None:
            msgs.append(m)
        now = self.clock()
        if msgs:
            self.last_rx = now
            back = self.state in ("silent", "stopped")
            self.state = "live"
            for m in msgs:
                if m.kind != "status" or not isinstance(m.doc, dict):
                    continue
                if m.doc.get("state") == "stopped":
                    self.state = "stopped"
                    self._catch_up = True
                uptime = m.doc.get("uptime_s")
                if isinstance(uptime, (int, float)):
                    if self._uptime is not None and uptime < self._uptime - 0.5:
                        back = True  # restarted between two status messages (a crash and a quick restart)
                    self._uptime = float(uptime)
            if (back or self._catch_up) and self.state == "live" and self.endpoint.snapshot is not None:
                # The daemon is back: fetch what it published while we were not hearing it.
                self._catch_up = False
                if self.sub.fetch_snapshot(0.5):
                    while len(msgs) < max_messages and (m := self.sub.recv(timeout_s=0)) is not None:
                        msgs.append(m)
            self.received += len(msgs)
        elif now - self.last_rx > self.stale_s:
            if self.state != "stopped":
                self.state = "silent"
            self._catch_up = True
            if now - self.last_attempt > self.stale_s:
                if self.reconnects == 0 or self.state == "live":
                    log.info("nothing from %s for %.0f s: reconnecting every %.0f s", self.name, now - self.last_rx,
                             self.stale_s)
                self.reopen()  # snapshot results it queues come out on the next drain
        return msgs

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
            self.sub = None


class Client:
    """Several daemons feeding one :class:`ViewModel`."""

    def __init__(self, endpoints: Sequence[Endpoint | str], streams: Sequence[str] | None = None, *,
                 kinds: Sequence[str] = ("result", "preview", "alert"), model: ViewModel | None = None, **kw):
        self.model = model or ViewModel(streams)
        topics = topics_for(streams, kinds)
        self.connections: list[Connection] = []
        try:
            for e in endpoints:
                self.connections.append(Connection(parse_endpoint(e) if isinstance(e, str) else e, topics, **kw))
                self.model.watch(self.connections[-1].name)
        except BaseException:
            self.close()
            raise

    def poll(self) -> set[str]:
        """Drain every connection; returns the streams whose view changed."""
        changed: set[str] = set()
        for c in self.connections:
            for msg in c.drain():
                s = self.model.ingest(msg, source=c.name)
                if s is not None:
                    changed.add(s)
        return changed

    def states(self) -> dict[str, str]:
        return {c.name: c.state for c in self.connections}

    def close(self) -> None:
        for c in self.connections:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
