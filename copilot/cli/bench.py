"""``copilot bench``: the benchmark in bench/ (a source checkout; bench/ is not part of the installed package)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from copilot.cli.engines import add_backend_option
from copilot.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _load_runner():
    path = REPO / "bench" / "runner.py"
    if not path.is_file():
        raise UserError("copilot bench runs from a source checkout (bench/runner.py is not beside this install): "
                        "clone the repository and run it there")
    spec = importlib.util.spec_from_file_location("copilot_bench_runner", path)  # no top-level `bench` package
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 64:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated frame edges ≥ 64 px, got {text!r}")
    return sizes


def cmd_bench(args) -> int:
    workers = args.workers or (2 if args.postprocess else 1)
    if workers < 1 or args.frames < 2:
        print("copilot bench: --workers must be ≥ 1 and --frames ≥ 2", file=sys.stderr)
        return 2
    runner = _load_runner()
    md = args.markdown or (str(Path(args.json).with_suffix(".md")) if args.json else None)
    extra = Path(args.daemon_toml).read_text() if args.daemon_toml else ""
    if (args.workers or args.measure_mode) and not args.postprocess:
        extra += f"\n[pipeline]\nmeasure_workers = {workers}\nmeasure_mode = \"{args.measure_mode or 'threads'}\"\n"
    runner.main(args.sizes, args.frames, json_path=args.json, md_path=md, postprocess=args.postprocess,
                workers=workers, model=args.model, backend=args.backend,
                threads=args.threads, nm_per_px=args.nm_per_px, naive=not args.no_naive,
                naive_variants=tuple(v for v in args.naive.split(",") if v),
                extra_toml=extra,
                workdir=Path(args.workdir) if args.workdir else None)
    return 0


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """Register ``copilot bench`` on the CLI's sub-parsers."""
    b = sub.add_parser("bench", help="end-to-end latency/throughput vs the backend alone and a naive script; "
                                     "--postprocess: everything after inference, per stage")
    b.add_argument("--sizes", type=_sizes, default=(512, 1024, 2048, 4096),
                   help="frame edges in pixels, comma-separated")
    b.add_argument("--postprocess", action="store_true",
                   help="measure post-processing only (replay backend: recorded network outputs), per stage, on 1 "
                        "and --workers measure threads")
    b.add_argument("--workers", type=int, default=None,
                   help="measure threads: compared with 1 under --postprocess (default 2); the daemon's [pipeline] "
                        "measure_workers otherwise (default: the config's, 1)")
    b.add_argument("--measure-mode", choices=("threads", "processes"), default=None,
                   help="the daemon's [pipeline] measure_mode (--postprocess measures both)")
    b.add_argument("--frames", type=int, default=20, help="frames per measurement")
    b.add_argument("--json", default=None, help="write results here (a .md table is written beside it)")
    b.add_argument("--markdown", default=None, help="markdown table path (default: beside --json)")
    b.add_argument("--model", default="particles-stem", help="model name or folder")
    add_backend_option(b, default="auto", help="backend (`copilot engines list`; default auto)")
    b.add_argument("--threads", type=int, default=2, help="inference threads")
    b.add_argument("--nm-per-px", type=float, default=None,
                   help="calibration of the simulated frames (default 0.2 for a particles model, 1.0 for phases)")
    b.add_argument("--no-naive", action="store_true", help="skip the naive-script baselines")
    b.add_argument("--naive", default="native,working-scale",
                   help="naive-script variants: native (frame as acquired), working-scale (rescaled per the card)")
    b.add_argument("--daemon-toml", default=None, help="TOML appended to the daemon's config (e.g. [analysis] …)")
    b.add_argument("--workdir", default=None, help="scratch folder (frames are cached there between runs)")
    b.set_defaults(func=cmd_bench)
    return b


run = cmd_bench
add_parser = add_bench_parser
