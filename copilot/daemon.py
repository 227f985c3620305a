"""The service: settings → store, engine, publisher, source, pipeline; runs until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from copilot.config import Settings
from copilot.exports import ResultWriter
from copilot.inference.select import load_engine
from copilot.pipeline import Pipeline
from copilot.publish.publisher import Publisher
from copilot.service import SystemdNotifier
from copilot.sources.base import Source
from copilot.store import ResultStore, file_fingerprint

log = logging.getLogger(__name__)


def build_source(settings: Settings, store: ResultStore) -> Source:
    s = settings.source
    if s.kind == "socket":
        from copilot.sources.socket import SocketSource

        return SocketSource(s.endpoint, max_bytes=int(s.max_message_mb * 2**20), stream_default=settings.daemon.stream)
    from copilot.sources.directory import DirectorySource

    if s.watch is None:
        raise ValueError("source.watch: a folder to watch is required for source.kind = 'directory' (or --watch DIR)")
    if not Path(s.watch).is_dir():
        raise FileNotFoundError(f"source.watch: {s.watch} is not a folder")

    def is_done(path: str) -> bool:
        try:
            return store.is_done(path, file_fingerprint(Path(path)))
        except FileNotFoundError:
            return True

    return DirectorySource(
        s.watch,
        include=tuple(s.include),
        exclude=tuple(s.exclude),
        recursive=s.recursive,
        poll=s.poll,
        poll_interval_s=s.poll_interval_s,
        settle_s=s.settle_s,
        existing=s.existing,
        is_done=is_done,
    )


class Daemon:
    """Owns every long-lived part; ``run()`` blocks until ``request_stop()`` or a signal."""

    def __init__(self, settings: Settings, extra_sinks=()):
        self.settings = settings
        state = Path(settings.daemon.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.store = ResultStore(state / "results.sqlite")
        self.source = build_source(settings, self.store)  # a bad source fails here, before any socket is bound
        m = settings.model
        self.engine = load_engine(m.name, m.engine, m.threads, m.max_whole_px, state_dir=state, precision=m.precision)
        self.publisher = Publisher(settings.publish.pub_endpoint, settings.publish.snapshot_endpoint)
        session = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.session_dir = state / "sessions" / f"{settings.daemon.stream}-{session}"
        self.exports = ResultWriter(self.session_dir)
        self.pipeline = Pipeline(
            self.engine,
            stream=settings.daemon.stream,
            store=self.store,
            sinks=[self._publish, self.exports, *extra_sinks],
            quarantine_dir=state / "quarantine",
            quarantine_mode=settings.daemon.quarantine,
            analysis=settings.analysis,
            series=settings.series,
            thresholds=settings.verdict,
            send_labels=settings.publish.send_labels,
            queue_size=settings.pipeline.queue_size,
        )
        self.session_epoch = session
        self.pipeline.session_epoch = session
        self.notifier = SystemdNotifier()
        self._stop = threading.Event()
        self.started_at = time.time()

    def _publish(self, result) -> None:
        self.publisher.publish_result(result.doc, result.parts)
        if result.doc.series is not None:
            for alert in result.doc.series.alerts:
                self.publisher.publish_alert(result.doc.stream,
                                             {"frame_id": result.doc.frame_id, **alert.model_dump(mode="json")})
        if getattr(result, "frame", None) is not None:  # preview.<stream>: subscribers need no access to the files
            from copilot.publish.preview import make_preview
            self.publisher.publish_preview(result.doc.stream, *make_preview(result.frame))

    def status(self) -> dict:
        return {
            "stream": self.settings.daemon.stream,
            "session_epoch": self.session_epoch,
            "model": self.engine.card.name,
            "engine": self.engine.name,
            "engine_selection": [f"{name}: {outcome}" for name, outcome in getattr(self.engine, "selection", [])],
            "uptime_s": round(time.time() - self.started_at, 1),
            "queues": self.pipeline.queue_depths(),
            **asdict(self.pipeline.stats),
        }

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
        self.pipeline.start(self.source)
        self.notifier.ready(f"watching with {self.engine.card.name} on {self.engine.name}")
        log.info("co-pilot ready: stream %s, publishing on %s", self.settings.daemon.stream,
                 self.settings.publish.pub_endpoint)
        interval = self.notifier.watchdog_interval_s() or 2.0
        try:
            while not self._stop.wait(min(interval, 2.0)):
                st = self.status()
                self.publisher.publish_status(st)
                if self.pipeline.healthy():
                    self.notifier.watchdog()
                self.notifier.status(f"{st['processed']} frames, {st['quarantined']} quarantined")
        finally:
            self.notifier.stopping()
            log.info("stopping: finishing frames in flight")
            self.pipeline.stop()
            self.exports.close()
            log.info("session exports: %s", self.session_dir)
            self.publisher.publish_status({**self.status(), "state": "stopped"})
            self.publisher.close()
            self.store.close()
            self.notifier.close()
