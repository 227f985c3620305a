"""Stronger method: learn the target's appearance, render the simulator's masks in it, fine-tune on those pairs
(seed 003's tailored training set, with the simulator as the generator).

The target's appearance is summarised per frame by image statistics of what the network sees (grey-level
quantiles, noise level, edge sharpness, a radial power spectrum: :func:`appearance_descriptor`). The simulator's
imaging parameters (particles: HAADF or BF-TEM, dose, probe blur; phases: SE or BSE detector, dose, beam blur; the
scale is the frames' own calibration) are fitted by approximate Bayesian computation: candidates drawn from a broad
prior are rendered, and those whose statistics lie nearest to the target frames' are kept. Fresh simulator frames
rendered with the kept parameters (new particles or microstructures, exact masks) are the labelled training set;
the parent is fine-tuned on it with a quarter of generic frames mixed in, so it does not forget. For particles the
content is drawn with the target's morphology as the parent measures it (median size, spread, covered area:
``frames.particle_morphology``), the way seed 003's generator learns morphology as well as contrast.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from copilot.adapt.selftrain import MethodResult
from copilot.adapt.torchnet import require_torch

_BANDS = np.geomspace(0.02, 0.5, 7)


def appearance_descriptor(img: np.ndarray) -> np.ndarray:
    """Statistics of a normalized working-grid image: grey-level quantiles and skew, noise (MAD of the high-pass),
    edge strength, and the log share of the power in 6 radial frequency bands."""
    img = np.asarray(img, np.float64)
    q = np.percentile(img, [1, 5, 25, 50, 75, 95, 99])
    c = img - img.mean()
    skew = float(np.mean(c**3) / max(np.mean(c**2) ** 1.5, 1e-9))
    noise = float(np.median(np.abs(img - ndi.gaussian_filter(img, 1.0))) * 1.4826)
    smooth = ndi.gaussian_filter(img, 2.0)
    edges = float(np.mean(np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1))))
    power = np.abs(np.fft.rfft2(c)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    f = np.hypot(fy, fx)
    total = power[f > 0].sum() + 1e-12
    bands = [np.log10(power[(f >= lo) & (f < hi)].sum() / total + 1e-9) for lo, hi in zip(_BANDS[:-1], _BANDS[1:])]
    return np.array([*q, skew, np.log10(noise + 1e-6), np.log10(edges + 1e-6), *bands])


def _prior_particles(rng: np.random.Generator, nm_per_px: float, modality: str = "any"):
    from copilot.sim.stem import random_params

    p = random_params(rng, size_px=8, nm_per_px_range=(nm_per_px, nm_per_px), modality=modality)
    return replace(p, dose=float(np.exp(rng.uniform(np.log(0.8), np.log(300.0)))),
                   probe_blur_nm=float(rng.uniform(0.05, 2.5)))


def _prior_phases(rng: np.random.Generator, nm_per_px: float, detector: str | None = None):
    from copilot.sim.sem import random_sem_params

    det = detector or ("se" if rng.random() < 0.5 else "bse")
    p = random_sem_params(rng, size_px=8, nm_per_px_range=(nm_per_px, nm_per_px), detector=det)
    return replace(p, dose=float(np.exp(rng.uniform(np.log(0.8), np.log(80.0)))),
                   probe_blur_nm=float(rng.uniform(0.5, 10.0)))


def imaging(task: str, params) -> dict:
    """The imaging parameters the fit learns (what is copied from a kept candidate onto fresh content)."""
    keys = ("modality", "dose", "probe_blur_nm") if task == "particles" else ("detector", "dose", "probe_blur_nm")
    return {k: getattr(params, k) for k in keys}


def render(task: str, params, rng: np.random.Generator, patch_px: int, card, n_classes: int):
    """One simulator frame with ``params`` → (normalized working-grid patch, soft targets uint8 (C, P, P))."""
    from copilot.inference.preprocess import normalize
    from copilot.train.data import NO_AUGMENT, _patch, _soft_crop

    if task == "particles":
        from copilot.sim.stem import simulate_frame as simulate
    else:
        from copilot.sim.sem import simulate_sem as simulate
    w = card.working_nm_per_px
    img, _, frame, nmpp = _patch(simulate, params, rng, patch_px, w, NO_AUGMENT)
    soft = _soft_crop(frame, nmpp, w, patch_px, None if task == "particles" else n_classes)
    return normalize(img.astype(np.float32), card.normalization), soft


def _like(task: str, rng: np.random.Generator, nm_per_px: float, look: dict, jitter: tuple[float, float]):
    """Simulator parameters with fresh content (particles or microstructure) in the imaging parameters ``look``,
    dose and blur jittered by log-normal factors of widths ``jitter``."""
    prior = _prior_particles if task == "particles" else _prior_phases
    look = dict(look)
    look["dose"] *= float(np.exp(rng.normal(0, jitter[0])))
    look["probe_blur_nm"] *= float(np.exp(rng.normal(0, jitter[1])))
    fixed = look.pop("modality", None) or look.pop("detector")
    return replace(prior(rng, nm_per_px, fixed), **look)


def fit_appearance(task: str, images: list[np.ndarray], scales_nm: list[float], card, *, candidates: int = 400,
                   keep_per_frame: int = 3, patch_px: int = 128, seed: int = 0, morphology: dict | None = None,
                   log=None) -> list[dict]:
    """The imaging parameters of the candidates nearest the target frames (one entry per kept draw).

    Two rounds: ``candidates`` draws from the broad prior, then half as many around the first round's nearest
    (same modality or detector; dose and blur jittered); the nearest of all are kept. On streams of one setting
    each (bench/adaptation), 48 broad draws put the blur of defocused BF-TEM frames at 0.6-1.2 nm where it was
    1.0-2.0; 400 draws within 0.2 nm on two of three. ``morphology``: simulator parameters of the specimen
    (``frames.particle_morphology``) every candidate is drawn with, so that the statistics compared differ by the
    imaging, not by the particles."""
    rng = np.random.default_rng(seed)
    prior = _prior_particles if task == "particles" else _prior_phases
    n_classes = len(card.class_names)
    target = np.stack([appearance_descriptor(_center(im, 2 * patch_px)) for im in images])
    drawn, desc = [], []

    def nearest() -> list[dict]:
        cand = np.stack(desc)
        sd = np.maximum(np.concatenate([cand, target]).std(0), 1e-6)
        d = (((target[:, None, :] - cand[None, :, :]) / sd) ** 2).sum(-1)
        return [drawn[j] for row in d for j in np.argsort(row)[:keep_per_frame]]

    def add(p) -> None:
        x, _ = render(task, p, rng, fit_patch_px(patch_px, p.nm_per_px, card.working_nm_per_px), card, n_classes)
        drawn.append(imaging(task, p))
        desc.append(appearance_descriptor(x))

    for _ in range(candidates):
        add(replace(prior(rng, float(rng.choice(scales_nm))), **(morphology or {})))
    first = nearest()
    for _ in range(candidates // 2):
        add(_like(task, rng, float(rng.choice(scales_nm)), first[int(rng.integers(len(first)))] | (morphology or {}),
                  (0.35, 0.25)))
    kept = nearest()
    if log is not None:
        log("appearance fitted: " + _summarise(kept))
    return kept


def fit_patch_px(patch_px: int, nm_per_px: float, working_nm_per_px: float, max_native_px: int = 640) -> int:
    """The working-grid patch a fit candidate is rendered on: ``patch_px``, smaller where the frames are so fine that
    the native frame behind it would exceed ``max_native_px`` (600 candidates at 0.03 nm/px would each simulate
    2133² pixels for a 128² patch).

    >>> fit_patch_px(128, 0.2, 0.5), fit_patch_px(128, 0.03, 0.5)
    (128, 32)
    """
    return int(min(patch_px, max(32, int(max_native_px * nm_per_px / working_nm_per_px) // 8 * 8)))


def _center(im: np.ndarray, s: int) -> np.ndarray:
    y, x = max(0, (im.shape[0] - s) // 2), max(0, (im.shape[1] - s) // 2)
    return im[y:y + s, x:x + s]


def _summarise(kept: list[dict]) -> str:
    out = []
    for k in kept[0]:
        vals = [c[k] for c in kept]
        if isinstance(vals[0], str):
            out.append(f"{k} " + ", ".join(f"{v} {vals.count(v) / len(vals):.0%}" for v in sorted(set(vals))))
        else:
            out.append(f"{k} median {np.median(vals):.3g} (IQR {np.percentile(vals, 25):.3g}-"
                       f"{np.percentile(vals, 75):.3g})")
    return "; ".join(out)


def render_training_set(task: str, kept: list[dict], scales_nm: list[float], card, n: int, patch_px: int,
                        generic_fraction: float = 0.25, seed: int = 1, morphology: dict | None = None):
    """n (patch, soft target) pairs: fresh content (drawn with ``morphology`` where given) in the kept imaging
    parameters (jittered), and a share of generic frames from the parent's own range."""
    rng = np.random.default_rng(seed)
    n_classes = len(card.class_names)
    xs = np.empty((n, 1, patch_px, patch_px), np.float32)
    ys = np.empty((n, n_classes, patch_px, patch_px), np.uint8)
    lo, hi = card.trained_nm_per_px_range
    for i in range(n):
        if rng.random() < generic_fraction:
            nm = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if task == "particles":
                from copilot.sim.stem import random_params

                p = random_params(rng, size_px=8, nm_per_px_range=(nm, nm), modality="any")
            else:
                from copilot.sim.sem import random_sem_params

                p = random_sem_params(rng, size_px=8, nm_per_px_range=(nm, nm))
        else:
            look = kept[int(rng.integers(len(kept)))] | (morphology or {})
            p = _like(task, rng, float(rng.choice(scales_nm)), look, (0.2, 0.15))
        xs[i, 0], ys[i] = render(task, p, rng, patch_px, card, n_classes)
    return xs, ys


def fine_tune(net, xs: np.ndarray, ys: np.ndarray, class_weights: tuple[float, ...], *, steps: int, batch: int = 8,
              lr: float = 1e-3, seed: int = 0, device: str = "cpu", progress=None, log=None) -> list[float]:
    """Fine-tune on soft targets (``copilot.train.recipe.loss_fn``, the 8 symmetries), on ``device``."""
    torch = require_torch()
    import math

    from copilot.train.recipe import augment, loss_fn

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    weights = torch.tensor(class_weights, dtype=torch.float32, device=device)
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys)
    losses = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / 10) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        idx = rng.choice(len(X), size=min(batch, len(X)), replace=False)
        x, y = augment(X[idx], Y[idx], rng)
        logits, _ = net(x.to(device))
        loss = loss_fn(logits, y.to(device).float() / 255.0, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, steps, losses[-1])
        if log is not None and step % 25 == 0:
            log(f"fine-tuning step {step}/{steps}: loss {np.mean(losses[-25:]):.4f}, {time.perf_counter() - t0:.0f} s")
    net.cpu().eval()
    return losses


def appearance_adapt(net, task: str, images: list[np.ndarray], scales_nm: list[float], card,
                     class_weights: tuple[float, ...], *, steps: int = 150, n_render: int = 96, patch_px: int = 192,
                     candidates: int = 400, seed: int = 0, device: str = "cpu", morphology: dict | None = None,
                     progress=None, log=None) -> MethodResult:
    """Fit the appearance, render ``n_render`` pairs (with the target's ``morphology`` where known), fine-tune
    ``net`` (in place) for ``steps``."""
    patch_px = max(card.tiling.multiple_of, patch_px // card.tiling.multiple_of * card.tiling.multiple_of)
    t0 = time.perf_counter()
    kept = fit_appearance(task, images, scales_nm, card, candidates=candidates, patch_px=128,
                          seed=seed, morphology=morphology, log=log)
    xs, ys = render_training_set(task, kept, scales_nm, card, n_render, patch_px, seed=seed + 1,
                                 morphology=morphology)
    render_s = time.perf_counter() - t0
    if log is not None:
        log(f"rendered {n_render} pairs of {patch_px}² in the target's appearance ({render_s:.0f} s)")
    losses = fine_tune(net, xs, ys, class_weights, steps=steps, seed=seed, device=device, progress=progress, log=log)
    info = {"steps": float(steps), "rendered_pairs": float(n_render), "render_s": round(render_s, 1),
            "final_loss": float(np.mean(losses[-25:]))}
    for k in kept[0]:
        vals = [c[k] for c in kept]
        if isinstance(vals[0], str):
            for v in sorted(set(vals)):
                info[f"fitted_{k}_{v}_share"] = vals.count(v) / len(vals)
        else:
            info[f"fitted_{k}_median"] = float(np.median(vals))
    info.update({f"morphology_{k}": float(v) for k, v in (morphology or {}).items()})
    return MethodResult(net, xs, info)
