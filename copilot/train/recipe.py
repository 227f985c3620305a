"""What every training recipe shares: the loss, the training loop, ONNX export, held-out metrics, the card.

A recipe (``particles_stem``, ``phases_sem``) builds its training arrays from the simulator and calls
:func:`fit_and_ship`. Training length is a fixed number of steps (the cosine schedule runs over them), so a preset
run twice with the same seed on the same software gives the same model; ``max_minutes`` only guards a much slower
machine (the schedule then follows whichever of steps or time runs out first, and the card records the steps done).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def set_train_threads() -> int:
    """torch's threads for training: ``COPILOT_TRAIN_THREADS`` (two recipes side by side: 1 each), else 2."""
    import torch

    torch.set_num_threads(int(os.environ.get("COPILOT_TRAIN_THREADS", "2")))
    return torch.get_num_threads()


def start_recipe(name: str, command: str | None) -> tuple[Callable[..., None], str, float]:
    """A recipe's console log, the command line its card records, and its start time; torch on two threads
    (``python -m copilot.train`` sets OMP_WAIT_POLICY=PASSIVE before torch loads, so a thread that loses its core to
    another process sleeps instead of spinning and stalling the other)."""
    from rich.console import Console

    set_train_threads()
    command = command or "python -m copilot.train " + " ".join(sys.argv[1:] or [name])
    return Console(log_path=False).log, command, time.perf_counter()


def loss_fn(logits, target, weights):
    """Weighted cross-entropy + 0.5 × soft Dice over the non-background classes.

    ``target``: class indices (N, H, W) int64, or soft targets (N, C, H, W) float (class coverage fractions summing
    to 1 per pixel: the cross-entropy is then against that distribution, and Dice uses it in place of one-hot)."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, weight=weights)
    p = torch.softmax(logits, dim=1)
    if target.dim() == 4:
        onehot = target.to(p.dtype)
    else:
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    dice = 1 - (2 * (p * onehot).sum(dims) + 1) / (p.sum(dims) + onehot.sum(dims) + 1)
    return ce + 0.5 * dice[1:].mean()


def augment(x, y, rng):
    """Geometric augmentation of a batch: the 8 symmetries of the square (exact for the masks)."""
    import torch

    k = int(rng.integers(4))
    if k:
        x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    if rng.random() < 0.5:
        x, y = torch.flip(x, (-1,)), torch.flip(y, (-1,))
    return x, y


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16): then bf16 autocast halves training time;
    elsewhere it would be slower than float32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def train_steps(net, xs, ys, steps: int | None = None, minutes: float | None = None, batch: int = 8,
                lr: float = 3e-3, seed: int = 0, log=None, progress=None, warmup_steps: int = 50,
                class_weights: tuple[float, ...] = (1.0, 1.0, 2.5), bf16: bool | None = False):
    """Train in place; stops after ``steps`` or ``minutes``, whichever comes first (the cosine learning rate follows
    the one that is further along). Returns the list of (step, loss).

    ``bf16``: forward pass under bfloat16 autocast with channels-last tensors (weights, optimizer and loss stay
    float32); ``None`` = where the CPU has native bf16 (``cpu_has_bf16``)."""
    import torch

    if bf16 is None:
        bf16 = cpu_has_bf16()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    net.to(memory_format=fmt)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    weights = torch.tensor(class_weights, dtype=torch.float32)
    soft = ys.ndim == 4  # (n, C, P, P) uint8 coverage × 255 (copilot.train.data.to_uint8)
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys if soft else ys.astype(np.int64))
    t0 = time.perf_counter()
    budget = minutes * 60 if minutes else None
    history = []
    step = 0
    net.train()
    while True:
        f_time = (time.perf_counter() - t0) / budget if budget else 0.0
        f_step = step / steps if steps else 0.0
        frac = max(f_time, f_step)
        if frac >= 1:
            break
        warm = min(1.0, (step + 1) / max(warmup_steps, 1))
        for g in opt.param_groups:
            g["lr"] = lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        idx = rng.choice(len(X), size=batch, replace=False)
        x, y = augment(X[idx], Y[idx], rng)
        if soft:
            y = y.float() / 255.0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(bf16)):
            logits, _ = net(x.contiguous(memory_format=fmt))
        loss = loss_fn(logits.float(), y, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history.append((step, loss.item()))
        if progress is not None:
            progress(frac, step, history[-1][1])
        if log is not None and step % 50 == 0:
            recent = np.mean([h[1] for h in history[-50:]])
            el = time.perf_counter() - t0
            log(f"step {step} loss {recent:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{step * batch / el:.1f} samples/s elapsed {el / 60:.1f} min")
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    return history


def ort_predict(sess, xs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    probs, embs = [], []
    for i in range(len(xs)):
        p, e = sess.run(None, {"image": xs[i:i + 1]})
        probs.append(p[0])
        embs.append(e[0])
    return probs, np.stack(embs)


def fit_and_ship(*, name: str, version: str, task: str, class_names: tuple[str, ...], channels: tuple[int, ...],
                 xs: np.ndarray, ys: np.ndarray, steps: int, max_minutes: float, seed: int, out_dir: Path,
                 class_weights: tuple[float, ...], working_nm_per_px: float,
                 trained_nm_per_px_range: tuple[float, float], description: str, command: str,
                 patch_metrics: Callable[[object], dict[str, float]], heldout_per_group: int, log,
                 t_start: float, data_s: float, init_onnx: Path | None = None, lr: float = 3e-3,
                 trained_particle_px: tuple[float, float] | None = None, space_to_depth: int = 1,
                 average_native_scale: bool = False) -> dict:
    """Train a TinyUNet on (xs, ys), export model.onnx into ``out_dir``, measure, write card.json.

    ``init_onnx``: fine-tune from that model's weights (its fused form: convolutions with biases, no BatchNorm;
    :func:`copilot.inference.weights.onnx_to_tensors`) instead of training from scratch; the card records the
    lineage."""
    import torch

    from copilot.inference.card import ModelCard, load_card, sha256_of
    from copilot.inference.ort_backend import OrtBackend
    from copilot.train.export import PRIOR_NOTE, correct_class_prior, export_onnx, ort_latency, ort_session
    from copilot.train.heldout import evaluate_backend
    from copilot.train.unet import TinyUNet

    torch.manual_seed(seed)
    lineage = None
    if init_onnx is not None:
        net, lineage = _fused_from_onnx(Path(init_onnx), channels, len(class_names), class_weights)
        log(f"fine-tuning from {lineage['parent']}")
    else:
        net = TinyUNet(n_classes=len(class_names), channels=channels, space_to_depth=space_to_depth)
    bf16 = cpu_has_bf16()
    log(f"TinyUNet {sum(p.numel() for p in net.parameters())} parameters; {steps} steps (cap {max_minutes} min); "
        f"{'bf16 autocast, channels-last' if bf16 else 'float32'}")
    t_train = time.perf_counter()
    history = train_steps(net, xs, ys, steps=steps, minutes=max_minutes, seed=seed, log=log,
                          class_weights=class_weights, bf16=bf16, lr=lr)
    train_s = time.perf_counter() - t_train
    log(f"trained {len(history)} steps in {train_s / 60:.1f} min; final loss "
        f"{np.mean([h[1] for h in history[-50:]]):.4f}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = correct_class_prior(export_onnx(net, out_dir / "model.onnx"), class_weights)
    # the torch weights stay out of the engine folder (no pickle at run time): runs/ of the checkout for its own
    # engines, beside the output folder otherwise (a test's temporary folder, a user's --out)
    runs = ROOT / "runs" if out_dir.resolve().is_relative_to(ROOT) else out_dir.resolve().parent
    runs.mkdir(exist_ok=True)
    torch.save(net.state_dict(), runs / f"{out_dir.name}.pt")
    sess = ort_session(onnx_path, threads=2)

    metrics: dict = dict(patch_metrics(sess))
    log("held-out patch metrics: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    # reference embeddings: the training patches as the network saw them
    _, emb = ort_predict(sess, xs)
    rng = np.random.default_rng(seed)
    samples = emb[rng.choice(len(emb), size=min(200, len(emb)), replace=False)]
    lat = {f"ort_cpu2_latency_s_{s}px": round(ort_latency(onnx_path, s, threads=2, repeats=5), 4)
           for s in (512, 1024, 2048)}
    log(f"ORT CPU latency (2 threads): {lat}")
    metrics.update(lat)
    metrics["train_minutes"] = round(train_s / 60, 2)
    metrics["data_minutes"] = round(data_s / 60, 2)
    metrics["train_steps"] = float(len(history))
    metrics["train_bf16"] = float(bf16)
    metrics["train_patches"] = float(len(xs))

    card = ModelCard(
        name=name,
        version=version,
        task=task,  # type: ignore[arg-type]
        class_names=list(class_names),
        description=f"{description} {PRIOR_NOTE}",
        working_nm_per_px=working_nm_per_px,
        trained_nm_per_px_range=trained_nm_per_px_range,
        trained_particle_px=trained_particle_px,
        average_native_scale=average_native_scale,
        lineage=lineage,
        tiling={"tile_px": 512, "overlap_px": 32, "multiple_of": net.multiple_of},
        outputs={"input": "image", "probabilities": "probabilities", "embedding": "embedding",
                 "embedding_dim": net.embedding_dim},
        embedding_reference={"mean": emb.mean(0).tolist(), "std": emb.std(0).tolist(), "samples": samples.tolist()},
        metrics=metrics,
        model_sha256=sha256_of(onnx_path),
        training_command=command,
    )
    _write_card(card, out_dir)

    # per-group held-out metrics through the daemon's own path (backend + analysis)
    log(f"held-out sets per domain group ({heldout_per_group} frames of 512² each):")
    c, folder = load_card(out_dir)
    groups = evaluate_backend(OrtBackend(c, folder, threads=2), task, per_group=heldout_per_group, log=log)
    metrics.update({f"heldout:{g}": m for g, m in groups.items()})
    metrics["total_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    card = card.model_copy(update={"metrics": metrics})
    _write_card(card, out_dir)
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB) and {out_dir / 'card.json'}; "
        f"total {metrics['total_minutes']:.1f} min")
    return metrics


def _fused_from_onnx(onnx_path: Path, channels: tuple[int, ...], n_classes: int,
                     class_weights: tuple[float, ...] | None = None):
    """A trainable fused TinyUNet holding the weights of ``onnx_path``, and its lineage for the card.

    A parent calibrated for its class weights (its card carries the prior note) gets ``+log w`` back on the head's
    bias, so training starts at the weighted loss's own optimum and the export's correction is applied once."""
    import torch

    from copilot.inference.card import sha256_of
    from copilot.inference.torch_backend import build_fused_unet
    from copilot.inference.weights import onnx_to_tensors
    from copilot.train.export import PRIOR_NOTE

    tensors, meta = onnx_to_tensors(onnx_path)
    r = int(meta.get("space_to_depth", 1))
    card = json.loads((onnx_path.parent / "card.json").read_text())
    method = "fine-tuned (fused weights, no BatchNorm) on soft area-coverage targets"
    if PRIOR_NOTE in card.get("description", "") and class_weights is not None:
        head = [k for k in tensors if k.endswith("head.bias")]
        if len(head) != 1 or tensors[head[0]].shape != (len(class_weights) * r * r,):
            raise ValueError(f"{onnx_path}: cannot find the output head's bias to undo its class-prior correction")
        tensors[head[0]] = tensors[head[0]] + np.repeat(np.log(np.asarray(class_weights, np.float32)), r * r)
        method += "; the parent's class-prior correction undone before training (applied again at export)"
    net = build_fused_unet(channels, n_classes, space_to_depth=r)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    parent = f"{card['name']} {card['version']} (sha256 {sha256_of(onnx_path)[:12]})"
    return net, {"parent": parent, "method": method}


def finite_metrics(metrics: dict) -> dict:
    """Drop NaN/inf values (a card stores numbers only; JSON has no NaN)."""
    out: dict = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = {kk: float(vv) for kk, vv in v.items() if np.isfinite(vv)}
        elif np.isfinite(v):
            out[k] = float(v)
    return out


def _write_card(card, out_dir: Path) -> None:
    from copilot.inference.card import save_card

    save_card(card.model_copy(update={"metrics": finite_metrics(card.metrics)}), out_dir)
