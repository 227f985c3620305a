"""``copilot engines export-triton REPO [--model NAME] [--gpu] [--mlserver]``: a Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(engines_sub) -> argparse.ArgumentParser:
    """Register ``export-triton`` on ``copilot engines``' sub-parsers."""
    p = engines_sub.add_parser("export-triton", help="write a Triton model repository for the shipped models")
    p.add_argument("repo", help="the repository folder (created; models already there are overwritten)")
    p.add_argument("--model", action="append", default=None,
                   help="model name or folder (repeatable; default: every shipped model)")
    p.add_argument("--gpu", action="store_true", help="instance group KIND_GPU (default KIND_CPU)")
    p.add_argument("--instances", type=int, default=1, help="model instances per device")
    p.add_argument("--max-batch", type=int, default=8, help="dynamic batching: largest batch the server forms")
    p.add_argument("--state-dir", default="state", help="where verified TensorRT plans are cached (a "
                   "tensorrt_plan variant is written when one exists)")
    p.add_argument("--mlserver", action="store_true",
                   help="also write MLServer's model-settings.json (runtime: adapters/mlserver_onnx)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from copilot.inference.triton_repo import export_repository

    if args.max_batch < 1 or args.instances < 1:
        print("copilot engines export-triton: --max-batch and --instances must be at least 1", file=sys.stderr)
        return 2
    try:
        written = export_repository(Path(args.repo), args.model, kind="KIND_GPU" if args.gpu else "KIND_CPU",
                                    count=args.instances, max_batch=args.max_batch, state_dir=Path(args.state_dir),
                                    mlserver=args.mlserver)
    except (FileNotFoundError, ValueError) as exc:
        print(f"copilot engines export-triton: {exc}", file=sys.stderr)
        return 2
    for folder in written:
        versions = sorted(d.name for d in folder.iterdir() if d.is_dir())
        print(f"{folder}  (version {', '.join(versions)})")
    return 0
