"""``copilot hub``: one place to subscribe to every microscope of a facility.

    daemon A PUB ─┐                        ┌─► copilot top / overlay / lab dashboard
    daemon B PUB ─┼─► XSUB ══ zmq.proxy ══ XPUB (--pub)
    daemon C PUB ─┘
    daemon A..C snapshot ROUTERs ◄── DEALER per request ◄── ROUTER (--snapshot) ◄── late joiners, replay

Live messages pass through ``zmq.proxy`` untouched (topics ``result.<stream>``, ``preview.<stream>``,
``alert.<stream>``, ``status``); subscriptions flow upstream, so a viewer that subscribes to ``result.cam1`` makes
every daemon filter for it. The hub's snapshot socket speaks the daemons' snapshot protocol (publisher.py):
``[SNAPSHOT]`` is asked of every daemon and the answers are merged under one ``SNAPSHOT_END``; a request naming a
stream (``[SNAPSHOT, stream]``, or any other verb followed by a stream, such as a replay of "everything of stream S
after seq N") is forwarded verbatim to the daemon that owns the stream — learnt from earlier answers — or to all
of them while the owner is unknown. Requests are answered one at a time; a daemon that does not answer within
``timeout_s`` is left out of that answer (``missing`` in the end marker).

Binding beyond loopback needs CURVE keys (``--curve-secret-key``, a zmq certificate file) or an explicit, logged
``--insecure``. ``secure_bind`` is the single hook where the daemon's own CURVE helper plugs in once it lands.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import zmq

from copilot.publish.publisher import SNAPSHOT_END, dumps

log = logging.getLogger(__name__)


class HubError(ValueError):
    """A hub that cannot start as asked (an unsafe bind, a malformed endpoint)."""


@dataclass(frozen=True)
class Upstream:
    """One daemon: its PUB endpoint and its snapshot endpoint."""

    pub: str
    snapshot: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Upstream":
        """``tcp://host:5555`` or ``tcp://host:5555,tcp://host:5556`` (PUB[,snapshot])."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or len(parts) > 2 or not all(p.startswith(("tcp://", "ipc://", "inproc://")) for p in parts):
            raise HubError(f"--daemon {text!r}: expected PUB_ENDPOINT[,SNAPSHOT_ENDPOINT] such as "
                           "tcp://10.0.0.5:5555,tcp://10.0.0.5:5556")
        return cls(parts[0], parts[1] if len(parts) == 2 else None)


@dataclass
class Security:
    """CURVE for sockets the hub binds beyond loopback. ``secret_key_file``: a zmq certificate (``zmq.auth``)."""

    secret_key_file: Path | None = None
    insecure: bool = False
    _keys: tuple[bytes, bytes] | None = field(default=None, repr=False)

    def keys(self) -> tuple[bytes, bytes]:
        if self._keys is None:
            import zmq.auth

            public, secret = zmq.auth.load_certificate(str(self.secret_key_file))
            if not secret:
                raise HubError(f"{self.secret_key_file}: no secret key in this certificate")
            self._keys = (public, secret)
        return self._keys


def is_loopback(endpoint: str) -> bool:
    """``ipc://`` and ``inproc://`` are local; ``tcp://`` must name 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: beyond loopback
        return False


def secure_bind(sock: zmq.Socket, endpoint: str, security: Security) -> str:
    """Bind ``sock``; beyond loopback only as a CURVE server, or with ``insecure`` (logged). Returns the endpoint.

    The hook for the daemon's CURVE helper: when it lands, call it here so hub and daemon share one key policy.
    """
    if not is_loopback(endpoint):
        if security.secret_key_file is not None:
            public, secret = security.keys()
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
        elif security.insecure:
            log.warning("hub: binding %s WITHOUT encryption or authentication (--insecure)", endpoint)
        else:
            raise HubError(f"refusing to bind {endpoint} beyond loopback without CURVE keys: pass "
                           "--curve-secret-key FILE (zmq certificate), or --insecure on a trusted network")
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class Hub:
    """Aggregates daemons' PUB sockets (``zmq.proxy``) and snapshot sockets (forwarding); ``close`` stops both."""

    def __init__(self, upstreams: list[Upstream], pub_endpoint: str = "tcp://127.0.0.1:5565",
                 snapshot_endpoint: str | None = "tcp://127.0.0.1:5566", *, security: Security | None = None,
                 timeout_s: float = 2.0, hwm: int = 1000, context: zmq.Context | None = None):
        if not upstreams:
            raise HubError("a hub needs at least one --daemon")
        self.upstreams = list(upstreams)
        self.security = security or Security()
        self.timeout_s = timeout_s
        self.owners: dict[str, set[int]] = {}  # stream -> indices of the upstreams that answered for it
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

        self._xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = self._ctx.socket(zmq.XPUB)
        for s in (self._xsub, self._xpub):
            s.setsockopt(zmq.LINGER, 0)
        self._xsub.setsockopt(zmq.RCVHWM, hwm)
        self._xpub.setsockopt(zmq.SNDHWM, hwm)
        self._router = None
        try:
            self.pub_endpoint = secure_bind(self._xpub, pub_endpoint, self.security)
            for u in self.upstreams:
                self._xsub.connect(u.pub)
            self.snapshot_endpoint = None
            if snapshot_endpoint is not None:
                self._router = self._ctx.socket(zmq.ROUTER)
                self._router.setsockopt(zmq.LINGER, 0)
                self.snapshot_endpoint = secure_bind(self._router, snapshot_endpoint, self.security)
        except Exception:
            self._close_sockets()
            raise
        self._ctrl_addr = f"inproc://copilot-hub-ctrl-{id(self):x}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)

    # -- running -----------------------------------------------------------------------------------------------
    def start(self) -> "Hub":
        ready = threading.Event()
        t = threading.Thread(target=self._proxy, args=(ready,), name="copilot-hub-proxy", daemon=True)
        t.start()
        ready.wait()
        self._threads.append(t)
        if self._router is not None:
            t = threading.Thread(target=self._serve_snapshots, name="copilot-hub-snapshot", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("hub: %d daemon(s) → %s (snapshot %s)", len(self.upstreams), self.pub_endpoint, self.snapshot_endpoint)
        return self

    def _proxy(self, ready: threading.Event) -> None:
        ctrl = self._ctx.socket(zmq.PAIR)
        ctrl.connect(self._ctrl_addr)
        ready.set()
        try:
            zmq.proxy_steerable(self._xsub, self._xpub, None, ctrl)
        except zmq.ContextTerminated:
            pass
        finally:
            ctrl.close(0)

    def _serve_snapshots(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            request = self._router.recv_multipart()
            try:
                self._answer(request[0], request[1:])
            except Exception:  # one bad request must never stop the hub
                log.exception("hub: snapshot request failed")

    # -- snapshot forwarding -----------------------------------------------------------------------------------
    def targets(self, body: list[bytes]) -> list[int]:
        """Which upstreams a request goes to: the stream's owner(s) when known, else every daemon."""
        everyone = [i for i, u in enumerate(self.upstreams) if u.snapshot]
        if len(body) >= 2:
            owners = self.owners.get(body[1].decode(errors="replace"))
            if owners:
                return sorted(owners & set(everyone)) or everyone
        return everyone

    def _answer(self, ident: bytes, body: list[bytes]) -> None:
        if not body:
            self._router.send_multipart([ident, SNAPSHOT_END, dumps({"count": 0, "error": "empty request"})])
            return
        targets = self.targets(body)
        dealers = {}
        for i in targets:
            d = self._ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.connect(self.upstreams[i].snapshot)
            d.send_multipart(body)
            dealers[d] = i
        count, errors = 0, []
        pending = dict(dealers)
        poller = zmq.Poller()
        for d in dealers:
            poller.register(d, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout_s
        try:
            while pending and (left := deadline - time.monotonic()) > 0:
                for d, _ in poller.poll(int(left * 1000) + 1):
                    frames = d.recv_multipart(copy=False)
                    if frames[0].bytes == SNAPSHOT_END:
                        end = _end_info(frames)
                        if end.get("error"):
                            errors.append(f"{self.upstreams[pending[d]].snapshot}: {end['error']}")
                        poller.unregister(d)
                        pending.pop(d)
                        continue
                    topic = frames[0].bytes.decode(errors="replace")
                    kind, _, stream = topic.partition(".")
                    if stream:
                        self.owners.setdefault(stream, set()).add(pending[d])
                    self._router.send_multipart([ident, *frames], copy=False)
                    count += 1
        finally:
            for d in dealers:
                d.close(0)
        end = {"count": count, "daemons": len(targets)}
        if pending:
            end["missing"] = sorted(self.upstreams[i].snapshot for i in pending.values())
        if errors and len(errors) == len(targets):
            end["error"] = "; ".join(errors)
        self._router.send_multipart([ident, SNAPSHOT_END, dumps(end)])

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def _close_sockets(self) -> None:
        for s in (self._xsub, self._xpub, self._router):
            if s is not None:
                s.close(0)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._threads:
            self._ctrl.send(b"TERMINATE")
        for t in self._threads:
            t.join(5)
        self._ctrl.close(0)
        self._close_sockets()
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Hub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _end_info(frames) -> dict:
    try:
        return json.loads(frames[1].bytes) if len(frames) > 1 else {}
    except ValueError:
        return {}


# -- command line ------------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("hub", help="aggregate several daemons' results (one place for viewers to subscribe)")
    p.add_argument("--daemon", action="append", required=True, metavar="PUB[,SNAPSHOT]",
                   help="a daemon's endpoints, e.g. tcp://10.0.0.5:5555,tcp://10.0.0.5:5556 (repeat per daemon)")
    p.add_argument("--pub", default="tcp://127.0.0.1:5565", help="where viewers subscribe")
    p.add_argument("--snapshot", default="tcp://127.0.0.1:5566", help="where late joiners ask for snapshots/replays")
    p.add_argument("--curve-secret-key", type=Path, default=None,
                   help="zmq certificate with the hub's secret key (required to bind beyond loopback)")
    p.add_argument("--insecure", action="store_true", help="bind beyond loopback without CURVE (logged)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each daemon's snapshot answer")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import sys

    try:
        hub = Hub([Upstream.parse(d) for d in args.daemon], args.pub, args.snapshot,
                  security=Security(args.curve_secret_key, args.insecure), timeout_s=args.timeout).start()
    except (HubError, zmq.ZMQError, OSError) as exc:
        print(f"copilot hub: {exc}", file=sys.stderr)
        return 2
    print(f"hub: {len(hub.upstreams)} daemon(s) → {hub.pub_endpoint} (snapshot {hub.snapshot_endpoint})", flush=True)
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        hub.close()
    return 0
