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

Security is the daemon's (``copilot.security``): binding beyond loopback needs the hub's CURVE key pair
(``--curve-secret-key``, from ``copilot keys``) and a folder of allowed viewers' public keys (``--client-keys-dir``),
or an explicit, logged ``--insecure``. Toward daemons that bind beyond loopback the hub is a CURVE client with the
same key pair (allow its public key on each daemon) and the daemon's public key (``--daemon-key``, or a third field
of ``--daemon``).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
import zmq

from copilot.publish.publisher import SNAPSHOT_END, dumps
from copilot.security import ClientSecurity, SecurityError, server_security

log = logging.getLogger(__name__)


class HubError(ValueError):
    """A hub that cannot start as asked (an unsafe bind, a malformed endpoint)."""


@dataclass(frozen=True)
class Upstream:
    """One daemon: its PUB endpoint and its snapshot endpoint."""

    pub: str
    snapshot: str | None = None
    server_key: Path | None = None  # the daemon's public key file, when it binds beyond loopback with CURVE

    @classmethod
    def parse(cls, text: str, default_key: Path | None = None) -> "Upstream":
        """``tcp://host:5555[,tcp://host:5556[,/keys/host.key]]`` (PUB[,snapshot[,daemon public key]])."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        eps = parts[:2]
        if not parts or len(parts) > 3 or not all(p.startswith(("tcp://", "ipc://", "inproc://")) for p in eps):
            raise HubError(f"--daemon {text!r}: expected PUB_ENDPOINT[,SNAPSHOT_ENDPOINT[,DAEMON_KEY]] such as "
                           "tcp://10.0.0.5:5555,tcp://10.0.0.5:5556")
        key = Path(parts[2]) if len(parts) == 3 else default_key
        return cls(eps[0], eps[1] if len(eps) == 2 else None, key)


@dataclass
class HubSecurity:
    """The hub's keys: a CURVE pair (``copilot keys``) and the allow-list of viewers' public keys."""

    secret_key_file: Path | None = None
    client_keys_dir: Path | None = None
    insecure: bool = False

    def server(self, endpoints: dict[str, str]):
        """``copilot.security.server_security``: CURVE, or loopback only unless insecure (raises SecurityError)."""
        return server_security(endpoints, self.secret_key_file, self.client_keys_dir, self.insecure)

    def client(self, up: Upstream):
        """CURVE toward a daemon that has a public key configured, else None (plain: a loopback daemon)."""
        if up.server_key is None:
            return None
        if self.secret_key_file is None:
            raise HubError(f"--daemon {up.pub}: a daemon key needs the hub's own --curve-secret-key (allow its public "
                           "key on that daemon)")
        return ClientSecurity.from_files(self.secret_key_file, up.server_key)


class Hub:
    """Aggregates daemons' PUB sockets (``zmq.proxy``) and snapshot sockets (forwarding); ``close`` stops both."""

    def __init__(self, upstreams: list[Upstream], pub_endpoint: str = "tcp://127.0.0.1:5565",
                 snapshot_endpoint: str | None = "tcp://127.0.0.1:5566", *, security: HubSecurity | None = None,
                 timeout_s: float = 2.0, hwm: int = 1000, context: zmq.Context | None = None):
        if not upstreams:
            raise HubError("a hub needs at least one --daemon")
        self.upstreams = list(upstreams)
        self.security = security or HubSecurity()
        endpoints = {"--pub": pub_endpoint, **({"--snapshot": snapshot_endpoint} if snapshot_endpoint else {})}
        self._server = self.security.server(endpoints)  # refuses an unauthenticated bind beyond loopback
        self._clients = [self.security.client(u) for u in upstreams]
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
            self.pub_endpoint = self._bind(self._xpub, pub_endpoint)
            # plain daemons first: CURVE options stick to the socket and apply to every later connect
            for u, client in sorted(zip(self.upstreams, self._clients), key=lambda uc: uc[1] is not None):
                if client is not None:
                    client.apply(self._xsub)
                self._xsub.connect(u.pub)
            self.snapshot_endpoint = None
            if snapshot_endpoint is not None:
                self._router = self._ctx.socket(zmq.ROUTER)
                self._router.setsockopt(zmq.LINGER, 0)
                self.snapshot_endpoint = self._bind(self._router, snapshot_endpoint)
        except Exception:
            self._close_sockets()
            raise
        self._ctrl_addr = f"inproc://copilot-hub-ctrl-{id(self):x}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)

    def _bind(self, sock: zmq.Socket, endpoint: str) -> str:
        if self._server is not None:
            self._server.apply(sock)
        sock.bind(endpoint)
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

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
        log.debug("hub: %s → daemon(s) %s", [bytes(f[:40]) for f in body[:3]], targets)
        dealers = {}
        for i in targets:
            d = self._ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            if self._clients[i] is not None:
                self._clients[i].apply(d)
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
        if self._server is not None:
            self._server.release(self._ctx)  # before the context ends, or terminating it hangs

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
                   help="the hub's key pair (`copilot keys --name hub`): required to bind beyond loopback, and the "
                   "hub's identity toward daemons that use CURVE")
    p.add_argument("--client-keys-dir", type=Path, default=None, help="public keys of the viewers allowed in")
    p.add_argument("--daemon-key", type=Path, default=None,
                   help="public key of daemons bound beyond loopback (or a third field of --daemon, per daemon)")
    p.add_argument("--insecure", action="store_true", help="bind beyond loopback without CURVE (logged)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each daemon's snapshot answer")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import sys

    try:
        hub = Hub([Upstream.parse(d, args.daemon_key) for d in args.daemon], args.pub, args.snapshot,
                  security=HubSecurity(args.curve_secret_key, args.client_keys_dir, args.insecure),
                  timeout_s=args.timeout).start()
    except (HubError, SecurityError, zmq.ZMQError, OSError) as exc:
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
