"""Push frames to a running daemon's socket: ``copilot push FILE...`` and :func:`push_frames` for scripts/tests.

The standalone instrument-side equivalent (no copilot install needed) is ``adapters/pusher.py``.

Wiring the CLI sub-command (in ``copilot/cli/commands.py``)::

    from copilot.sources import push
    p = sub.add_parser("push", help="send image files or frames to a daemon's socket")
    push.add_arguments(p)
    p.set_defaults(func=push.run)          # run(args) -> exit code
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Union

import zmq

from copilot.errors import CopilotError
from copilot.frame import Frame
from copilot.sources.files import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, iter_files
from copilot.sources.socket import DEFAULT_ENDPOINT
from copilot.sources.wire import encode_frame

log = logging.getLogger(__name__)

FrameOrPath = Union[Frame, str, os.PathLike]


def _expand(items: Iterable[FrameOrPath]) -> Iterable[Frame | Path]:
    for item in items:
        if isinstance(item, Frame):
            yield item
            continue
        p = Path(item)
        if p.is_dir():
            yield from iter_files(p, DEFAULT_INCLUDE, DEFAULT_EXCLUDE)
        else:
            yield p


def push_frames(
    endpoint: str,
    frames_or_paths: Iterable[FrameOrPath],
    *,
    stream: str | None = None,
    bind: bool = False,
    interval_s: float = 0.0,
    timeout_s: float = 10.0,
    on_sent: Callable[[Frame], None] | None = None,
    security=None,
) -> int:
    """Send frames (or image files/folders, read with ``copilot.readers.read_frame``) to ``endpoint``; return the count.

    Connects (PUSH) by default; ``bind=True`` binds instead, for a daemon started with ``SocketSource(bind=False)``.
    ``stream`` overrides each frame's stream. Waits for a receiver: raises :class:`TimeoutError` if none takes a
    frame within ``timeout_s``. Returns once every frame has been handed to the receiver's socket (ZeroMQ PUSH gives
    no application-level acknowledgement; the daemon's ``rejected`` counter and result documents say the rest).
    ``meta["pushed_from"]`` carries the frame's original origin (the file path).
    """
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    timeout_ms = max(1, int(timeout_s * 1000))
    sent = 0
    try:
        if security is not None:  # copilot.security.ClientSecurity: a daemon bound beyond loopback with CURVE
            security.apply(sock)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on completed connections, so "no receiver" times out
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.LINGER, timeout_ms)
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
        next_t = time.monotonic()
        for item in _expand(frames_or_paths):
            if isinstance(item, Frame):
                frame = item
            else:
                from copilot.readers import read_frame  # lazy: readers pull in heavy optional dependencies

                frame = read_frame(item, stream=stream) if stream else read_frame(item)
            parts = encode_frame(frame, stream=stream, meta={"pushed_from": frame.origin})
            if interval_s > 0:
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_t = max(next_t + interval_s, time.monotonic())
            try:
                sock.send_multipart(parts, copy=False)
            except zmq.Again:
                raise TimeoutError(f"no receiver took a frame at {endpoint} within {timeout_s:g} s") from None
            sent += 1
            log.debug("pushed %s/%s (%s)", frame.stream, frame.frame_id, frame.origin)
            if on_sent is not None:
                on_sent(frame)
    finally:
        sock.close()  # lingers up to timeout_s so queued frames still leave
        ctx.term()
    return sent


# ---------------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files or folders (natural name order)")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"daemon socket (default {DEFAULT_ENDPOINT})")
    parser.add_argument("--stream", default=None, help="stream name to send (default: the reader's)")
    parser.add_argument("--interval", type=float, default=0.0, metavar="S", help="seconds between frames")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="give up when no receiver (10)")
    parser.add_argument("--bind", action="store_true", help="bind instead of connecting")


def run(args: argparse.Namespace) -> int:
    def report(frame: Frame) -> None:
        print(f"pushed {frame.origin} -> {args.endpoint} ({frame.shape[0]}x{frame.shape[1]} {frame.pixels.dtype})")

    try:
        n = push_frames(
            args.endpoint,
            args.files,
            stream=args.stream,
            bind=args.bind,
            interval_s=args.interval,
            timeout_s=args.timeout,
            on_sent=report,
        )
    except TimeoutError as exc:
        print(f"error: {exc}")
        return 2
    except (CopilotError, OSError) as exc:  # unreadable file: stop there, say which
        print(f"error: {exc}")
        return 1
    print(f"{n} frame(s) pushed")
    return 0
