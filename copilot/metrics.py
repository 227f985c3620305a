"""Prometheus endpoint (prometheus-client): per-stage latency histograms, frames by outcome, queue depths,
skipped/dropped counts, last seq per stream, backend and model version.

Served over HTTP on ``metrics.listen`` (``127.0.0.1:9464`` by default; ``""`` turns it off). Counts are read from
the daemon's status at scrape time, so they never drift from what the status heartbeat says.

    curl -s 127.0.0.1:9464/metrics | grep copilot_
"""

from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from copilot.result import Result

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
OUTCOMES = ("processed", "quarantined", "failed", "skipped", "duplicates")


class _StatusCollector:
    """Turns the daemon's status dict into metric families at every scrape."""

    def __init__(self, status: Callable[[], dict]):
        self.status = status

    def collect(self):
        st = self.status()
        frames = CounterMetricFamily("copilot_frames", "frames by outcome since start", labels=["outcome"])
        for outcome in OUTCOMES:
            frames.add_metric([outcome], st.get(outcome, 0))
        yield frames
        yield CounterMetricFamily("copilot_received_frames", "frames handed to the pipeline", value=st.get("received", 0))
        depth = GaugeMetricFamily("copilot_queue_depth", "frames waiting before each stage", labels=["queue"])
        for i, n in enumerate(st.get("queues", [])):
            depth.add_metric([str(i)], n)
        yield depth
        seq = GaugeMetricFamily("copilot_last_seq", "last sequence number journaled per stream", labels=["stream"])
        for stream, n in (st.get("last_seq") or {}).items():
            seq.add_metric([stream], n)
        yield seq
        pub, dlv = st.get("publisher") or {}, st.get("delivery") or {}
        dropped = CounterMetricFamily("copilot_dropped_messages", "messages not delivered, by where", labels=["where"])
        dropped.add_metric(["publisher_send_queue_full"], pub.get("dropped", 0))
        dropped.add_metric(["delivery_failed_retried"], dlv.get("failed", 0))
        dropped.add_metric(["pruned_before_delivery"], dlv.get("too_old", 0))
        yield dropped
        yield _replayed(pub, dlv)
        info = InfoMetricFamily("copilot_backend", "backend and model serving this stream")
        info.add_metric([], {"model": str(st.get("model", "")), "model_version": str(st.get("model_version", "")),
                             "backend": str(st.get("backend", "")), "session_epoch": str(st.get("session_epoch", ""))})
        yield info
        yield GaugeMetricFamily("copilot_healthy", "1 while every stage thread is alive", value=int(st.get("healthy", 1)))
        yield GaugeMetricFamily("copilot_uptime_seconds", "seconds since the daemon started", value=st.get("uptime_s", 0))


def _replayed(pub: dict, dlv: dict) -> CounterMetricFamily:
    c = CounterMetricFamily("copilot_replayed_results", "results delivered again from the store", labels=["by"])
    c.add_metric(["snapshot_since_requests"], pub.get("replayed", 0))
    c.add_metric(["restart_catch_up"], dlv.get("replayed", 0))
    return c


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; raises ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"metrics.listen must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


class Metrics:
    """The endpoint and the latency histograms; ``observe`` is a pipeline sink (called once per result)."""

    def __init__(self, status: Callable[[], dict], listen: str = "127.0.0.1:9464"):
        self.registry = CollectorRegistry(auto_describe=False)
        self.stage_seconds = Histogram("copilot_stage_seconds", "time per pipeline stage (queue_wait: time queued; "
                                       "end_to_end: from the input being complete to the result)", ["stage"],
                                       buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_StatusCollector(status))
        self._server = None
        host, port = parse_listen(listen)
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
            self.port = self._server.server_port
            log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)
        except OSError as exc:  # a metrics port in use must not stop the microscope's co-pilot
            log.error("metrics endpoint %s not started: %s", listen, exc)
            self.port = None

    def observe(self, result: Result) -> None:
        for stage, ms in result.doc.timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1e3)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
