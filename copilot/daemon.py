"""The service: settings → store, backend, publisher, source, pipeline; runs until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from copilot.adapt.auto import AutoAdapt
from copilot.adapt.hotswap import ModelWatch
from copilot.config import ConfigError, Settings
from copilot.delivery import Delivery, PublishSink, new_epoch, open_session_exports
from copilot.inflight import InflightLog
from copilot.inference.select import load_backend
from copilot.metrics import Metrics, parse_listen
from copilot.pipeline import Pipeline
from copilot.publish.publisher import Publisher
from copilot.security import SecurityError, ServerSecurity, is_loopback, server_security
from copilot.readers.base import path_text
from copilot.service import SystemdNotifier
from copilot.sources.base import Source
from copilot.store import ResultStore, file_fingerprint

log = logging.getLogger(__name__)


def build_security(settings: Settings) -> ServerSecurity | None:
    """CURVE for every bound socket when keys are configured; a bind beyond loopback without them is refused
    (unless ``security.insecure``)."""
    endpoints = {"publish.pub_endpoint": settings.publish.pub_endpoint,
                 "publish.snapshot_endpoint": settings.publish.snapshot_endpoint}
    if settings.source.kind == "socket":
        endpoints["source.endpoint"] = settings.source.endpoint
    sec = settings.security
    if settings.metrics.listen:
        host, _ = parse_listen(settings.metrics.listen)
        if not is_loopback(f"tcp://{host}:0") and not sec.insecure:
            raise SecurityError(f"metrics.listen = {settings.metrics.listen} serves beyond loopback over plain HTTP: "
                                "bind 127.0.0.1 (scrape through an SSH tunnel or a local Prometheus), or set "
                                "security.insecure = true")
    return server_security(endpoints, sec.server_secret_key, sec.client_keys_dir, sec.insecure)


def build_source(settings: Settings, store: ResultStore, security: ServerSecurity | None = None) -> Source:
    s = settings.source
    if s.kind == "socket":
        from copilot.sources.socket import SocketSource

        return SocketSource(s.endpoint, max_bytes=int(s.max_message_mb * 2**20), stream_default=settings.daemon.stream,
                            security=security, limits=settings.limits)
    from copilot.sources.directory import DirectorySource

    if s.watch is None:
        raise ConfigError("source.watch: a folder to watch is required for source.kind = 'directory' (or --watch DIR)")
    if not Path(s.watch).is_dir():
        raise ConfigError(f"source.watch: {s.watch} is not a folder (give --watch an existing folder)")

    def is_done(path: str) -> bool:
        try:
            return store.is_done(path_text(path), file_fingerprint(Path(path)))
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


def skip_poison(inflight: InflightLog, store: ResultStore) -> list[str]:
    """Record as quarantined every input that was in flight at ``inflight.max_deaths`` deaths of the daemon, so this
    start skips it; returns their origins."""
    skipped = []
    for origin, fingerprint, deaths in inflight.recover():
        reason = (f"the daemon died {deaths} times while this input was being processed (crash, out-of-memory kill "
                  "or a stuck stage); skipped so that the others are")
        log.error("skipping %s: %s", origin, reason)
        store.record_failure(origin, fingerprint or None, "quarantined", reason)
        skipped.append(origin)
    return skipped


class Daemon:
    """Owns every long-lived part; ``run()`` blocks until ``request_stop()`` or a signal."""

    def __init__(self, settings: Settings, extra_sinks=()):
        self.settings = settings
        state = Path(settings.daemon.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.store = ResultStore(state / "results.sqlite")
        self.epoch = self.store.epoch = new_epoch()
        self.security = build_security(settings)  # refuses an unauthenticated bind beyond loopback, before any bind
        self.inflight = InflightLog(state / "inflight.sqlite")
        self.skipped_at_start = skip_poison(self.inflight, self.store)
        self.source = build_source(settings, self.store, self.security)  # a bad source fails here, before any bind
        m = settings.model
        self.backend = self._load_backend()
        self.publisher = Publisher(settings.publish.pub_endpoint, settings.publish.snapshot_endpoint, history=self.store,
                                   security=self.security)
        self._prune()
        for stream in self.store.last_seqs():  # late joiners get the last result even before the next frame
            if (doc := self.store.last(stream)) is not None:
                self.publisher.keep_last(doc)
        self.exports = open_session_exports(self.store, state / "sessions", settings.daemon.stream,
                                            gap_min=settings.daemon.session_gap_min)
        self.session_dir = self.exports.out_dir
        self.delivery = Delivery(self.store, [PublishSink(self.publisher), self.exports])
        self.auto_adapt = AutoAdapt(settings.adapt, m.name, self._window_warn)
        self.pipeline = Pipeline(
            self.backend,
            stream=settings.daemon.stream,
            store=self.store,
            sinks=[self.delivery, self._observe, self.auto_adapt, *extra_sinks],
            quarantine_dir=state / "quarantine",
            quarantine_mode=settings.daemon.quarantine,
            analysis=settings.analysis,
            eds=settings.eds,
            series=settings.series,
            thresholds=settings.verdict,
            send_labels=settings.publish.send_labels,
            queue_size=settings.pipeline.queue_size,
            workers=settings.pipeline.measure_workers, measure_mode=settings.pipeline.measure_mode,
            limits=settings.limits,
            watch_root=settings.source.watch if settings.source.kind == "directory" else None,
            inflight=self.inflight,
            stuck_after_s=settings.limits.max_stage_s,
            model_watch=ModelWatch(m.name, self._load_backend, self.backend.card.model_sha256,
                                   settings.adapt.hot_swap_interval_s) if settings.adapt.hot_swap else None,
        )
        self.metrics = Metrics(self.status, settings.metrics.listen) if settings.metrics.listen else None
        self.notifier = SystemdNotifier()
        self._stop = threading.Event()
        self.started_at = time.time()
        self.problems: list[str] = []  # why run() gave up, when it did

    def _load_backend(self):
        m, limits = self.settings.model, self.settings.limits
        backend = load_backend(m.name, m.backend, m.threads, m.max_whole_px,
                               state_dir=Path(self.settings.daemon.state_dir), precision=m.precision,
                               triton=self.settings.triton)
        backend.max_upsample = limits.max_upsample
        backend.max_working_px = limits.max_working_mpx * 1e6
        return backend

    def _window_warn(self) -> float | None:
        """The rolling shift window's warn level of the model in use (MMD², from its reliability calibration)."""
        cal = self.pipeline.assessor.calibration
        return cal.shift_mmd2_p99 if cal is not None else None

    def _prune(self) -> None:
        days = self.settings.daemon.keep_documents_days
        if days is not None:
            n = self.store.prune_documents(datetime.now(timezone.utc) - timedelta(days=days))
            if n:
                log.info("pruned %d result documents older than %g days (replay answers 'too old' for them)", n, days)

    def _observe(self, result) -> None:
        if self.metrics is not None:
            self.metrics.observe(result)

    def status(self) -> dict:
        problems = self.pipeline.problems()
        return {
            "stream": self.settings.daemon.stream,
            "model_version": self.pipeline.backend.card.version,
            "session_epoch": self.epoch,
            "last_seq": self.store.last_seqs(),
            "delivery": asdict(self.delivery.stats),
            "publisher": self.publisher.stats(),
            "session_dir": str(self.session_dir),
            "model": self.pipeline.backend.card.name,
            "backend": self.pipeline.backend.name,
            "backend_selection": [f"{name}: {outcome}" for name, outcome in getattr(self.pipeline.backend, "selection",
                                                                                    [])],
            "backend_status": self.pipeline.backend.status() if hasattr(self.pipeline.backend, "status") else None,
            "adaptation": self.auto_adapt.status(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "queues": self.pipeline.queue_depths(),
            "healthy": not problems,
            "problems": problems,
            "skipped_at_start": self.skipped_at_start,
            **asdict(self.pipeline.stats),
        }

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def run(self, install_signals: bool = True) -> int:
        """Serve until a stop is requested (0) or the pipeline is unhealthy (1: a stage thread died or is stuck; the
        watchdog is no longer fed and the non-zero exit lets systemd's ``Restart=on-failure`` restart the daemon)."""
        if install_signals:
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
        replayed = self.delivery.catch_up()  # journaled before a kill but not yet published/exported
        if replayed:
            log.info("delivered %d journaled result(s) a previous run had not published/exported", replayed)
        self.pipeline.start(self.source)
        self.notifier.ready(f"watching with {self.backend.card.name} on {self.backend.name}")
        log.info("co-pilot ready: stream %s, publishing on %s", self.settings.daemon.stream,
                 self.settings.publish.pub_endpoint)
        interval = self.notifier.watchdog_interval_s() or 2.0
        exit_code = 0
        try:
            while not self._stop.wait(min(interval, 2.0)):
                st = self.status()
                if not st["healthy"]:
                    self.problems = st["problems"]
                    log.error("unhealthy, exiting for a restart: %s", "; ".join(st["problems"]))
                    self.publisher.publish_status({**st, "state": "unhealthy"})
                    self.notifier.status("unhealthy: " + "; ".join(st["problems"]))
                    exit_code = 1
                    break
                self.publisher.publish_status(st)
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
            if self.metrics is not None:
                self.metrics.close()
            if self.security is not None:
                self.security.close()
            self.store.close()
            self.inflight.close()
            self.notifier.close()
        return exit_code
