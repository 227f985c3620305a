"""Cheap method: mean-teacher self-training with confidence-filtered pseudo-labels (seed 000's self-ensembling).

The teacher (an exponential moving average of the student, starting as the parent) labels a crop of a target frame
averaged over two views (the crop and its mirror); per class, pixels it is less sure of than ``confidence`` (or than
the class's median, when lower) are ignored.
The student learns those labels from a perturbed view (one of the 8 symmetries of the square, extra noise, a
contrast change) — consistency between augmented views — and the teacher follows the student slowly, which keeps
the pseudo-labels from drifting. No labels, no simulator: minutes on two CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from copilot.adapt.frames import random_crops
from copilot.adapt.torchnet import d4, d4_inverse, require_torch


@dataclass
class MethodResult:
    net: object  # the adapted torch network (eval mode, CPU)
    inputs: list[np.ndarray] | np.ndarray  # what it learnt from, (1, 1, h, w) each: its embedding reference
    info: dict[str, float] = field(default_factory=dict)


def perturb(x, rng: np.random.Generator, noise: float = 0.15, contrast: float = 0.15):
    """A strongly augmented view of normalized crops (same geometry): Gaussian noise and a contrast/offset change."""
    torch = require_torch()
    gain = float(np.exp(rng.uniform(-contrast, contrast)))
    offset = float(rng.uniform(-contrast, contrast))
    return x * gain + offset + noise * float(rng.uniform(0, 1)) * torch.randn_like(x)


def class_balanced_keep(conf, target, n_classes: int, confidence: float):
    """Pixels to learn from: per class, those at least as sure as ``confidence`` or as the median pixel the teacher
    gives that class, whichever is lower (class-balanced self-training: a rare, unsure class such as the particles
    of a low-dose frame keeps pseudo-labels instead of being drowned by confident background)."""
    torch = require_torch()
    thr = torch.full((n_classes,), confidence, device=conf.device)
    for c in range(n_classes):
        sel = conf[target == c]
        if sel.numel():
            thr[c] = torch.clamp(sel.median(), max=confidence)
    return (conf >= thr[target]).float()


def self_train(net, images: list[np.ndarray], class_weights: tuple[float, ...], *, steps: int = 120, batch: int = 4,
               crop_px: int = 192, lr: float = 3e-4, confidence: float = 0.9, ema: float = 0.99, seed: int = 0,
               device: str = "cpu", progress=None, log=None) -> MethodResult:
    """Adapt ``net`` (a fused TinyUNet, modified in place) to the normalized working-grid ``images``."""
    torch = require_torch()
    import copy

    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net.to(device).train()
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    weights = torch.tensor(class_weights, dtype=torch.float32, device=device)
    kept_fraction, losses = [], []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x = torch.from_numpy(random_crops(images, batch, crop_px, rng)).to(device)
        with torch.no_grad():
            p = torch.softmax(teacher(x)[0], 1)
            p = 0.5 * (p + torch.flip(torch.softmax(teacher(torch.flip(x, (-1,)))[0], 1), (-1,)))
            conf, target = p.max(1)
            keep = class_balanced_keep(conf, target, p.shape[1], confidence)
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        logits, _ = net(perturb(d4(x, k, flip), rng))
        logits = d4_inverse(logits, k, flip)
        ce = F.cross_entropy(logits, target, weight=weights, reduction="none")
        loss = (ce * keep).sum() / keep.sum().clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, ps in zip(teacher.parameters(), net.parameters()):
                pt.mul_(ema).add_(ps.detach(), alpha=1 - ema)
        kept_fraction.append(float(keep.mean()))
        losses.append(loss.item())
        if progress is not None:
            progress(step, steps, losses[-1])
        if log is not None and step % 25 == 0:
            log(f"self-training step {step}/{steps}: loss {np.mean(losses[-25:]):.4f}, pseudo-labelled pixels "
                f"{np.mean(kept_fraction[-25:]):.1%}, {time.perf_counter() - t0:.0f} s")
    teacher.cpu().eval()  # the teacher is the smoother of the two: it is the adapted model
    inputs = [im[None, None] for im in images]  # the target frames are now its training data
    return MethodResult(teacher, inputs, {"steps": float(steps), "pseudo_label_fraction": float(np.mean(kept_fraction)),
                                          "final_loss": float(np.mean(losses[-25:]))})
