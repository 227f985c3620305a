"""Recipe: grains-sem, a 2-class (grain / boundary) U-Net for SEM micrographs of etched polycrystals
(``copilot.sim.grain_frames``): the boundary model of the ``grains`` task (ASTM E112 G from its boundary map).

Working scale 250 nm/px (frames acquired at 125-500 nm/px are resampled by the daemon's own
``copilot.inference.preprocess.resample`` + ``normalize``; training inputs go through exactly those functions);
grains of G 9-13, 12-64 frame px across. Targets are soft: the boundary band's area coverage of every working pixel,
the band being the simulator's exact grain-id changes widened to the etched groove's width, and to at least 2 working
px (so the 0.5 iso-line closes every grain, also where the groove is narrower than a working pixel).

Robustness drawn into the training data (``AUGMENT``): 50 % of patches at a dose below the nominal range
(1-6 counts/px from 0.5.0, 1.5-6 before; 20 % of patches until 0.2.0, 35 % for 0.3.0, 50 % since 0.4.0) and 20 % with
a beam blur beyond it (400-800 nm): the ``dose`` and ``defocus`` groups of
``copilot.sim.domains.groups_for("grains")`` are covered by training; ``magnification``, ``drift``, ``charging``,
``detector`` (BSE) and ``etching`` (shallow etch with gaps, or over-etched with pits) are never seen in training.

The card asks for the native-size pass (``average_native_scale``): a frame coarser than 250 nm/px is segmented on
the upsampled working grid and at its own pixel size, and the two boundary maps are averaged; alone, the upsampled
grid draws boundaries through shot noise on low-dose frames.

    python -m copilot.train grains-sem            # = copilot train grains-sem
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from copilot.inference.card import Normalization
from copilot.inference.preprocess import normalize
from copilot.sim.grain_frames import NM_PER_PX_RANGE, WORKING_NM_PER_PX, random_grain_params, simulate_grains
from copilot.train.data import Augment, area_average, native_size, to_uint8, to_working_scale, working_shape
from copilot.train.recipe import ort_predict

NAME = "grains-sem"
VERSION = "0.5.0"
CLASS_NAMES = ("grain", "boundary")
CHANNELS = (16, 32, 64, 128)
SPACE_TO_DEPTH = 2  # from 0.3.0 the U-Net runs on 2 × 2 pixel blocks: a 2048² frame in ~0.5 s on 2 cores (0.2.0's
# full-grid (8, 16, 32, 64): 0.8 s; fewer channels on the full grid were no faster)
PATCH_PX = 128
HELDOUT_PX = 384
CLASS_WEIGHTS = (1.0, 1.5)
MIN_BAND_WORKING_PX = 2.0
AUGMENT = Augment(p_low_dose=0.5, low_dose=(1.0, 6.0), p_blur=0.2, blur_nm=(400.0, 800.0))
STEPS = 10000
N_TRAIN = 2400
COVERED_GROUPS = ("in-domain", "dose", "defocus")
HELD_OUT_GROUPS = ("magnification", "drift", "charging", "detector", "etching")
ENGINE_DIR = Path(__file__).resolve().parents[2] / "engines" / NAME


def boundary_band(grains: np.ndarray, half_width_px: float) -> np.ndarray:
    """Pixels whose centre lies within ``half_width_px`` of a grain-id change, on the native grid (the change sits
    between two pixels: a pixel next to it is ½ px away; both are always in the band)."""
    from copilot.train.grains_metrics import label_edges

    return ndi.distance_transform_edt(~label_edges(grains)) < max(half_width_px - 0.5, 0.5)


def soft_boundary_targets(grains: np.ndarray, nm_per_px: float, groove_nm: float, shape: tuple[int, int],
                          working_nm_per_px: float = WORKING_NM_PER_PX) -> np.ndarray:
    """(2, h, w) float32 on a ``shape`` working grid: grain and boundary coverage of each working pixel."""
    half = max(groove_nm / 2, MIN_BAND_WORKING_PX / 2 * working_nm_per_px) / nm_per_px
    cover = area_average(boundary_band(grains, half), shape)
    return np.stack([1.0 - cover, cover])


def make_grain_dataset(n: int, seed: int, patch_px: int = PATCH_PX, working_nm_per_px: float = WORKING_NM_PER_PX,
                       nm_per_px_range: tuple[float, float] = NM_PER_PX_RANGE, augment: Augment = Augment(),
                       soft: bool = True, progress=None):
    """n normalized patches: x (n, 1, P, P) float32, y (n, 2, P, P) uint8 coverage × 255 (``soft``) or (n, P, P)
    uint8 classes (0 grain, 1 boundary: coverage ≥ ½), native grain maps' truth dicts."""
    norm = Normalization()
    rng = np.random.default_rng(seed)
    xs = np.empty((n, 1, patch_px, patch_px), np.float32)
    ys = np.empty((n, 2, patch_px, patch_px) if soft else (n, patch_px, patch_px), np.uint8)
    truths = []
    for i in range(n):
        params = augment.params(random_grain_params(rng, size_px=8, nm_per_px_range=nm_per_px_range), rng)
        nmpp = params.nm_per_px
        frame = simulate_grains(replace(params, size_px=native_size(patch_px, working_nm_per_px, nmpp)), rng)
        img, _ = to_working_scale(frame.image, None, nmpp, working_nm_per_px)
        shape = working_shape(frame.instances.shape, working_nm_per_px / nmpp)
        t = soft_boundary_targets(frame.instances, nmpp, params.boundary_nm, shape, working_nm_per_px)
        xs[i, 0] = normalize(img[:patch_px, :patch_px], norm)
        t = t[:, :patch_px, :patch_px]
        ys[i] = to_uint8(t) if soft else (t[1] >= 0.5).astype(np.uint8)
        truths.append(frame.truth)
        if progress is not None:
            progress(i + 1)
    return xs, ys, truths


def grain_patch_metrics(probs_list, targets) -> dict[str, float]:
    """Boundary F1 (2-px tolerance, pooled) and boundary-pixel IoU of held-out patches (targets: class maps)."""
    from copilot.train.grains_metrics import boundary_match, f1_from

    counts = np.zeros(4)
    inter = union = 0
    for probs, tgt in zip(probs_list, targets):
        pred = probs[1] >= 0.5
        truth_b = tgt == 1
        inter += int((pred & truth_b).sum())
        union += int((pred | truth_b).sum())
        grains, _ = ndi.label(~truth_b)  # the true band's complement as grain ids: its centre lines are the truth
        counts += boundary_match(pred, _fill(grains))
    prec, rec, f1 = f1_from(counts)
    return {"boundary_f1_patch": f1, "boundary_precision_patch": prec, "boundary_recall_patch": rec,
            "boundary_iou_patch": inter / max(union, 1), "n_frames": float(len(targets))}


def _fill(grains: np.ndarray) -> np.ndarray:
    idx = ndi.distance_transform_edt(grains == 0, return_distances=False, return_indices=True)
    return grains[tuple(idx)]


def main(minutes: float = 13.0, seed: int = 0, n_train: int = N_TRAIN, n_heldout: int = 32,
         out_dir: Path = ENGINE_DIR, command: str | None = None, steps: int = STEPS,
         heldout_per_group: int = 12, init_onnx: Path | None = None) -> dict:
    """Simulate, train, export, measure, write ``out_dir``/model.onnx + card.json."""
    from copilot.train.recipe import fit_and_ship, start_recipe

    log, command, t_start = start_recipe(NAME, command)
    log(f"recipe {NAME}: working {WORKING_NM_PER_PX} nm/px, frames {NM_PER_PX_RANGE} nm/px, seed {seed}, "
        f"{n_train} patches of {PATCH_PX}², {steps} steps, channels {CHANNELS} on {SPACE_TO_DEPTH}² pixel blocks, "
        f"{AUGMENT}")
    xs, ys, _ = make_grain_dataset(n_train, seed, augment=AUGMENT)
    hx, hy, _ = make_grain_dataset(n_heldout, seed + 1_000_003, HELDOUT_PX, soft=False)
    data_s = time.perf_counter() - t_start
    log(f"data ready in {data_s:.0f} s; boundary fraction {ys[:, 1].mean() / 255:.4f}")

    def patch_metrics(sess) -> dict[str, float]:
        probs, _ = ort_predict(sess, hx)
        return grain_patch_metrics(probs, list(hy))

    description = (
        "Compact U-Net (channels %s on %d × %d pixel blocks, 3 poolings, additive skips) trained on simulated SEM "
        "micrographs of etched "
        "polycrystals (copilot.sim.grain_frames: Poisson-Voronoi and log-normally sized grains with curved "
        "boundaries, per-grain channelling contrast, twins, scratches, etched grooves of varying depth and width "
        "with an SE rim, shading; the shared instrument model for blur, scan and noise). Classes: 0 'grain', "
        "1 'boundary'. Soft targets: the band around the exact grain-id changes, as wide as the groove and at "
        "least %g working px, area-averaged onto the working grid. Training inputs are made by the daemon's own "
        "resample + normalize; frames coarser than the working scale also run at their own pixel size, the two "
        "boundary maps averaged (average_native_scale). Robustness trained in: low dose %g-%g counts/px (%d %%), "
        "extra beam blur %g-%g nm (%d %%): domain groups %s are covered by training; groups %s are genuinely held "
        "out. Metrics 'heldout:<group>' come from copilot.train.heldout (daemon path: OrtBackend + "
        "analysis.measure, 512² frames, seed %d): boundary F1 at 2 working px tolerance and ASTM E112 G errors "
        "(planimetric vs the realized seed density, intercept vs the true mean intercept); the unprefixed ones from "
        "%d held-out %d² patches." % (CHANNELS, SPACE_TO_DEPTH, SPACE_TO_DEPTH, MIN_BAND_WORKING_PX, *AUGMENT.low_dose,
                      round(100 * AUGMENT.p_low_dose), *AUGMENT.blur_nm, round(100 * AUGMENT.p_blur),
                      ", ".join(COVERED_GROUPS), ", ".join(HELD_OUT_GROUPS),
                      20_261_125, n_heldout, HELDOUT_PX))
    return fit_and_ship(
        name=NAME, version=VERSION, task="grains", class_names=CLASS_NAMES, channels=CHANNELS, xs=xs, ys=ys,
        steps=steps, max_minutes=minutes, seed=seed, out_dir=Path(out_dir), class_weights=CLASS_WEIGHTS,
        working_nm_per_px=WORKING_NM_PER_PX, trained_nm_per_px_range=NM_PER_PX_RANGE, description=description,
        command=command, patch_metrics=patch_metrics, heldout_per_group=heldout_per_group, log=log,
        t_start=t_start, data_s=data_s, init_onnx=init_onnx, lr=1e-3 if init_onnx else 3e-3,
        space_to_depth=SPACE_TO_DEPTH, average_native_scale=True)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
