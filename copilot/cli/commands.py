"""The `copilot` parser and the small sub-commands (run, demo, analyze, top, push, train, config)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from copilot.cli.bench import add_bench_parser
from copilot.cli.engines import add_engines_parser
from copilot.cli.errors import add_verbose, report_user_error, user_message
from copilot.cli.overlay import add_overlay_parser
from copilot.errors import UserError
from copilot import hub
from copilot.cli import keys as keys_cli, tail
from copilot.cli import grains as grains_cli
from copilot.cli import adapt as adapt_cli
from copilot.cli import inclusions as eds_cli

console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )


def _settings(args, **overrides):
    from copilot.config import load_settings

    return load_settings(Path(args.config) if getattr(args, "config", None) else None, overrides)


def cmd_run(args) -> int:
    from copilot.daemon import Daemon

    source = {"watch": args.watch, "poll": True if args.poll else None}
    if args.watch:
        source["kind"] = "directory"
    settings = _settings(args, source=source, daemon={"state_dir": args.state_dir, "stream": args.stream})
    try:
        daemon = Daemon(settings)
    except OSError as exc:
        if exc.filename is None:
            raise
        raise UserError(f"{user_message(exc)} (daemon.state_dir, or --state-dir, must be a folder you can write; "
                        "source.watch one you can read)") from exc
    return daemon.run()


def cmd_demo(args) -> int:
    from copilot.demo import run_demo

    return run_demo(frames=args.frames, interval_s=args.interval, size_px=args.size, live=not args.no_live,
                    state_dir=Path(args.state_dir))


def cmd_analyze(args) -> int:
    from copilot.analyze import analyze_paths

    settings = _settings(args, model={"name": args.model, "threads": args.threads})
    return analyze_paths([Path(p) for p in args.paths], Path(args.out), settings, save_masks=args.save_masks,
                         dask=args.dask)


def cmd_top(args) -> int:
    from copilot.ui.top import run_top

    return run_top(args.endpoint, args.snapshot, stream=args.stream, exit_after=args.exit_after)


def cmd_push(args) -> int:
    from copilot.sources.push import push_frames

    sent = push_frames(args.endpoint, [Path(p) for p in args.files], stream=args.stream, interval_s=args.interval)
    console.print(f"pushed {sent} frame(s) to {args.endpoint}")
    return 0


def cmd_train(args) -> int:
    from importlib.util import find_spec

    missing = [m for m in ("torch", "onnx", "sklearn") if find_spec(m) is None]
    if missing:
        raise UserError(f"training needs the train extra ({', '.join(missing)} not installed): "
                        "pip install 'microscope-copilot[train]'")
    if args.recipe == "reliability":
        from copilot.train.reliability import main as train_reliability

        return train_reliability(args.rest)
    from copilot.train.__main__ import main as train_model

    return train_model([args.recipe, *args.rest])


def cmd_config(args) -> int:
    from copilot.config import settings_schema

    if args.schema:
        print(settings_schema())
        return 0
    settings = _settings(args)
    print(settings.model_dump_json(indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="copilot", description="Microscope co-pilot: live segmentation and measurement")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the daemon on an acquisition folder or socket")
    r.add_argument("--config", help="TOML config (configs/*.toml)")
    r.add_argument("--watch", help="acquisition folder (overrides source.watch)")
    r.add_argument("--poll", action="store_true", help="poll the folder (SMB/NFS shares)")
    r.add_argument("--state-dir", help="overrides daemon.state_dir")
    r.add_argument("--stream", help="overrides daemon.stream")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="simulated microscope + daemon + live view")
    d.add_argument("--frames", type=int, default=40, help="frames the simulated microscope acquires (default 40)")
    d.add_argument("--interval", type=float, default=0.5, help="seconds between simulated frames")
    d.add_argument("--size", type=int, default=1024, help="frame edge in pixels")
    d.add_argument("--state-dir", default="demo-data", help="folder for the demo's frames and results (default "
                   "demo-data; emptied at start)")
    d.add_argument("--no-live", action="store_true", help="no live table, only the summary")
    d.set_defaults(func=cmd_demo)

    a = sub.add_parser("analyze", help="the same pipeline, offline, over files and folders")
    a.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched for source.include")
    a.add_argument("--model", default=None, help="model name (`copilot engines list`) or folder (default: the "
                   "config's model.name)")
    a.add_argument("--out", required=True, help="folder for results.jsonl, frames.csv, the task's object table "
                   "(particles.csv, grains.csv, defects.csv), summary.json, plots")
    a.add_argument("--save-masks", action="store_true", help="write <name>.labels.tif uint16 instance masks")
    a.add_argument("--threads", type=int, default=None, help="inference threads (overrides model.threads)")
    a.add_argument("--config", help="TOML config (configs/*.toml)")
    a.add_argument("--dask", metavar="SCHEDULER", help="run on dask.distributed: local:N or tcp://host:8786")
    a.set_defaults(func=cmd_analyze)

    t = sub.add_parser("top", help="live terminal view of a daemon's results")
    t.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the daemon's publish endpoint")
    t.add_argument("--snapshot", default="tcp://127.0.0.1:5556", help="the daemon's snapshot endpoint")
    t.add_argument("--stream", default=None, help="show only this stream (default: all)")
    t.add_argument("--exit-after", type=int, default=None, help="exit after N results (scripts, tests)")
    t.set_defaults(func=cmd_top)

    add_overlay_parser(sub)

    u = sub.add_parser("push", help="send image files to a daemon's socket source")
    u.add_argument("files", nargs="+", metavar="FILE", help="image files to send")
    u.add_argument("--endpoint", default="tcp://127.0.0.1:5557", help="the daemon's source.endpoint")
    u.add_argument("--stream", default="socket", help="stream name the frames are sent under")
    u.add_argument("--interval", type=float, default=0.0, help="seconds between frames")
    u.set_defaults(func=cmd_push)

    tr = sub.add_parser("train", help="regenerate a shipped model from the simulator (needs the train extra)")
    tr.add_argument("recipe", help="particles-stem | phases-sem | reliability")
    tr.add_argument("rest", nargs=argparse.REMAINDER, help="options of the recipe (see `copilot train RECIPE -h`)")
    tr.set_defaults(func=cmd_train)

    c = sub.add_parser("config", help="print the effective config, or its JSON schema")
    c.add_argument("--config", help="TOML config to validate and print with its defaults filled in")
    c.add_argument("--schema", action="store_true", help="print the JSON schema of the config instead")
    c.set_defaults(func=cmd_config)
    add_engines_parser(sub)
    add_bench_parser(sub)
    hub.add_parser(sub)
    tail.add_parser(sub)
    keys_cli.add_parser(sub)
    eds_cli.add_parser(sub)
    grains_cli.add_parser(sub)
    adapt_cli.add_parser(sub)
    add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args) or 0
    except Exception as exc:
        return report_user_error(exc, f"copilot {args.command}", verbose=args.verbose)
