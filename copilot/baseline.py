"""The classical baseline a microscopist would run: global Otsu threshold + distance-transform watershed.

This is what Fiji's *Analyze Particles* (after *Make Binary* / *Watershed*) or ParticleSpy's Otsu + watershed do, as
plain functions over arrays (scikit-image / scipy only), so the benchmark can put the learned model beside it on the
very same frames (``bench/accuracy/run.py``). Parameters are set once, in physical units where the frame is
calibrated, and are never tuned per frame or per domain group: that is the point of a baseline.

>>> from skimage.draw import disk
>>> img = np.full((64, 64), 10.0)
>>> img[disk((20, 20), 6)] = 100.0
>>> img[disk((44, 40), 8)] = 100.0
>>> labels = classical_particles(img, nm_per_px=0.5)
>>> int(labels.max())
2
>>> phases = classical_phases(img)
>>> sorted(np.unique(phases).tolist())
[0, 1]
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.segmentation import relabel_sequential, watershed

__all__ = ["classical_particles", "classical_phases", "particles_are_bright", "otsu_foreground"]


def _smooth(image: np.ndarray, sigma_px: float) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    return ndi.gaussian_filter(img, sigma_px) if sigma_px > 0 else img


def particles_are_bright(image: np.ndarray, threshold: float | None = None) -> bool:
    """Guess the contrast: particles are the minority phase and the histogram's long tail lies on their side.

    The primary rule is the Otsu split: the class with fewer pixels is the particles (supported particles cover far
    less than half of a frame). When the split is close to even (40-60 %), the sign of the skewness decides (bright
    particles on a dark support skew the histogram to the right).

    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(10, 1, (64, 64)); img[20:30, 20:30] = 50
    >>> particles_are_bright(img), particles_are_bright(-img)
    (True, False)
    """
    x = np.asarray(image, dtype=np.float64).ravel()
    t = threshold_otsu(x) if threshold is None else threshold
    above = float(np.mean(x > t))
    if 0.4 <= above <= 0.6:
        sd = x.std()
        skew = float(np.mean(((x - x.mean()) / sd) ** 3)) if sd > 0 else 0.0
        return skew >= 0.0
    return above < 0.5


def otsu_foreground(image: np.ndarray, bright_particles: bool | None = None, smooth_sigma_px: float = 1.0,
                    fill_holes: bool = True) -> tuple[np.ndarray, bool]:
    """Binary particle mask by a global Otsu threshold after light Gaussian smoothing; returns (mask, bright)."""
    img = _smooth(image, smooth_sigma_px)
    if np.ptp(img) == 0:
        return np.zeros(img.shape, bool), True if bright_particles is None else bool(bright_particles)
    t = threshold_otsu(img)
    bright = particles_are_bright(img, t) if bright_particles is None else bool(bright_particles)
    mask = img > t if bright else img <= t
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    return mask, bright


def classical_particles(image: np.ndarray, nm_per_px: float | None = None, bright_particles: bool | None = True, *,
                        smooth_sigma_px: float = 1.0, min_area_nm2: float = 2.0, min_area_px: int = 4,
                        min_distance_nm: float = 2.0, min_distance_px: int = 3,
                        fill_holes: bool = True) -> np.ndarray:
    """Instance labels (int32, 0 = background) of particles by Otsu + distance-transform watershed.

    1. light Gaussian smoothing (``smooth_sigma_px``, 1 px: what one applies against shot noise);
    2. global Otsu threshold; ``bright_particles=None`` guesses the contrast (:func:`particles_are_bright`);
       holes are filled (Fiji's "include holes");
    3. objects smaller than ``min_area_nm2`` (``min_area_px`` when uncalibrated) are removed;
    4. touching particles are split by a watershed on the inverted Euclidean distance transform, seeded by its
       local maxima (``peak_local_max``) at least ``min_distance_nm`` apart (``min_distance_px`` uncalibrated);
       every connected object keeps at least one seed.

    Lengths are physical where ``nm_per_px`` is given, so the same call works at any magnification.

    >>> from skimage.draw import disk
    >>> img = np.zeros((80, 80)); img[disk((40, 30), 10)] = 1; img[disk((40, 48), 10)] = 1   # touching pair
    >>> int(classical_particles(img, nm_per_px=0.5).max())
    2
    """
    mask, _ = otsu_foreground(image, bright_particles, smooth_sigma_px, fill_holes)
    if nm_per_px is not None:
        min_px = max(1.0, min_area_nm2 / nm_per_px**2)
        md = max(1, int(round(min_distance_nm / nm_per_px)))
    else:
        min_px, md = float(min_area_px), int(min_distance_px)
    regions, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    sizes = np.bincount(regions.ravel())
    keep = sizes >= min_px
    keep[0] = False
    mask = keep[regions]
    regions, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=md, labels=regions, exclude_border=False)
    markers = np.zeros(regions.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    # an object without a peak (thin, flat) still gets one seed at its distance maximum
    seeded = np.zeros(n + 1, bool)
    seeded[regions[tuple(peaks.T)]] = True
    missing = np.nonzero(~seeded[1:])[0] + 1
    if missing.size:
        pos = ndi.maximum_position(distance, regions, missing)
        for k, (r, c) in enumerate(pos):
            markers[r, c] = len(peaks) + 1 + k
    labels = watershed(-distance, markers, mask=mask)
    return relabel_sequential(labels)[0].astype(np.int32)


def classical_phases(image: np.ndarray, n_classes: int = 2, smooth_sigma_px: float = 1.0) -> np.ndarray:
    """Class map (uint8) by Otsu (two classes) or multi-Otsu (more), after light smoothing.

    Classes are ordered by intensity: 0 is the darkest (pores in an SEM of a porous metal), ``n_classes - 1`` the
    brightest. Which class is which material is the caller's knowledge, as it is the microscopist's.

    >>> img = np.zeros((32, 32)); img[:, 16:] = 1.0; img[:8, :8] = 0.5
    >>> [int(np.sum(classical_phases(img, 3, smooth_sigma_px=0) == k)) for k in range(3)]
    [448, 64, 512]
    """
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    img = _smooth(image, smooth_sigma_px)
    if np.ptp(img) == 0:
        return np.zeros(img.shape, np.uint8)
    if n_classes == 2:
        thresholds = np.array([threshold_otsu(img)])
    else:
        thresholds = threshold_multiotsu(img, classes=n_classes)
    return np.digitize(img, thresholds).astype(np.uint8)
