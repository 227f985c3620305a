"""Recipe: particles-stem, a 3-class (background / particle / boundary) U-Net for HAADF-STEM nanoparticles.

Working scale 0.5 nm/px: particles of 3-20 nm are 6-40 px across, and frames acquired at 0.1-0.5 nm/px are
downsampled 1-5x before the network sees them (a 2048² frame at 0.2 nm/px becomes 819²), which is what keeps a
2048² frame inside the daemon's 0.5 s budget on two CPU cores.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from copilot.train.data import CLASS_NAMES, make_dataset
from copilot.train.metrics import evaluate

NAME = "particles-stem"
VERSION = "0.1.0"
WORKING_NM_PER_PX = 0.5
NM_PER_PX_RANGE = (0.1, 0.5)
CHANNELS = (8, 16, 32, 64)
PATCH_PX = 256
HELDOUT_PX = 384
CLASS_WEIGHTS = (1.0, 1.0, 2.5)
ENGINE_DIR = Path(__file__).resolve().parents[2] / "engines" / NAME


def loss_fn(logits, target, weights):
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, weight=weights)
    p = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    dice = 1 - (2 * (p * onehot).sum(dims) + 1) / (p.sum(dims) + onehot.sum(dims) + 1)
    return ce + 0.5 * dice[1:].mean()


def augment(x, y, rng):
    import torch

    k = int(rng.integers(4))
    if k:
        x, y = torch.rot90(x, k, (2, 3)), torch.rot90(y, k, (1, 2))
    if rng.random() < 0.5:
        x, y = torch.flip(x, (3,)), torch.flip(y, (2,))
    return x, y


def train_steps(net, xs, ys, steps: int | None = None, minutes: float | None = None, batch: int = 8,
                lr: float = 3e-3, seed: int = 0, log=None, progress=None, warmup_steps: int = 50):
    """Train in place; stops after ``steps`` or ``minutes`` (cosine learning rate over whichever applies).
    Returns the list of (step, loss)."""
    import torch

    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    weights = torch.tensor(CLASS_WEIGHTS, dtype=torch.float32)
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys.astype(np.int64))
    t0 = time.perf_counter()
    budget = minutes * 60 if minutes else None
    history = []
    step = 0
    net.train()
    while True:
        frac = (time.perf_counter() - t0) / budget if budget else step / max(steps or 1, 1)
        if frac >= 1 or (steps is not None and step >= steps):
            break
        warm = min(1.0, (step + 1) / max(warmup_steps, 1))
        for g in opt.param_groups:
            g["lr"] = lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        idx = rng.choice(len(X), size=batch, replace=False)
        x, y = augment(X[idx], Y[idx], rng)
        logits, _ = net(x)
        loss = loss_fn(logits, y, weights)
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
    net.eval()
    return history


def ort_predict(sess, xs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    probs, embs = [], []
    for i in range(len(xs)):
        p, e = sess.run(None, {"image": xs[i:i + 1]})
        probs.append(p[0])
        embs.append(e[0])
    return probs, np.stack(embs)


def main(minutes: float = 20.0, seed: int = 0, n_train: int = 1000, n_heldout: int = 32,
         out_dir: Path = ENGINE_DIR, command: str | None = None) -> dict:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from copilot.inference.card import ModelCard, sha256_of
    from copilot.train.export import export_onnx, ort_latency, ort_session
    from copilot.train.unet import TinyUNet

    console = Console(log_path=False)
    log = console.log
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    command = command or "python -m copilot.train " + " ".join(sys.argv[1:] or [NAME])
    t_start = time.perf_counter()
    log(f"recipe {NAME}: working {WORKING_NM_PER_PX} nm/px, frames {NM_PER_PX_RANGE} nm/px, seed {seed}, "
        f"{minutes} min of training, channels {CHANNELS}")

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task("simulating training set", total=n_train)
        xs, ys, _, _ = make_dataset(n_train, seed, PATCH_PX, WORKING_NM_PER_PX, NM_PER_PX_RANGE,
                                    progress=lambda i: prog.update(task, completed=i))
        task2 = prog.add_task("simulating held-out set", total=n_heldout)
        hx, hy, hinst, _ = make_dataset(n_heldout, seed + 1_000_003, HELDOUT_PX, WORKING_NM_PER_PX,
                                        NM_PER_PX_RANGE, progress=lambda i: prog.update(task2, completed=i))
    frac = np.bincount(ys.ravel(), minlength=3) / ys.size
    log(f"data ready in {time.perf_counter() - t_start:.0f} s; class fractions {np.round(frac, 4).tolist()}")

    net = TinyUNet(n_classes=len(CLASS_NAMES), channels=CHANNELS)
    log(f"TinyUNet {sum(p.numel() for p in net.parameters())} parameters")
    t_train = time.perf_counter()
    with Progress(TextColumn("training"), BarColumn(), TextColumn("step {task.fields[step]} loss {task.fields[loss]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task("train", total=1.0, step=0, loss="-")
        history = train_steps(net, xs, ys, minutes=minutes, seed=seed, log=log,
                              progress=lambda f, s, l: prog.update(task, completed=f, step=s, loss=f"{l:.4f}"))
    train_s = time.perf_counter() - t_train
    log(f"trained {len(history)} steps in {train_s / 60:.1f} min; final loss "
        f"{np.mean([h[1] for h in history[-50:]]):.4f}")

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(net, out_dir / "model.onnx")
    runs = Path.cwd() / "runs"
    if runs.is_dir():  # the torch weights stay out of the engine folder (no pickle at run time)
        torch.save(net.state_dict(), runs / f"{NAME}.pt")
    sess = ort_session(onnx_path, threads=2)

    probs, _ = ort_predict(sess, hx)
    metrics = evaluate(probs, list(hy), list(hinst), WORKING_NM_PER_PX)
    log("held-out metrics: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))

    # reference embeddings: the training patches as the network saw them
    _, emb = ort_predict(sess, xs)
    rng = np.random.default_rng(seed)
    samples = emb[rng.choice(len(emb), size=min(200, len(emb)), replace=False)]
    lat = {f"ort_cpu2_latency_s_{s}px": ort_latency(onnx_path, s, threads=2, repeats=3) for s in (1024, 2048)}
    log(f"ORT CPU latency (2 threads): {lat}")
    metrics_out: dict = {k: v for k, v in metrics.items()}
    metrics_out.update(lat)
    metrics_out["train_minutes"] = round(train_s / 60, 2)
    metrics_out["train_steps"] = float(len(history))

    card = ModelCard(
        name=NAME,
        version=VERSION,
        task="particles",
        class_names=list(CLASS_NAMES),
        description=("Compact U-Net (channels %s, 3 poolings, additive skips) trained on simulated HAADF-STEM "
                     "frames of supported nanoparticles (copilot.sim). 'boundary' is the 1-px inner edge ring of each "
                     "particle at the working scale; instances = connected components of 'particle' grown over "
                     "'boundary' by watershed. Frames are resampled to the working scale with bilinear + "
                     "anti-aliasing (skimage.transform.resize)." % (CHANNELS,)),
        working_nm_per_px=WORKING_NM_PER_PX,
        trained_nm_per_px_range=NM_PER_PX_RANGE,
        tiling={"tile_px": 512, "overlap_px": 32, "multiple_of": 2 ** (len(CHANNELS) - 1)},
        outputs={"input": "image", "probabilities": "probabilities", "embedding": "embedding",
                 "embedding_dim": net.embedding_dim},
        embedding_reference={"mean": emb.mean(0).tolist(), "std": emb.std(0).tolist(), "samples": samples.tolist()},
        metrics=metrics_out,
        model_sha256=sha256_of(onnx_path),
        training_command=command,
    )
    tmp = out_dir / ".card.json.partial"
    tmp.write_text(card.model_dump_json(indent=2) + "\n")
    tmp.replace(out_dir / "card.json")
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB) and {out_dir / 'card.json'}; "
        f"total {(time.perf_counter() - t_start) / 60:.1f} min")
    return metrics_out
