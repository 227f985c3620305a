"""Training data from the simulator: frames resampled to the working scale exactly as the daemon does it
(``copilot.inference.preprocess.resample`` + ``normalize``), with class targets.

No torch here: the same functions build held-out sets for metrics and tests.

Particles: 3 classes (background / particle / boundary). Phases: the class map of ``copilot.sim.sem``
(``PHASE_CLASS_NAMES``: matrix / second-phase / pore).

Training targets are soft (``soft=True``): each class's coverage fraction of every working pixel, the simulator's
exact native masks area-averaged onto the working grid (:func:`area_average`), so the network's 0.5 iso-line of
"particle or boundary" sits where the true edge is, to a fraction of a working pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from skimage.segmentation import find_boundaries

from copilot.inference.card import Normalization
from copilot.inference.preprocess import normalize as _daemon_normalize
from copilot.inference.preprocess import resample
from copilot.sim.stem import SimFrame, random_params, simulate_frame

CLASS_NAMES = ("background", "particle", "boundary")


def normalize(image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5, mean: float = 0.5,
              std: float = 0.25) -> np.ndarray:
    """The card's normalization, by the daemon's own function (``copilot.inference.preprocess.normalize``):
    per-image percentile stretch to [0, 1] (clipped), then (x - mean) / std."""
    norm = Normalization(low_percentile=low_percentile, high_percentile=high_percentile, mean=mean, std=std)
    return _daemon_normalize(image.astype(np.float32, copy=False), norm)


def labels_to_grid(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour labels on an ``shape`` grid covering the same field (samples at working pixel centres)."""
    H, W = labels.shape
    iy = np.minimum(((np.arange(shape[0]) + 0.5) * H / shape[0]).astype(np.intp), H - 1)
    ix = np.minimum(((np.arange(shape[1]) + 0.5) * W / shape[1]).astype(np.intp), W - 1)
    return labels[np.ix_(iy, ix)]


def to_working_scale(image: np.ndarray, instances: np.ndarray | None, nm_per_px: float,
                     working_nm_per_px: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an image from ``nm_per_px`` to ``working_nm_per_px`` with the daemon's ``resample`` (float32, not
    normalized), and its labels (instances or classes) to the same grid (nearest, at pixel centres)."""
    img, _ = resample(image, working_nm_per_px / nm_per_px)
    lab = None if instances is None else labels_to_grid(instances, img.shape)
    return img, lab


def working_shape(shape: tuple[int, int], frame_px_per_px: float) -> tuple[int, int]:
    """The grid ``copilot.inference.preprocess.resample`` makes of a ``shape`` frame (same rounding rule)."""
    if abs(frame_px_per_px - 1.0) < 0.02:
        return int(shape[0]), int(shape[1])
    return max(1, round(shape[0] / frame_px_per_px)), max(1, round(shape[1] / frame_px_per_px))


@lru_cache(maxsize=64)
def _area_operator(n_in: int, n_out: int) -> sp.csr_matrix:
    """(n_out, n_in) weights: the overlap of input pixel i with output pixel j (both tiling the same length),
    divided by the output pixel's length; rows sum to 1."""
    f = n_in / n_out
    lo = np.arange(n_out)[:, None] * f
    i = np.arange(n_in)[None, :]
    w = np.clip(np.minimum(i + 1, lo + f) - np.maximum(i, lo), 0.0, None) / f
    return sp.csr_matrix(w.astype(np.float32))


def area_average(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Coverage fraction of each pixel of a ``shape`` grid covering the same field as ``mask`` (area averaging,
    exact for any factor, up or down).

    >>> area_average(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]]), (2, 2)).round(3).tolist()
    [[0.667, 0.0], [0.222, 0.0]]
    """
    m = np.asarray(mask, np.float32)
    tmp = _area_operator(m.shape[0], shape[0]) @ m
    return np.ascontiguousarray((_area_operator(m.shape[1], shape[1]) @ tmp.T).T, dtype=np.float32)


def soft_particle_targets(instances: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 on a ``shape`` grid from native instance labels: foreground = area coverage; it is
    'boundary' on the inner edge ring of the nearest-neighbour instances (and on partly covered pixels outside
    them), 'particle' elsewhere; background = 1 - coverage."""
    cover = area_average(instances > 0, shape)
    lab = labels_to_grid(instances, shape)
    edge = (class_targets(lab) == 2) | (lab == 0)
    out = np.empty((3, *shape), np.float32)
    out[0] = 1.0 - cover
    out[1] = np.where(edge, 0.0, cover)
    out[2] = np.where(edge, cover, 0.0)
    return out


def soft_class_targets(classes: np.ndarray, shape: tuple[int, int], n_classes: int) -> np.ndarray:
    """(n_classes, H, W) float32: each class's coverage fraction of every pixel of a ``shape`` grid."""
    return np.stack([area_average(classes == c, shape) for c in range(n_classes)])


def to_uint8(soft: np.ndarray) -> np.ndarray:
    """Soft targets stored compactly (×255, rounded); training divides by 255."""
    return np.clip(np.rint(soft * 255.0), 0, 255).astype(np.uint8)


def class_targets(instances: np.ndarray) -> np.ndarray:
    """0 = background, 1 = particle interior, 2 = boundary (the instance's inner edge ring, 1 px, so that touching
    particles are separated by two boundary pixels)."""
    t = (instances > 0).astype(np.uint8)
    t[find_boundaries(instances, mode="inner") & (instances > 0)] = 2
    return t


def native_size(patch_px: int, working_nm_per_px: float, nm_per_px: float) -> int:
    """Native frame edge (px) whose resampled image covers at least ``patch_px`` working pixels, also when the
    scales are within 2 % and the daemon's ``resample`` leaves the frame as it is."""
    return int(np.ceil(patch_px * working_nm_per_px / nm_per_px * 1.02)) + 2


@dataclass(frozen=True)
class Augment:
    """Robustness drawn into the training data (physically: the simulator's own knobs, so masks stay exact).

    ``p_low_dose``: probability of a dose below the nominal range (log-uniform in ``low_dose``);
    ``p_blur``: probability of a probe blur / defocus beyond the nominal range (uniform in ``blur_nm``);
    ``p_invert``: probability of an inverted grey scale (the raw frame, before resampling);
    ``touching``: if set, the fraction of particles placed touching a neighbour is drawn uniformly from this range
    instead of the simulator's (oversampling the hard case of touching pairs; particles only);
    ``max_aspect``: if set, each frame's largest ellipse aspect a/b is drawn uniformly from this range instead of the
    simulator's 1-1.5 (elongated particles, whose Feret min a network trained on near-round ones overestimates;
    particles only);
    ``p_small``: probability of a frame of small particles (median ECD log-uniform in ``small_d50_nm``, at least
    1.25× the smallest), where none is clipped below what the frame's own pixel resolves by ``small_frame_px``
    pixels (and not below ``small_min_nm``) instead of the simulator's 2.5 nm; frames too coarse to resolve less
    than that are left as drawn. So the network learns the 2.4-5 working px particles a mixed frame holds
    (particles only);
    ``p_flat``: probability of a frame whose particles' thickness profiles are drawn per particle in ``flat_powers``
    (``SimParams.profile_powers``: 0.5 an ellipsoid, towards 0 flat-topped, faceted) instead of all ellipsoids, so
    the outline is read from the edge itself and not from where a sphere's thin rim would put it (particles only).
    """

    p_low_dose: float = 0.0
    low_dose: tuple[float, float] = (1.5, 8.0)
    p_blur: float = 0.0
    blur_nm: tuple[float, float] = (0.6, 2.0)
    p_invert: float = 0.0
    touching: tuple[float, float] | None = None
    max_aspect: tuple[float, float] | None = None
    p_small: float = 0.0
    small_d50_nm: tuple[float, float] = (2.0, 5.0)
    small_min_nm: float = 1.2
    small_frame_px: float = 3.0
    p_flat: float = 0.0
    flat_powers: tuple[float, float] = (0.0, 0.5)

    def params(self, params, rng: np.random.Generator):
        """Apply the parameter-level augmentations (draws from ``rng`` only for those that are on)."""
        if self.touching is not None and hasattr(params, "touching_fraction"):
            params = replace(params, touching_fraction=float(rng.uniform(*self.touching)))
        if self.max_aspect is not None and hasattr(params, "max_aspect"):
            params = replace(params, max_aspect=float(rng.uniform(*self.max_aspect)))
        smallest = max(self.small_min_nm, params.nm_per_px * self.small_frame_px)  # what the frame resolves
        if (self.p_small > 0 and hasattr(params, "min_diameter_nm") and rng.random() < self.p_small
                and smallest < params.min_diameter_nm):
            lo, hi = np.log(self.small_d50_nm)
            d50 = max(float(np.exp(rng.uniform(lo, hi))), 1.25 * smallest)
            params = replace(params, d50_nm=d50, min_diameter_nm=smallest)
        if self.p_low_dose > 0 and rng.random() < self.p_low_dose:
            lo, hi = self.low_dose
            params = replace(params, dose=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
        if self.p_blur > 0 and rng.random() < self.p_blur:
            params = replace(params, probe_blur_nm=float(rng.uniform(*self.blur_nm)))
        if self.p_flat > 0 and hasattr(params, "profile_powers") and rng.random() < self.p_flat:
            params = replace(params, profile_powers=self.flat_powers)
        return params

    def image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.p_invert > 0 and rng.random() < self.p_invert:
            img = image.astype(np.int64)
            return (img.max() + img.min() - img).astype(image.dtype)
        return image


NO_AUGMENT = Augment()


def _patch(simulate, params, rng: np.random.Generator, patch_px: int, working_nm_per_px: float,
           augment: Augment) -> tuple[np.ndarray, np.ndarray, SimFrame, float]:
    """Augment ``params``, simulate at the native size covering ``patch_px`` working pixels, resample, crop."""
    params = augment.params(params, rng)
    nmpp = params.nm_per_px
    frame = simulate(replace(params, size_px=native_size(patch_px, working_nm_per_px, nmpp)), rng)
    img, lab = to_working_scale(augment.image(frame.image, rng), frame.instances, nmpp, working_nm_per_px)
    assert lab is not None
    return img[:patch_px, :patch_px], lab[:patch_px, :patch_px], frame, nmpp


def sample_patch(rng: np.random.Generator, patch_px: int = 256, working_nm_per_px: float = 0.5,
                 nm_per_px_range: tuple[float, float] = (0.1, 0.5), modality: str = "haadf",
                 augment: Augment = NO_AUGMENT) -> tuple[np.ndarray, np.ndarray, SimFrame, float]:
    """Simulate a particles frame at a random native scale covering ``patch_px`` working pixels; return (image at
    working scale, float32 raw; instances at working scale; the native SimFrame; native nm/px)."""
    params = random_params(rng, size_px=8, nm_per_px_range=nm_per_px_range, modality=modality)
    return _patch(simulate_frame, params, rng, patch_px, working_nm_per_px, augment)


def sample_phase_patch(rng: np.random.Generator, patch_px: int = 256, working_nm_per_px: float = 1.0,
                       nm_per_px_range: tuple[float, float] = (0.5, 2.0), detector: str = "se",
                       augment: Augment = NO_AUGMENT) -> tuple[np.ndarray, np.ndarray, SimFrame, float]:
    """Simulate an SEM microstructure frame (``copilot.sim.sem``) covering ``patch_px`` working pixels; return
    (image at working scale, float32 raw; class map at working scale; the native SimFrame; native nm/px)."""
    from copilot.sim.sem import random_sem_params, simulate_sem

    params = random_sem_params(rng, size_px=8, nm_per_px_range=nm_per_px_range, detector=detector)
    return _patch(simulate_sem, params, rng, patch_px, working_nm_per_px, augment)


def _soft_crop(frame: SimFrame, nmpp: float, working_nm_per_px: float, patch_px: int, n_classes: int | None):
    shape = working_shape(frame.instances.shape, working_nm_per_px / nmpp)
    if n_classes is None:
        soft = soft_particle_targets(frame.instances, shape)
    else:
        soft = soft_class_targets(frame.instances, shape, n_classes)
    return to_uint8(soft[:, :patch_px, :patch_px])


def make_dataset(n: int, seed: int, patch_px: int = 256, working_nm_per_px: float = 0.5,
                 nm_per_px_range: tuple[float, float] = (0.1, 0.5), progress=None, modality: str = "haadf",
                 augment: Augment = NO_AUGMENT, norm: Normalization | None = None, soft: bool = False):
    """n normalized particle patches: x (n, 1, P, P) float32, y (n, P, P) uint8 classes (``soft``: (n, 3, P, P)
    uint8 coverage × 255, :func:`soft_particle_targets`), instances (n, P, P) int32, frames' truth."""
    norm = norm or Normalization()
    rng = np.random.default_rng(seed)
    xs = np.empty((n, 1, patch_px, patch_px), np.float32)
    ys = np.empty((n, 3, patch_px, patch_px) if soft else (n, patch_px, patch_px), np.uint8)
    inst = np.empty((n, patch_px, patch_px), np.int32)
    truths = []
    for i in range(n):
        img, lab, frame, nmpp = sample_patch(rng, patch_px, working_nm_per_px, nm_per_px_range, modality, augment)
        xs[i, 0] = _daemon_normalize(img, norm)
        ys[i] = _soft_crop(frame, nmpp, working_nm_per_px, patch_px, None) if soft else class_targets(lab)
        inst[i] = lab
        truths.append(frame.truth)
        if progress is not None:
            progress(i + 1)
    return xs, ys, inst, truths


def make_phase_dataset(n: int, seed: int, patch_px: int = 256, working_nm_per_px: float = 1.0,
                       nm_per_px_range: tuple[float, float] = (0.5, 2.0), progress=None, detector: str = "se",
                       augment: Augment = NO_AUGMENT, norm: Normalization | None = None, soft: bool = False,
                       n_classes: int = 3):
    """n normalized phase patches: x (n, 1, P, P) float32, y (n, P, P) uint8 class map (``soft``: (n, C, P, P)
    uint8 coverage × 255), frames' truth."""
    norm = norm or Normalization()
    rng = np.random.default_rng(seed)
    xs = np.empty((n, 1, patch_px, patch_px), np.float32)
    ys = np.empty((n, n_classes, patch_px, patch_px) if soft else (n, patch_px, patch_px), np.uint8)
    truths = []
    for i in range(n):
        img, lab, frame, nmpp = sample_phase_patch(rng, patch_px, working_nm_per_px, nm_per_px_range, detector,
                                                   augment)
        xs[i, 0] = _daemon_normalize(img, norm)
        ys[i] = _soft_crop(frame, nmpp, working_nm_per_px, patch_px, n_classes) if soft else lab
        truths.append(frame.truth)
        if progress is not None:
            progress(i + 1)
    return xs, ys, truths
