"""Image quality from the pixels alone: focus, noise (dose), saturation, dynamic range, data bar.

Focus and noise are measured on the image the network saw (resampled to the model's working scale and stretched
to its percentile range), so they are comparable across magnifications and detectors.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from copilot.frame import Frame

QUALITY_FEATURES = ["noise_sigma", "sharpness", "saturated_fraction", "clipped_low_fraction", "dynamic_range",
                    "data_bar"]
_LAPLACE_NORM = np.sqrt(20.0)  # √(sum of squared 4-neighbour Laplacian weights)


def _crop(img: np.ndarray, size: int = 512) -> np.ndarray:
    h, w = img.shape
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def noise_sigma(img: np.ndarray) -> float:
    """Robust white-noise SD from the median absolute Laplacian (Immerkær-like), in the image's units."""
    lap = ndi.laplace(img.astype(np.float32, copy=False))
    return float(np.median(np.abs(lap)) / 0.6745 / _LAPLACE_NORM)


def sharpness(img: np.ndarray, sigma_px: float = 1.0) -> float:
    """RMS gradient after light smoothing (Tenengrad): edge energy, which falls as the probe defocuses.

    (The mean gradient would not do: blurring an edge spreads it but keeps its total variation.)
    """
    g = ndi.gaussian_gradient_magnitude(img.astype(np.float32, copy=False), sigma_px)
    return float(np.sqrt(np.mean(g**2)))


def image_quality(frame: Frame, network_input: np.ndarray | None) -> dict[str, float]:
    raw = frame.pixels
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        lo_val, hi_val, span = info.min, info.max, float(info.max) - float(info.min)
    else:
        lo_val, hi_val, span = None, None, None
    sample = raw[:: max(1, raw.shape[0] // 512), :: max(1, raw.shape[1] // 512)]
    p_lo, p_hi = np.percentile(sample, [0.5, 99.5])
    q = {
        "saturated_fraction": float((sample == hi_val).mean()) if hi_val is not None else 0.0,
        "clipped_low_fraction": float((sample == lo_val).mean()) if lo_val is not None else 0.0,
        "dynamic_range": float((p_hi - p_lo) / span) if span else float(p_hi > p_lo),
        "data_bar": float(frame.meta.get("data_bar_rows", 0) > 0),
    }
    img = network_input if network_input is not None else (sample - p_lo) / max(p_hi - p_lo, 1e-9)
    crop = _crop(img)
    q["noise_sigma"] = noise_sigma(crop)
    q["sharpness"] = sharpness(crop)
    return q
