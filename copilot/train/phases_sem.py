"""Recipe: phases-sem, a 3-class (matrix / second-phase / pore) U-Net for SEM micrographs of two-phase and porous
microstructures (``copilot.sim.sem``; class 0 is the matrix, or the ligaments of a porous structure).

Working scale 2 nm/px: laths of 12-40 nm are 6-20 px wide, ligaments of 15-60 nm 7-30 px; frames acquired at
0.5-4 nm/px are resampled by the daemon's own ``copilot.inference.preprocess.resample`` + ``normalize`` (training
inputs go through exactly those functions). Targets are soft (each class's area coverage of every working pixel), and
the analysis measures phase boundaries sub-pixel, so the coarse grid costs little area accuracy.

Trained on the SE detector (topography contrast). Robustness drawn into the training data (``AUGMENT``): 20 % of
frames at a dose below the nominal range (1.5-6 counts/px) and 20 % with a beam blur beyond it (3-7 nm), so the
``dose`` and ``defocus`` groups of ``copilot.sim.domains.groups_for("phases")`` are covered by training;
``magnification``, ``drift``, ``charging``, ``detector`` (BSE) and ``etching`` (as-polished / over-etched) are never
seen in training (genuinely held out).

    python -m copilot.train phases-sem            # = copilot train phases-sem
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from copilot.sim.sem import CLASS_NAMES
from copilot.train.data import Augment, make_phase_dataset
from copilot.train.recipe import ort_predict

NAME = "phases-sem"
VERSION = "0.4.0"
WORKING_NM_PER_PX = 2.0
NM_PER_PX_RANGE = (0.5, 4.0)
CHANNELS = (8, 16, 32, 64)
PATCH_PX = 256
HELDOUT_PX = 384
CLASS_WEIGHTS = (1.0, 2.0, 1.0)
DETECTOR = "se"
AUGMENT = Augment(p_low_dose=0.2, low_dose=(1.5, 6.0), p_blur=0.2, blur_nm=(3.0, 7.0))
STEPS = 5000
N_TRAIN = 2000
COVERED_GROUPS = ("in-domain", "dose", "defocus")
HELD_OUT_GROUPS = ("magnification", "drift", "charging", "detector", "etching")
FINETUNE_LR = 1e-3  # with --init (fine-tuning a shipped model; no BatchNorm in its fused form)
ENGINE_DIR = Path(__file__).resolve().parents[2] / "engines" / NAME


def phase_patch_metrics(probs_list, targets, n_classes: int = 3) -> dict[str, float]:
    """Pooled per-class IoU (mIoU over classes present) and the mean absolute area-fraction error per class (pp)."""
    inter, union = np.zeros(n_classes), np.zeros(n_classes)
    errs = []
    for probs, tgt in zip(probs_list, targets):
        lab = probs.argmax(axis=0)
        for c in range(n_classes):
            inter[c] += np.sum((lab == c) & (tgt == c))
            union[c] += np.sum((lab == c) | (tgt == c))
        errs.append(100 * np.abs(np.bincount(lab.ravel(), minlength=n_classes)[:n_classes] / lab.size
                                 - np.bincount(tgt.ravel(), minlength=n_classes)[:n_classes] / tgt.size))
    iou = inter / np.maximum(union, 1)
    e = np.mean(errs, axis=0)
    out = {"pixel_miou": float(iou[union > 0].mean()), "fraction_error_pp_max_class_mean": float(e.max()),
           "n_frames": float(len(targets))}
    for c in range(n_classes):
        out[f"iou_class{c}"] = float(iou[c])
        out[f"fraction_error_pp_class{c}"] = float(e[c])
    return out


def main(minutes: float = 30.0, seed: int = 0, n_train: int = N_TRAIN, n_heldout: int = 48,
         out_dir: Path = ENGINE_DIR, command: str | None = None, steps: int = STEPS,
         heldout_per_group: int = 24, init_onnx: Path | None = None) -> dict:
    """Simulate, train, export, measure, write ``out_dir``/model.onnx + card.json."""
    from copilot.train.recipe import fit_and_ship, start_recipe

    log, command, t_start = start_recipe(NAME, command)
    log(f"recipe {NAME}: working {WORKING_NM_PER_PX} nm/px, frames {NM_PER_PX_RANGE} nm/px, detector {DETECTOR}, "
        f"seed {seed}, {n_train} patches, {steps} steps, channels {CHANNELS}, {AUGMENT}")
    xs, ys, _ = make_phase_dataset(n_train, seed, PATCH_PX, WORKING_NM_PER_PX, NM_PER_PX_RANGE, detector=DETECTOR,
                                   augment=AUGMENT, soft=True, n_classes=len(CLASS_NAMES))
    hx, hy, _ = make_phase_dataset(n_heldout, seed + 1_000_003, HELDOUT_PX, WORKING_NM_PER_PX, NM_PER_PX_RANGE,
                                   detector=DETECTOR)
    data_s = time.perf_counter() - t_start
    frac = ys.mean(axis=(0, 2, 3)) / 255.0
    log(f"data ready in {data_s:.0f} s; class fractions {np.round(frac, 4).tolist()}")

    def patch_metrics(sess) -> dict[str, float]:
        probs, _ = ort_predict(sess, hx)
        return phase_patch_metrics(probs, list(hy), len(CLASS_NAMES))

    description = (
        "Compact U-Net (channels %s, 3 poolings, additive skips) trained on simulated SEM micrographs "
        "(copilot.sim.sem, SE detector), soft targets (each class's area coverage of every working pixel, exact "
        "native class maps area-averaged): two-phase microstructures (lath packets + granular second phase in a "
        "Voronoi grain matrix, occasional round pores) and nanoporous-gold-like ligament/pore structures, with "
        "etching relief and grain-boundary grooves. Classes: 0 'matrix' (grain matrix or ligaments), 1 "
        "'second-phase' (laths, granular particles), 2 'pore'. Training inputs are made by the daemon's own "
        "resample + normalize (copilot.inference.preprocess). Robustness trained in (augmentation): low dose "
        "1.5-6 counts/px (20 %%), extra beam blur 3-7 nm (20 %%): domain groups %s are covered by training; groups "
        "%s are genuinely held out (never in training; 'detector' = BSE). Metrics 'heldout:<group>' come from "
        "copilot.train.heldout (daemon path: OrtBackend + analysis.measure, 512² frames, seed %d): area-fraction "
        "error per class in percentage points; the unprefixed ones from %d held-out %d² patches."
        % (CHANNELS, ", ".join(COVERED_GROUPS), ", ".join(HELD_OUT_GROUPS), 20_261_125, n_heldout, HELDOUT_PX))
    return fit_and_ship(
        name=NAME, version=VERSION, task="phases", class_names=CLASS_NAMES, channels=CHANNELS, xs=xs, ys=ys,
        steps=steps, max_minutes=minutes, seed=seed, out_dir=Path(out_dir), class_weights=CLASS_WEIGHTS,
        working_nm_per_px=WORKING_NM_PER_PX, trained_nm_per_px_range=NM_PER_PX_RANGE, description=description,
        command=command, patch_metrics=patch_metrics, heldout_per_group=heldout_per_group, log=log,
        t_start=t_start, data_s=data_s, init_onnx=init_onnx, lr=FINETUNE_LR if init_onnx else 3e-3)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
