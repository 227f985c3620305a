"""Recipe: particles-stem, a 3-class (background / particle / boundary) U-Net for supported nanoparticles imaged by
HAADF-STEM (bright on dark) or BF-TEM (dark on bright, Fresnel fringes, support speckle).

Working scale 0.5 nm/px: particles of 3-20 nm are 6-40 px across, and frames acquired at 0.1-0.5 nm/px are
downsampled 1-5x before the network sees them (a 2048² frame at 0.2 nm/px becomes 819²), which is what keeps a
2048² frame inside the daemon's 0.5 s budget on two CPU cores. Training inputs go through the daemon's own
``copilot.inference.preprocess.resample`` and ``normalize``.

Robustness drawn into the training data (``RECIPE.augment``): 15 % of frames at a dose below the nominal range
(1.5-8 counts/px), 15 % with a probe blur / defocus beyond it (0.6-2.0 nm), 10 % with the grey scale inverted; touching
pairs are oversampled (10-50 % of particles placed touching instead of 0-35 %). So the
``dose``, ``defocus`` and ``contrast-inversion`` groups of ``copilot.sim.domains`` are covered by training;
``magnification``, ``drift`` and ``charging`` are never seen in training (genuinely held out).

    python -m copilot.train particles-stem            # = copilot train particles-stem
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from copilot.train.data import CLASS_NAMES, Augment, make_dataset
from copilot.train.metrics import evaluate
from copilot.train.recipe import Recipe, data_ready, fit_and_ship, ort_predict, start

RECIPE = Recipe(
    name="particles-stem", version="0.2.0", task="particles", class_names=CLASS_NAMES, working_nm_per_px=0.5,
    nm_per_px_range=(0.1, 0.5), class_weights=(1.0, 1.0, 2.5), steps=7000, n_train=2400,
    augment=Augment(p_low_dose=0.15, low_dose=(1.5, 8.0), p_blur=0.15, blur_nm=(0.6, 2.0), p_invert=0.1,
                    touching=(0.1, 0.5)),
    covered_groups=("in-domain", "dose", "defocus", "contrast-inversion"),
    held_out_groups=("magnification", "drift", "charging"))
MODALITY = "any"  # HAADF-STEM and BF-TEM with equal odds
DESCRIPTION = """\
Compact U-Net (channels %s, 3 poolings, additive skips) trained on simulated frames of supported nanoparticles
(copilot.sim.stem), HAADF-STEM and BF-TEM with equal odds. 'boundary' is the 1-px inner edge ring of each
particle at the working scale; instances = connected components of 'particle' grown over 'boundary' by
watershed. Training inputs are made by the daemon's own resample + normalize (copilot.inference.preprocess).
Robustness trained in (augmentation): low dose 1.5-8 counts/px (15 %%), extra probe blur/defocus 0.6-2.0 nm (15
%%), inverted grey scale (10 %%); touching pairs oversampled (10-50 %% of particles instead of 0-35 %%): domain
groups %s are covered by training; groups %s are genuinely held out (never in training). Metrics
'heldout:<group>' come from copilot.train.heldout (daemon path: OrtEngine + analysis.measure, 512² frames, seed
%d); the unprefixed ones from %d held-out %d² patches (argmax + simple watershed)."""  # formatted by Recipe.describe


def main(minutes: float = 30.0, seed: int = 0, n_train: int = RECIPE.n_train, n_heldout: int = 48,
         out_dir: Path | None = None, command: str | None = None, steps: int = RECIPE.steps,
         heldout_per_group: int = 24) -> dict:
    """Simulate, train, export, measure, write ``out_dir``/model.onnx + card.json. ``minutes`` caps the training
    loop only (a guard for a slow machine; the schedule is ``steps`` long)."""
    r = RECIPE
    log, command, t_start = start(r, command, f"modality {MODALITY}, seed {seed}, {n_train} patches, {steps} steps")
    xs, ys, _, _ = make_dataset(n_train, seed, r.patch_px, r.working_nm_per_px, r.nm_per_px_range, modality=MODALITY,
                                augment=r.augment)
    hx, hy, hinst, _ = make_dataset(n_heldout, seed + 1_000_003, r.heldout_px, r.working_nm_per_px,
                                    r.nm_per_px_range, modality=MODALITY)
    data_s = data_ready(log, t_start, ys)

    def patch_metrics(sess) -> dict[str, float]:
        probs, _ = ort_predict(sess, hx)
        return evaluate(probs, list(hy), list(hinst), r.working_nm_per_px)

    return fit_and_ship(r, xs=xs, ys=ys, steps=steps, max_minutes=minutes, seed=seed,
                        out_dir=Path(out_dir or r.out_dir), description=r.describe(DESCRIPTION, n_heldout),
                        command=command, patch_metrics=patch_metrics, heldout_per_group=heldout_per_group, log=log,
                        t_start=t_start, data_s=data_s)
