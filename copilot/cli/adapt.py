"""``copilot adapt``: adapt a model to a stream's (or a folder's) unlabeled frames; promote it only if label-free
checks say it is better; ``--rollback`` returns to the parent.

    copilot adapt --model particles-stem --frames /data/acquisition/today [--method selftrain|appearance]
    copilot adapt --model particles-stem --stream titan --state-dir /var/lib/copilot [--out DIR] [--no-promote]
    copilot adapt --model particles-stem --rollback
"""

from __future__ import annotations

import sys
from pathlib import Path

from copilot.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("adapt", help="adapt a model to the unlabeled frames of a stream or folder (label-free)")
    p.add_argument("--model", required=True, help="model name or engine folder to start from")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--stream", default=None, help="the stream's recent frames (files behind its stored results)")
    src.add_argument("--frames", type=Path, default=None, help="a folder of unlabeled frames")
    src.add_argument("--rollback", action="store_true", help="undo the last promotion of --model")
    p.add_argument("--state-dir", type=Path, default=Path("state"), help="the daemon's state folder (--stream)")
    p.add_argument("--limit", type=int, default=50, help="most recent frames to use (default 50)")
    p.add_argument("--method", default="selftrain", help="selftrain (cheap, default) or appearance (stronger)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the method's)")
    p.add_argument("--out", type=Path, default=None, help="engine folder to write (default: the user's adapted/)")
    p.add_argument("--no-promote", action="store_true", help="check but never install into the user's folder")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when torch sees one), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--seed", type=int, default=0, help="random seed (crops, augmentations, simulator draws)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    if args.rollback:
        from copilot.adapt.promote import rollback

        removed, now = rollback(Path(args.model).name if Path(args.model).is_dir() else args.model)
        console.print(f"rolled back {args.model} {removed}; now in use: {now}")
        return 0
    if args.stream is None and args.frames is None:
        raise UserError("pass --stream S, --frames DIR or --rollback")
    if args.limit < 2:
        raise UserError(f"--limit {args.limit}: adaptation needs at least 2 frames")
    from copilot.adapt.frames import frames_from_folder, frames_from_stream
    from copilot.adapt.run import AdaptOptions, adapt_engine
    from copilot.adapt.torchnet import require_torch

    require_torch()  # before reading any frame

    if args.frames is not None:
        frames, source = frames_from_folder(args.frames, args.limit), f"folder {args.frames}"
    else:
        frames, source = frames_from_stream(args.state_dir, args.stream, args.limit), f"stream {args.stream}"
    opts = AdaptOptions(method=args.method, steps=args.steps, seed=args.seed, device=args.device,
                        threads=args.threads, promote=not args.no_promote)
    command = "copilot adapt " + " ".join(sys.argv[2:])
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("prepare", total=1)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=max(total, 1))

        out = adapt_engine(args.model, frames, args.out, source, opts, command, progress=progress,
                           log=console.log)
    d = out.decision
    for name, ok in d["checks"].items():
        console.print(f"  {'[green]pass[/green]' if ok else '[red]fail[/red]'} {name}")
    console.print(f"parent {_fmt(d['parent'])}\nadapted {_fmt(d['adapted'])}")
    if out.promoted:
        console.print(f"[green]promoted[/green] {out.version} → {out.installed} (a running daemon picks it up "
                      f"between frames; undo: copilot adapt --model {args.model} --rollback)")
    else:
        why = "; ".join(d["reasons"]) or "--no-promote"
        console.print(f"[yellow]kept aside[/yellow] {out.version} in {out.folder}: {why}")
    return 0


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())
