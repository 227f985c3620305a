"""Figures of the accuracy report: overlays (truth / model / baseline outlines), per-group bar charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.segmentation import find_boundaries

from common import OUT, TARGETS

if TYPE_CHECKING:
    from evaluation import Kept


def stretch(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(float(hi - lo), 1e-6), 0, 1)


def outline_rgb(img: np.ndarray, labels: np.ndarray, color: tuple[float, float, float],
                tint_class: int | None = None) -> np.ndarray:
    """Grey image with the labels' outlines in ``color`` (thickened on large frames so they survive the display);
    ``tint_class``: also tint that class (phase maps: the pores)."""
    from scipy import ndimage as ndi

    g = stretch(img)
    rgb = np.stack([g, g, g], axis=-1)
    if tint_class is not None:
        sel = labels == tint_class
        rgb[sel] = 0.6 * rgb[sel] + 0.4 * np.asarray(color)
        b = find_boundaries(labels, mode="inner")
    else:
        b = find_boundaries(labels, mode="inner") & (labels > 0)
    if max(labels.shape) > 300:
        b = ndi.binary_dilation(b)
    rgb[b] = color
    return rgb


COLORS = {"truth": (0.1, 1.0, 0.1), "model": (1.0, 0.2, 0.2), "baseline": (0.2, 0.8, 1.0)}


def save_compact(fig, path: Path, dpi: int = 90) -> None:
    """Save a figure of noisy micrographs as a small PNG: 32 grey levels plus the outline colours (and their tints)
    as a fixed palette, no dithering. Noise does not compress; fewer grey levels do (~4x smaller, colours exact)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    img = Image.open(buf).convert("RGB")
    pal = [(round(255 * i / 31),) * 3 for i in range(32)]
    for c in COLORS.values():
        pal.append(tuple(round(255 * v) for v in c))
        pal += [tuple(round(255 * (0.6 * g + 0.4 * v)) for v in c) for g in np.linspace(0, 1, 8)]
    flat = [v for rgb in pal for v in rgb] + [0] * (768 - 3 * len(pal))
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat)
    img.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def pore_class(class_names) -> int:
    """The class to tint in phase overlays: the pores if the model has them, else class 0."""
    names = [str(n).lower() for n in class_names]
    return next((i for i, n in enumerate(names) if "pore" in n), 0)


def overlay_png(path: Path, kept: Kept, title: str, task: str, tint_class: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = kept.row
    if task == "particles":
        panels = [("truth (simulator)", kept.truth, COLORS["truth"], f"{r['truth_n']} particles"),
                  ("learned model", kept.model, COLORS["model"],
                   f"F1 {r['model']['f1']:.2f}  P {r['model']['precision']:.2f}  R {r['model']['recall']:.2f}"),
                  ("classical Otsu+watershed", kept.baseline, COLORS["baseline"],
                   f"F1 {r['baseline']['f1']:.2f}  P {r['baseline']['precision']:.2f}  "
                   f"R {r['baseline']['recall']:.2f}")]
    else:
        panels = [("truth (simulator)", kept.truth, COLORS["truth"], ""),
                  ("learned model", kept.model, COLORS["model"],
                   "err pp " + ", ".join(f"{e:.1f}" for e in r["model"]["abs_error_pp"])),
                  ("classical (multi-)Otsu", kept.baseline, COLORS["baseline"],
                   "err pp " + ", ".join(f"{e:.1f}" for e in r["baseline"]["abs_error_pp"]))]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.6))
    axes[0].imshow(stretch(kept.image), cmap="gray")
    mod = f"{r['modality']}, " if r.get("modality") else ""
    axes[0].set_title(f"frame ({mod}{r['nm_per_px']:.3f} nm/px, analysis grid {r['grid_shape'][0]}²)", fontsize=10)
    for ax, (name, lab, color, sub) in zip(axes[1:], panels):
        ax.imshow(outline_rgb(kept.image, lab, color, None if task == "particles" else tint_class))
        ax.set_title(f"{name}\n{sub}", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_compact(fig, path, dpi=72)
    plt.close(fig)


def bar_chart(path: Path, model: str, groups: list[str], ours: list[float], base: list[float], ylabel: str,
              targets: list[tuple[float, str]], higher_is_better: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 4), 4.2))
    b1 = ax.bar(x - 0.2, ours, 0.4, label=f"learned ({model})", color="#d62728")
    b2 = ax.bar(x + 0.2, base, 0.4, label="classical Otsu + watershed", color="#1f9ac9")
    for bars in (b1, b2):
        for rect in bars:
            ax.annotate(f"{rect.get_height():.2f}", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                        ha="center", va="bottom", fontsize=8)
    for y, lab in targets:
        ax.axhline(y, ls="--", lw=1, color="k")
        ax.text(-0.55, y, lab, ha="left", va="bottom", fontsize=8)
    ax.set_xticks(x, groups, rotation=20)
    ax.set_ylabel(ylabel)
    if higher_is_better:
        ax.set_ylim(0, 1.08)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(f"{ylabel} per domain group (in-domain vs held-out shifts)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def real_overlay_png(path: Path, image: np.ndarray, model_labels, baseline, entry, model_tint: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("frame", None, None, 0)]
    if model_labels is not None:
        panels.append((f"learned: {entry['model']}", model_labels, COLORS["model"], model_tint))
    else:
        panels.append(("learned: no backend for this task", None, None, 0))
    panels.append(("classical baseline" + (" (darkest Otsu class tinted)" if entry["task"] == "phases" else ""),
                   baseline, COLORS["baseline"], 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.8))
    for ax, (name, lab, color, tint) in zip(axes, panels):
        if lab is None:
            ax.imshow(stretch(image), cmap="gray", interpolation="nearest")
        else:
            ax.imshow(outline_rgb(image, lab, color, None if entry["task"] == "particles" else tint),
                      interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
    nm = entry.get("nm_per_px")
    fig.suptitle(f"{entry['file']}  —  {entry['shape'][0]}×{entry['shape'][1]} px, "
                 f"{'%.4g nm/px' % nm if nm else 'uncalibrated'}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_compact(fig, path, dpi=72)
    plt.close(fig)


def charts(results: dict[str, Any]) -> None:
    for model in results["models"]:
        if not model["groups"]:
            continue
        groups = list(model["groups"])
        if model["task"] == "particles":
            bar_chart(OUT / f"f1_by_group_{model['model']}.png", model["model"], groups,
                      [model["groups"][g]["model"]["object_f1"] for g in groups],
                      [model["groups"][g]["baseline"]["object_f1"] for g in groups], "object F1 (IoU ≥ 0.5)",
                      [(TARGETS["particles_in_domain_f1"], "in-domain target 0.95"),
                       (TARGETS["particles_shifted_f1"], "shifted target 0.85")])
        else:
            bar_chart(OUT / f"f1_by_group_{model['model']}.png", model["model"], groups,
                      [model["groups"][g]["model"]["fraction_error_pp_max_class_mean"] for g in groups],
                      [model["groups"][g]["baseline"]["fraction_error_pp_max_class_mean"] for g in groups],
                      "phase-fraction error (pp)", [(TARGETS["phases_fraction_error_pp"], "target 1.5 pp")],
                      higher_is_better=False)
