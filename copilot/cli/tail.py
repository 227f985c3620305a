"""``copilot tail``: print result documents, one JSON line each, exactly once and in seq order per stream — across
daemon kills and restarts (a lossless :class:`~copilot.publish.subscriber.Subscriber`: live messages, gaps filled
from the daemon's store).

    copilot tail                         # the last result of every stream, then exit
    copilot tail --follow                # ... and every new one, until Ctrl-C
    copilot tail --stream cam1 --from-seq 0 --follow    # everything cam1 ever journaled, then live
"""

from __future__ import annotations

import sys
import time

from copilot.publish.publisher import LAST_SEQ_REQUEST

DEFAULT_PUB = "tcp://127.0.0.1:5555"
DEFAULT_SNAPSHOT = "tcp://127.0.0.1:5556"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tail", help="print result documents (JSON lines), never missing or repeating one")
    p.add_argument("--endpoint", default=DEFAULT_PUB, help="the daemon's publish endpoint")
    p.add_argument("--snapshot", default=DEFAULT_SNAPSHOT, help="the daemon's snapshot endpoint (replay)")
    p.add_argument("--stream", default=None, help="only this stream")
    p.add_argument("--from-seq", type=int, default=None,
                   help="start after this seq (0: from the first result kept); default: the last result of each stream")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new results until interrupted")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the daemon at start")
    p.add_argument("--curve-server-key", default=None, help="the daemon's public key file (CURVE)")
    p.add_argument("--curve-key", default=None, help="this client's secret key file (CURVE)")
    p.set_defaults(func=run)


def run(args) -> int:
    from copilot.publish.subscriber import Subscriber

    if args.from_seq is not None and args.from_seq < 0:
        print("copilot tail: --from-seq must be 0 or more", file=sys.stderr)
        return 2
    security = None
    if args.curve_server_key or args.curve_key:
        from copilot.security import ClientSecurity, SecurityError

        try:
            security = ClientSecurity.from_files(args.curve_key, args.curve_server_key)
        except SecurityError as exc:
            print(f"copilot tail: {exc}", file=sys.stderr)
            return 2
    topics = (f"result.{args.stream}",) if args.stream else ("result.",)
    last = _last_seqs(args, security)
    if last is None:
        print(f"copilot tail: no answer from {args.snapshot} within {args.connect_timeout:g} s", file=sys.stderr)
        return 1
    if args.stream:
        last = {s: n for s, n in last.items() if s == args.stream}
    start: int | dict[str, int]
    if args.from_seq is not None:
        start = args.from_seq
    else:  # the last result of each stream (a stream that appears later starts at its first result)
        start = {s: max(n - 1, 0) for s, n in last.items()}
    sub = Subscriber(args.endpoint, args.snapshot, topics, lossless=True, from_seq=start if start != {} else None,
                     snapshot_timeout_s=args.connect_timeout, security=security)
    out = sys.stdout
    try:
        while True:
            if not args.follow and all(sub.last_seq.get(s, 0) >= n for s, n in last.items()) and not sub.backlog:
                return 0
            msg = sub.recv(timeout_s=1.0)
            if msg is None:
                continue
            if msg.kind != "result":
                continue
            out.write(msg.doc.to_json() + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `copilot tail | head`
        return 0
    finally:
        sub.close()


def _last_seqs(args, security) -> dict[str, int] | None:
    """The daemon's ``{stream: last seq}`` (LAST_SEQ on the snapshot socket), waiting up to --connect-timeout."""
    import json

    import zmq

    ctx = zmq.Context.instance()
    deadline = time.monotonic() + args.connect_timeout
    while time.monotonic() < deadline:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if security is not None:
            security.apply(dealer)
        try:
            dealer.connect(args.snapshot)
            dealer.send_multipart([LAST_SEQ_REQUEST])
            if dealer.poll(int(min(2.0, max(0.05, deadline - time.monotonic())) * 1000)):
                frames = dealer.recv_multipart()
                end = json.loads(frames[1]) if len(frames) > 1 else {}
                if isinstance(end, dict) and isinstance(end.get("last_seq"), dict):
                    return {str(k): int(v) for k, v in end["last_seq"].items()}
                return {}
        finally:
            dealer.close(0)
    return None
