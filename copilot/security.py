"""Socket security: ZeroMQ CURVE (pyzmq's ``zmq.auth``) whenever a socket binds beyond loopback.

- The daemon has one key pair (``copilot keys --name server``: ``server.key`` public, ``server.key_secret``
  secret); every client (a viewer, ``copilot tail``, the microscope PC's pusher) has its own, and the daemon
  accepts only clients whose public key file lies in its allow-list folder (``security.client_keys_dir``).
- A non-loopback bind without keys is refused at start, unless the config says ``security.insecure = true``
  (logged loudly at every start).
- ``127.0.0.1`` / ``localhost`` / ``::1``, ``ipc://`` and ``inproc://`` count as loopback (local users only).

>>> is_loopback("tcp://127.0.0.1:5555"), is_loopback("tcp://0.0.0.0:5555"), is_loopback("ipc:///run/copilot")
(True, False, True)
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from copilot.errors import CopilotError

log = logging.getLogger(__name__)


class SecurityError(CopilotError, ValueError):
    """A key file that is missing or unreadable, or a security setting that cannot work."""


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable from this machine only."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = re.fullmatch(r"tcp://(?:([^;]*);)?\[?([^\]]+?)\]?:(\d+|\*)", endpoint)
    if not m:
        return False
    host = m.group(2)
    return host in ("localhost", "::1") or host.startswith("127.")


def create_keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """``<name>.key`` (public: give it to the other side) and ``<name>.key_secret`` (keep it; mode 0600)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SecurityError(f"key name {name!r}: use letters, digits, '.', '_' or '-'")
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise SecurityError(f"{public} or {secret} exists already; choose another name or folder")
    pub, sec = zmq.auth.create_certificates(str(folder), name)
    Path(sec).chmod(0o600)
    return Path(pub), Path(sec)


def _load(path: Path | str, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key file {path}: {exc}") from exc
    if secret and secret_key is None:
        raise SecurityError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret_key


class ServerSecurity:
    """CURVE server side for every socket the daemon binds; only allow-listed client keys get in."""

    def __init__(self, secret_key_file: Path | str, client_keys_dir: Path | str):
        self.public, self.secret = _load(secret_key_file, secret=True)
        self.allow_dir = Path(client_keys_dir)
        if not self.allow_dir.is_dir() or not any(self.allow_dir.glob("*.key")):
            raise SecurityError(f"security.client_keys_dir {self.allow_dir}: a folder with at least one client public "
                            "key (*.key) is needed; only those clients may connect")
        self._auth: dict[int, ThreadAuthenticator] = {}
        self._lock = threading.Lock()

    def _authenticator(self, ctx: zmq.Context) -> None:
        with self._lock:
            if id(ctx) in self._auth:
                return
            auth = ThreadAuthenticator(ctx, log=logging.getLogger("copilot.security.zap"))
            auth.start()
            auth.configure_curve(domain="*", location=str(self.allow_dir))
            self._auth[id(ctx)] = auth

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a CURVE server whose ZAP handler checks the allow-list."""
        self._authenticator(sock.context)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def release(self, ctx: zmq.Context) -> None:
        """Stop the authenticator of ``ctx`` (before that context is terminated, or terminating it hangs)."""
        with self._lock:
            auth = self._auth.pop(id(ctx), None)
        if auth is not None:
            auth.stop()

    def close(self) -> None:
        with self._lock:
            auths, self._auth = list(self._auth.values()), {}
        for auth in auths:
            auth.stop()


class ClientSecurity:
    """CURVE client side: this client's key pair and the daemon's public key."""

    def __init__(self, public: bytes, secret: bytes, server_public: bytes):
        self.public, self.secret, self.server_public = public, secret, server_public

    @classmethod
    def from_files(cls, client_secret_file: Path | str | None, server_public_file: Path | str | None) -> "ClientSecurity":
        if not client_secret_file or not server_public_file:
            raise SecurityError("CURVE needs both this client's secret key file and the daemon's public key file")
        public, secret = _load(client_secret_file, secret=True)
        server_public, _ = _load(server_public_file, secret=False)
        return cls(public, secret, server_public)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public


def server_security(endpoints: dict[str, str], secret_key_file: Path | None, client_keys_dir: Path | None,
                    insecure: bool) -> ServerSecurity | None:
    """The daemon's decision at start: CURVE when keys are configured; otherwise loopback only, unless insecure.

    ``endpoints`` names each bound endpoint (``publish.pub_endpoint`` …) for the error message.
    """
    exposed = {name: ep for name, ep in endpoints.items() if not is_loopback(ep)}
    if secret_key_file is not None:
        if client_keys_dir is None:
            raise SecurityError("security.server_secret_key is set but security.client_keys_dir is not: name the folder "
                            "of client public keys allowed to connect")
        return ServerSecurity(secret_key_file, client_keys_dir)
    if exposed:
        listing = ", ".join(f"{n} = {ep}" for n, ep in exposed.items())
        if not insecure:
            raise SecurityError(f"{listing} binds beyond loopback without CURVE keys: anyone on the network could read "
                            "results or push frames. Run `copilot keys` and set security.server_secret_key and "
                            "security.client_keys_dir, or bind 127.0.0.1, or (not recommended) security.insecure = true")
        log.warning("!" * 100)
        log.warning("INSECURE: %s binds beyond loopback WITHOUT authentication or encryption (security.insecure = "
                    "true). Anyone who can reach this machine can read every result and push frames.", listing)
        log.warning("!" * 100)
    return None
