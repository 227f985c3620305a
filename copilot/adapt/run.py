"""One adaptation, frames to decision: adapt → a new model version → label-free checks → promote or keep aside."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from copilot.adapt.torchnet import pick_device, require_torch, trainable_from_onnx
from copilot.errors import UserError
from copilot.frame import Frame

METHODS = ("selftrain", "appearance")
CLASS_WEIGHTS = {"particles": (1.0, 1.0, 2.5), "phases": (1.0, 2.0, 1.0)}  # as the recipes train them


@dataclass(frozen=True)
class AdaptOptions:
    method: str = "selftrain"
    steps: int | None = None  # None: the method's default
    seed: int = 0
    device: str = "auto"
    threads: int = 2
    promote: bool = True  # install into the user's folder when the checks pass
    render_pairs: int = 96  # appearance: simulator pairs rendered in the target's appearance
    patch_px: int = 192  # appearance: their edge on the working grid


@dataclass
class AdaptOutcome:
    folder: Path
    version: str
    promoted: bool
    installed: Path | None
    decision: dict
    seconds: float


def adapt_engine(model: str | Path, frames: list[Frame], out_dir: Path | None, source: str, opts: AdaptOptions,
                 command: str, progress=None, log=print) -> AdaptOutcome:
    """Adapt ``model`` to ``frames`` with ``opts.method``, write the model folder, check it, promote it (or not).

    ``progress(stage, done, total)``: stage is "prepare", "adapt", "export", "check"."""
    from copilot.adapt import checks
    from copilot.adapt.engine_folder import adapted_version, generic_inputs, write_decision, write_engine
    from copilot.adapt.frames import working_images
    from copilot.adapt.promote import adapted_root, promote
    from copilot.inference.card import load_card
    from copilot.inference.ort_backend import OrtBackend

    if opts.method not in METHODS:
        raise UserError(f"--method {opts.method!r}: choose one of {', '.join(METHODS)}")
    torch = require_torch()
    torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    t0 = time.perf_counter()
    card, folder = load_card(model)
    parent = OrtBackend(card, folder, threads=opts.threads)
    parent.scale_memory = False
    tick = progress or (lambda *a: None)
    tick("prepare", 0, len(frames))
    images = working_images(parent, frames)
    scales = [f.nm_per_px or card.working_nm_per_px for f in frames]
    log(f"{card.name} {card.version}: {len(frames)} frames from {source} on {device}, method {opts.method}")
    net = trainable_from_onnx(folder / "model.onnx")
    step_cb = lambda step, total, loss: tick("adapt", step, total)  # noqa: E731
    weights = CLASS_WEIGHTS[card.task]
    if opts.method == "selftrain":
        from copilot.adapt.selftrain import self_train

        res = self_train(net, images, weights, steps=opts.steps or 120, seed=opts.seed, device=device,
                         progress=step_cb, log=log)
    else:
        from copilot.adapt.appearance import appearance_adapt
        from copilot.adapt.frames import particle_morphology

        morphology = particle_morphology(parent, frames) if card.task == "particles" else None
        res = appearance_adapt(net, card.task, images, scales, card, weights, steps=opts.steps or 150,
                               n_render=opts.render_pairs, patch_px=opts.patch_px, seed=opts.seed, device=device,
                               morphology=morphology, progress=step_cb, log=log)
    when = datetime.now(timezone.utc)
    version = adapted_version(card.version, opts.method, when)
    out_dir = Path(out_dir) if out_dir else adapted_root() / card.name / version
    tick("export", 0, 1)
    res.info["adapt_seconds"] = round(time.perf_counter() - t0, 1)
    new = write_engine(res.net, card, folder, out_dir, method=opts.method, frames=len(frames), frames_source=source,
                       inputs=res.inputs, generic=generic_inputs(card) if opts.method == "selftrain" else [],
                       info=res.info, command=command, when=when)
    log(f"wrote {new.name} {new.version} to {out_dir}; checking it against {card.version} without labels")
    tick("check", 0, 1)
    ncard, nfolder = load_card(out_dir)
    decision = checks.decide(parent, OrtBackend(ncard, nfolder, threads=opts.threads), frames)
    installed = None
    if decision.promote and opts.promote:
        installed = promote(out_dir)
    record = decision.as_dict() | {"model": new.name, "version": new.version, "parent_version": card.version,
                                   "method": opts.method, "frames": len(frames), "source": source,
                                   "promoted": installed is not None,
                                   "installed": str(installed) if installed else None, "info": res.info,
                                   "seconds": round(time.perf_counter() - t0, 1)}
    write_decision(out_dir, record)
    return AdaptOutcome(out_dir, new.version, installed is not None, installed, record, record["seconds"])
