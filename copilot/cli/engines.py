"""``copilot engines list | install | build | verify``: models and where they were found, what this machine can
run, install a model into the user folder, build TensorRT plans, check a backend.

    copilot engines list   [--model particles-stem] [--state-dir state]
    copilot engines install FOLDER [--replace]
    copilot engines build  [--backend tensorrt|torch] [--precision fp16|fp32] [--force]
    copilot engines verify [--backend auto|tensorrt|onnxruntime-cuda|torch-cuda|...] [--tiles 8]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name or folder (default: the config's model.name)")
    p.add_argument("--config", default=None, help="TOML config (for model.name, daemon.state_dir)")
    p.add_argument("--state-dir", default=None, help="where plans and converted weights are cached")


def _resolve(args):
    """The model's card and folder, the state folder and the thread count, from the options and the config."""
    from copilot.config import load_settings
    from copilot.inference.card import load_card

    settings = load_settings(Path(args.config) if args.config else None)
    card, folder = load_card(args.model or settings.model.name)
    state = Path(args.state_dir) if args.state_dir else Path(settings.daemon.state_dir)
    return card, folder, state, settings.model.threads


def cmd_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from copilot.inference.names import AUTO_ORDER
    from copilot.inference.select import candidates
    from copilot.inference.trt_plan import list_plans

    console = Console()
    _print_models(console)
    card, folder, state, threads = _resolve(args)
    table = candidates(card, folder, threads=threads, state_dir=state)
    t = Table(title=f"backends for {card.name} {card.version} (auto tries them top to bottom)")
    t.add_column("backend")
    t.add_column("here?")
    for name in [*AUTO_ORDER, "torch-cpu"]:
        reason = table[name].probe()
        t.add_row(name, "[green]available[/green]" if reason is None else f"[yellow]{reason}[/yellow]")
    console.print(t)
    plans = list_plans(state)
    if plans:
        p = Table(title=f"TensorRT plans under {state / 'engines'}")
        for col in ("plan", "precision", "GPU", "verification"):
            p.add_column(col)
        for path, rec in plans:
            key = (rec or {}).get("key", {})
            v = (rec or {}).get("verification") or {}
            status = ("[green]accepted[/green]" if v.get("accepted") else "[red]refused[/red]") if v else "unverified"
            if "miou" in v:
                status += f" mIoU {v['miou']:.4f}"
            p.add_row(str(path.relative_to(state)), key.get("precision", "?"),
                      f"{key.get('gpu_name', '?')} sm{key.get('compute_capability', '?')}", status)
        console.print(p)
    else:
        console.print(f"no TensorRT plans cached under {state / 'engines'}")
    weights = sorted((state / "engines").glob("*/*.safetensors")) + sorted(folder.glob("*.safetensors"))
    for w in weights:
        console.print(f"torch weights: {w}")
    return 0


def _print_models(console) -> None:
    from rich.table import Table

    from copilot.inference.locate import find_models, search_path

    t = Table(title="models (search path: COPILOT_ENGINES, user, package, system; the first of a name wins)")
    for col in ("model", "found in", "folder"):
        t.add_column(col)
    for m in find_models():
        where = m.where if m.shadowed_by is None else f"{m.where} [yellow](shadowed by {m.shadowed_by})[/yellow]"
        t.add_row(m.name, where, str(m.folder))
    console.print(t)
    if not search_path():
        console.print("[yellow]no model folder exists; set COPILOT_ENGINES or `copilot engines install FOLDER`[/yellow]")


def cmd_install(args) -> int:
    from copilot.inference.locate import install_model

    target = install_model(Path(args.folder), replace=args.replace)
    print(f"installed {args.folder} as {target}")
    return 0


def cmd_build(args) -> int:
    from rich.console import Console

    from copilot.inference.verify import BackendRefused

    console = Console()
    card, folder, state, _ = _resolve(args)
    try:
        if args.backend == "tensorrt":
            from copilot.inference.trt_backend import load_tensorrt

            backend = load_tensorrt(card, folder, state_dir=state, precision=args.precision, rebuild=args.force,
                                    console=console)
            console.print(f"[green]TensorRT plan ready and verified:[/green] {backend.plan_path}")
        elif args.backend == "torch":
            from copilot.inference.weights import convert, read_metadata

            out = Path(args.out) if args.out else state / "engines" / card.name / f"{card.model_sha256[:16]}.safetensors"
            convert(card.model_path(folder), out)
            console.print(f"[green]safetensors weights written:[/green] {out} {read_metadata(out)}")
        else:
            raise SystemExit(f"nothing to build for {args.backend}")
    except BackendRefused as exc:
        console.print(f"[red]refused:[/red] {exc}")
        return 1
    except (ImportError, RuntimeError, NotImplementedError) as exc:
        console.print(f"[red]cannot build {args.backend}:[/red] {exc}")
        return 2
    return 0


def cmd_verify(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from copilot.inference.ort_backend import OrtBackend
    from copilot.inference.select import select_backend
    from copilot.inference.verify import frames_for, validation_frames, verify_backend

    console = Console()
    card, folder, state, threads = _resolve(args)
    try:
        backend = select_backend(card, folder, args.backend, threads=threads, state_dir=state, verify=False,
                                 strict=True, precision=args.precision)
    except Exception as exc:
        console.print(f"[red]cannot load {args.backend}:[/red] {exc}")
        return 2
    backend = getattr(backend, "primary", backend)  # the device backend itself, not its run-time CPU fall-back
    frames, src = (frames_for(backend, card, n_tiles=args.tiles) if args.large < 0
                   else validation_frames(card, n_tiles=args.tiles, n_large=args.large))
    v = verify_backend(backend, OrtBackend(card, folder, threads=threads), frames, frames_from=src)
    t = Table(title=v.message)
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k in ("backend", "reference", "miou", "worst_frame_miou", "max_abs_prob_diff", "max_abs_embedding_diff",
              "n_frames", "seconds"):
        val = getattr(v, k)
        t.add_row(k, f"{val:.4g}" if isinstance(val, float) else str(val))
    for c, iou in v.class_iou.items():
        t.add_row(f"IoU {c}", "absent" if iou is None else f"{iou:.4f}")
    console.print(t)
    console.print("[green]accepted[/green]" if v.accepted else "[red]REFUSED[/red]")
    return 0 if v.accepted else 1


def add_backend_option(parser: argparse.ArgumentParser, **kwargs) -> None:
    """``--backend``, and ``--engine`` (its former name, hidden) for scripts written before the rename."""
    parser.add_argument("--backend", **kwargs)
    parser.add_argument("--engine", dest="backend", default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                        **{k: v for k, v in kwargs.items() if k in ("choices", "type")})


def add_engines_parser(sub) -> argparse.ArgumentParser:
    """Register ``copilot engines ...`` on the CLI's sub-parsers."""
    from copilot.inference.names import BACKEND_CHOICES

    e = sub.add_parser("engines", help="models and where they were found, the backends this machine can run; "
                                      "install a model; build TensorRT plans; verify")
    es = e.add_subparsers(dest="engines_command", required=True)
    lst = es.add_parser("list", help="the models and where each was found; which backends run here (and why "
                                        "not); cached plans")
    _common(lst)
    lst.set_defaults(func=cmd_list)
    i = es.add_parser("install", help="validate a model folder (card.json + model.onnx) and copy it into the "
                                      "user's model folder, where every copilot on this account finds it")
    i.add_argument("folder", help="folder with card.json, model.onnx (and the reliability regressor, if any)")
    i.add_argument("--replace", action="store_true", help="overwrite an installed model of the same name")
    i.set_defaults(func=cmd_install)
    b = es.add_parser("build", help="build (or rebuild) a TensorRT plan, or torch safetensors weights; verifies")
    _common(b)
    add_backend_option(b, choices=("tensorrt", "torch"), default="tensorrt",
                       help="tensorrt: a plan for this GPU; torch: safetensors weights (default tensorrt)")
    b.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision (default fp16)")
    b.add_argument("--force", action="store_true", help="rebuild even when a plan is cached (or was refused)")
    b.add_argument("--out", default=None, help="torch: where to write the safetensors file")
    b.set_defaults(func=cmd_build)
    v = es.add_parser("verify", help="segment validation frames with a backend and ONNX Runtime CPU, compare")
    _common(v)
    add_backend_option(v, choices=BACKEND_CHOICES, default="auto", help="the backend to check (default auto)")
    v.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="GPU backends' precision (default fp16)")
    v.add_argument("--tiles", type=int, default=8, help="validation frames of one tile")
    v.add_argument("--large", type=int, default=-1,
                   help="validation frames of 2.5 tiles (default: one frame per shape class of the backend)")
    v.set_defaults(func=cmd_verify)
    from copilot.cli import export_triton as export_triton_cli

    export_triton_cli.add_parser(es)
    return e
