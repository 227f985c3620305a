"""The ``copilot overlay`` sub-command; Qt is imported only when it runs (the ``overlay`` extra is optional)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555,tcp://127.0.0.1:5556"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 320 or h < 240:
        raise argparse.ArgumentTypeError("the window must be at least 320x240")
    return w, h


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError("at least 2")
    return n


def cmd_overlay(args) -> int:
    try:
        from copilot.ui.overlay import OverlayError, run_overlay
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 3
    try:
        return run_overlay(args.endpoint or [DEFAULT_ENDPOINT], args.stream or None,
                           click_through=args.click_through, adjust=args.adjust, opacity=args.opacity,
                           snapshot=Path(args.snapshot) if args.snapshot else None, timeout_s=args.timeout,
                           size=args.size, listen_s=args.listen,
                           health_log=Path(args.health_log) if args.health_log else None, history=args.history)
    except OverlayError as exc:
        print(f"copilot overlay: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad endpoint
        print(f"copilot overlay: {exc}", file=sys.stderr)
        return 2


def add_overlay_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``copilot overlay`` on the main parser's sub-parsers."""
    o = subparsers.add_parser(
        "overlay", help="on-screen view: newest frame with particle outlines, numbers, PSD, trend (needs [overlay])",
        description="Subscribes to one or more daemons and shows the newest frame of each stream with its particle "
                    "outlines coloured by size (or phases by class), count, D50 with its 95 % interval, the PSD, "
                    "the trend, the reliability light with its reasons, sufficiency and end-to-end latency.")
    o.add_argument("--endpoint", action="append", metavar="PUB[,SNAPSHOT]",
                   help=f"a daemon's publish endpoint, optionally with its snapshot endpoint (default "
                        f"{DEFAULT_ENDPOINT}; without SNAPSHOT, a tcp port + 1; 'none' for no snapshot). Repeatable.")
    o.add_argument("--stream", action="append", help="show only this stream (repeatable; default: all)")
    o.add_argument("--click-through", action="store_true",
                   help="translucent, always on top, frameless, ignores the mouse: sits over the vendor's live view")
    o.add_argument("--adjust", action="store_true",
                   help="the click-through window with a title bar, to move/resize it; the geometry is remembered "
                        "for --click-through")
    o.add_argument("--opacity", type=float, default=0.7, help="window opacity in click-through mode (0.1-1)")
    o.add_argument("--snapshot", metavar="FILE.png", help="wait for the first result, save the view as PNG, exit")
    o.add_argument("--timeout", type=float, default=30.0, help="seconds --snapshot waits for a result")
    o.add_argument("--listen", type=float, default=0.0, metavar="S",
                   help="with --snapshot: keep receiving S seconds after the first result (the trend gets points)")
    o.add_argument("--size", type=_size, default=(1280, 760), metavar="WxH", help="window size for --snapshot")
    o.add_argument("--history", type=_positive, default=500, metavar="N",
                   help="frames per stream the trend plot keeps (default 500)")
    o.add_argument("--health-log", metavar="FILE.jsonl",
                   help="append a JSON line every 5 s: None's reference count, paints, results, resident memory")
    o.set_defaults(func=cmd_overlay)
    return o
