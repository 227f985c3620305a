"""Training data from the simulator: frames resampled to the working scale, with 3-class targets.

No torch here: the same functions build held-out sets for metrics and tests.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from skimage.segmentation import find_boundaries
from skimage.transform import resize

from copilot.sim.stem import SimFrame, random_params, simulate_frame

CLASS_NAMES = ("background", "particle", "boundary")


def normalize(image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5, mean: float = 0.5,
              std: float = 0.25) -> np.ndarray:
    """The card's normalization: per-image percentile stretch to [0, 1] (clipped), then (x - mean) / std."""
    x = image.astype(np.float32)
    lo, hi = np.percentile(x, [low_percentile, high_percentile])
    x = np.clip((x - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return (x - mean) / std


def to_working_scale(image: np.ndarray, instances: np.ndarray | None, nm_per_px: float,
                     working_nm_per_px: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an image (bilinear with anti-aliasing, float32) and its instance labels (nearest, at pixel centres)
    from ``nm_per_px`` to ``working_nm_per_px``."""
    scale = nm_per_px / working_nm_per_px
    H, W = image.shape
    out = (max(int(round(H * scale)), 1), max(int(round(W * scale)), 1))
    if out == (H, W):
        img = image.astype(np.float32)
    else:
        img = resize(image.astype(np.float32), out, order=1, anti_aliasing=scale < 1, preserve_range=True)
        img = img.astype(np.float32)
    lab = None
    if instances is not None:
        iy = np.minimum(((np.arange(out[0]) + 0.5) * H / out[0]).astype(np.intp), H - 1)
        ix = np.minimum(((np.arange(out[1]) + 0.5) * W / out[1]).astype(np.intp), W - 1)
        lab = instances[np.ix_(iy, ix)]
    return img, lab


def class_targets(instances: np.ndarray) -> np.ndarray:
    """0 = background, 1 = particle interior, 2 = boundary (the instance's inner edge ring, 1 px, so that touching
    particles are separated by two boundary pixels)."""
    t = (instances > 0).astype(np.uint8)
    t[find_boundaries(instances, mode="inner") & (instances > 0)] = 2
    return t


def sample_patch(rng: np.random.Generator, patch_px: int = 256, working_nm_per_px: float = 0.5,
                 nm_per_px_range: tuple[float, float] = (0.1, 0.5)) -> tuple[np.ndarray, np.ndarray, SimFrame, float]:
    """Simulate a frame at a random native scale covering ``patch_px`` working pixels; return (image at working
    scale, float32 raw; instances at working scale; the native SimFrame; native nm/px)."""
    params = random_params(rng, size_px=8, nm_per_px_range=nm_per_px_range)
    nmpp = params.nm_per_px
    native = int(np.ceil(patch_px * working_nm_per_px / nmpp)) + 1
    frame = simulate_frame(replace(params, size_px=native), rng)
    img, lab = to_working_scale(frame.image, frame.instances, nmpp, working_nm_per_px)
    assert lab is not None
    return img[:patch_px, :patch_px], lab[:patch_px, :patch_px], frame, nmpp


def make_dataset(n: int, seed: int, patch_px: int = 256, working_nm_per_px: float = 0.5,
                 nm_per_px_range: tuple[float, float] = (0.1, 0.5), progress=None):
    """n normalized patches: x (n, 1, P, P) float32, y (n, P, P) uint8, instances (n, P, P) int32, frames' truth."""
    rng = np.random.default_rng(seed)
    xs = np.empty((n, 1, patch_px, patch_px), np.float32)
    ys = np.empty((n, patch_px, patch_px), np.uint8)
    inst = np.empty((n, patch_px, patch_px), np.int32)
    truths = []
    for i in range(n):
        img, lab, frame, _ = sample_patch(rng, patch_px, working_nm_per_px, nm_per_px_range)
        xs[i, 0] = normalize(img)
        ys[i] = class_targets(lab)
        inst[i] = lab
        truths.append(frame.truth)
        if progress is not None:
            progress(i + 1)
    return xs, ys, inst, truths
