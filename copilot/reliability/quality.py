"""Image quality from the pixels alone: focus, noise (dose), saturation, dynamic range, data bar.

Focus and noise are measured once, on the image the network saw (resampled to the model's working scale and
stretched to its percentile range; a frame enlarged onto the working grid at its own pixels instead,
``native_crop``), so they are comparable across magnifications and detectors; a central
``QUALITY_CROP_PX``² window of it is enough and keeps the cost independent of the frame size. Its filters are
``copilot.reliability.filters`` (scipy's and numpy's values, compiled). Saturation and
dynamic range come from a strided sample of the raw pixels (at most about ``RAW_SAMPLE_PX``² of them).
"""

from __future__ import annotations

import numpy as np

from copilot.frame import Frame
from copilot.inference.preprocess import normalize, stretch_limits
from copilot.reliability import filters

QUALITY_FEATURES = ["noise_sigma", "snr", "sharpness", "edge_blur_px", "saturated_fraction", "clipped_low_fraction",
                    "dynamic_range", "data_bar"]
_LAPLACE_NORM = np.sqrt(20.0)  # √(sum of squared 4-neighbour Laplacian weights)
QUALITY_CROP_PX = 256
RAW_SAMPLE_PX = 256


def _crop(img: np.ndarray, size: int = QUALITY_CROP_PX) -> np.ndarray:
    h, w = img.shape
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def noise_sigma(img: np.ndarray) -> float:
    """Robust white-noise SD from the median absolute Laplacian (Immerkær-like), in the image's units."""
    return float(median(filters.abs_laplacian(img)) / 0.6745 / _LAPLACE_NORM)


def gradient_magnitude(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """|∇(G_σ ∗ img)|: Gaussian smoothing (two 1-D passes) then central differences — half the filter passes of
    ``ndimage.gaussian_gradient_magnitude``. Central differences add a two-pixel box, so this is a Gaussian
    derivative at σ_eff = √(σ² + 1/3) (``effective_sigma``)."""
    return filters.gradient_magnitude(filters.gaussian(img, sigma_px))


def effective_sigma(sigma_px: float) -> float:
    return float(np.sqrt(sigma_px**2 + 1.0 / 3.0))


def sharpness(img: np.ndarray, sigma_px: float = 1.0, gradient: np.ndarray | None = None) -> float:
    """RMS gradient after light smoothing (Tenengrad): edge energy, which falls as the probe defocuses.

    (The mean gradient would not do: blurring an edge spreads it but keeps its total variation.) ``gradient``:
    the σ = ``sigma_px`` gradient magnitude, when the caller has it already.
    """
    g = gradient_magnitude(img, sigma_px) if gradient is None else gradient
    return float(np.sqrt(np.mean(g**2)))


def snr(img: np.ndarray, noise: float | None = None, smooth: np.ndarray | None = None) -> float:
    """Contrast over noise: the 1–99 % range of the smoothed image (σ = 2.5 px) over the white-noise SD.

    Falls with dose (shot noise) whatever the contrast stretch, because both terms are in the same units.
    """
    smooth = filters.gaussian(img, 2.5) if smooth is None else smooth
    lo, hi = percentiles(smooth, [1, 99])
    return float((hi - lo) / max(noise_sigma(img) if noise is None else noise, 1e-6))


def edge_blur_px(img: np.ndarray, s1: float = 1.0, s2: float = 2.5, g1: np.ndarray | None = None,
                 g2: np.ndarray | None = None) -> float:
    """Gaussian blur width (σ, px) of the image's strongest edges, from how their gradient falls between scales.

    For a step edge blurred by σb, the gradient peak at scale σ is ∝ 1 / √(σb² + σ²); the ratio R of the peaks at
    σ1 and σ2 gives σb² = (σ2² − R²·σ1²) / (R² − 1) (with the effective scales of ``gradient_magnitude``).
    Contrast-invariant: out of focus reads large, whatever the sample. ``g1``/``g2``: the gradient magnitudes at
    ``s1``/``s2``, when the caller has them.
    """
    e1, e2 = effective_sigma(s1), effective_sigma(s2)
    # scale-normalized so an ideal edge gives R = σ2/σ1 … 1
    g1 = (gradient_magnitude(img, s1) if g1 is None else g1) * e1
    g2 = (gradient_magnitude(img, s2) if g2 is None else g2) * e2
    flat = g2.ravel()
    k = min(int(0.97 * (flat.size - 1)), flat.size - 1)
    kth = filters.order_statistics(flat, [k])
    strong = g2 >= (np.partition(flat, k)[k] if kth is None else kth[0])  # the 97th percentile, no full sort
    r = float(median(g1[strong] / np.maximum(g2[strong], 1e-9))) * e2 / e1
    if r <= 1.0 + 1e-3:
        return 10.0
    return float(np.sqrt(max((e2**2 - r**2 * e1**2) / (r**2 - 1), 0.0)))


def percentiles(values: np.ndarray, q) -> np.ndarray:
    """``np.percentile(values, q)`` (linear), bit for bit and of its type (a Python number ``q``: numpy's weak
    promotion, one value of the input's float type), from the order statistics at the two sides of each index: for
    8- and 16-bit unsigned pixels from their counts (one pass, no partition of the sample), for float32 from
    ``filters.order_statistics``.

    >>> v = np.random.default_rng(0).integers(0, 4096, (256, 256)).astype(np.uint16)
    >>> bool(np.all(percentiles(v, [0.5, 99.5]) == np.percentile(v, [0.5, 99.5])))
    True
    """
    if values.dtype not in (np.uint8, np.uint16, np.float32) or values.size == 0:
        return np.percentile(values, q)
    weak = type(q) in (int, float)
    index = np.atleast_1d(np.asarray(q, np.float64)) / 100 * (values.size - 1)  # numpy's virtual index and weight
    below = np.floor(index)
    sides = np.stack([below, np.minimum(below + 1, values.size - 1)]).astype(np.int64)
    if values.dtype == np.float32:
        pairs = filters.order_statistics(values, sides.ravel())
        if pairs is None:
            return np.percentile(values, q)
        pairs = pairs.reshape(sides.shape)
    else:
        cum = np.cumsum(np.bincount(values.ravel()))
        pairs = np.searchsorted(cum, sides, side="right").astype(values.dtype)
    gamma = [float(g) if weak else g for g in index - below]
    out = [np.quantile(pairs[:, i], g) for i, g in enumerate(gamma)]
    return out[0] if weak else np.array(out)


def median(values: np.ndarray) -> np.floating:
    """``np.median(values)``, bit for bit and of its type; of float32 values (the mean of the two middle ones, in
    float32) from their order statistics."""
    n = values.size
    middle = filters.order_statistics(values, [(n - 1) // 2, n // 2]) if values.dtype == np.float32 else None
    return np.median(values) if middle is None else np.mean(middle)


def native_crop(frame: Frame, norm) -> np.ndarray:
    """The central ``QUALITY_CROP_PX``² of the frame's own pixels, normalized as the network input was (``norm``:
    the card's ``Normalization``, limits from the whole frame): what focus and noise are measured on when the frame
    was enlarged onto the working grid, whose interpolated pixels would hide its noise (a noise frame enlarged 1.6×
    read a signal-to-noise of 3.3 instead of 0.5)."""
    raw = frame.pixels
    return normalize(_crop(raw).astype(np.float32), norm, stretch_limits(raw, norm))


def image_quality(frame: Frame, network_input: np.ndarray | None) -> dict[str, float]:
    """QUALITY_FEATURES of one frame; ``network_input``: the normalized working-grid image (else a stretched
    sample of the raw pixels stands in)."""
    raw = frame.pixels
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        lo_val, hi_val, span = info.min, info.max, float(info.max) - float(info.min)
    else:
        lo_val, hi_val, span = None, None, None
    sample = raw[:: max(1, raw.shape[0] // RAW_SAMPLE_PX), :: max(1, raw.shape[1] // RAW_SAMPLE_PX)]
    p_lo, p_hi = percentiles(sample, [0.5, 99.5])
    q = {
        "saturated_fraction": float((sample == hi_val).mean()) if hi_val is not None else 0.0,
        "clipped_low_fraction": float((sample == lo_val).mean()) if lo_val is not None else 0.0,
        "dynamic_range": float((p_hi - p_lo) / span) if span else float(p_hi > p_lo),
        "data_bar": float(frame.meta.get("data_bar_rows", 0) > 0),
    }
    img = network_input if network_input is not None else (sample - p_lo) / max(p_hi - p_lo, 1e-9)
    crop = np.ascontiguousarray(_crop(img), dtype=np.float32)
    smooth = filters.gaussian(crop, 2.5)  # shared by the SNR and the coarse edge scale
    g_coarse = filters.gradient_magnitude(smooth)
    g_fine = gradient_magnitude(crop, 1.0)  # shared by sharpness and edge blur
    q["noise_sigma"] = noise_sigma(crop)
    q["snr"] = snr(crop, q["noise_sigma"], smooth)
    q["sharpness"] = sharpness(crop, 1.0, g_fine)
    q["edge_blur_px"] = edge_blur_px(crop, 1.0, 2.5, g_fine, g_coarse)
    return q
