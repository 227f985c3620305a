"""Frame pixels → network input: resample to the card's working scale, then normalize."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from copilot.frame import Frame
from copilot.inference.card import ModelCard, Normalization


def working_scale(frame: Frame, card: ModelCard) -> float:
    """Frame pixels per working pixel (2.0: the network sees the frame at half size). 1.0 when uncalibrated."""
    if frame.nm_per_px is None:
        return 1.0
    return card.working_nm_per_px / frame.nm_per_px


def resample(pixels: np.ndarray, frame_px_per_px: float) -> tuple[np.ndarray, float]:
    """Resample to the working grid; returns the image and the exact scale achieved (after rounding the shape).

    Integer down-sampling uses a box mean (fast and alias-free); anything else bilinear with anti-aliasing.

    >>> img, s = resample(np.ones((100, 60), np.float32), 2.0)
    >>> img.shape, s
    ((50, 30), 2.0)
    """
    img = pixels.astype(np.float32, copy=False)
    if abs(frame_px_per_px - 1.0) < 0.02:
        return img, 1.0
    h, w = img.shape
    out_h, out_w = max(1, round(h / frame_px_per_px)), max(1, round(w / frame_px_per_px))
    k = round(frame_px_per_px)
    if frame_px_per_px > 1 and abs(frame_px_per_px - k) < 0.02 and h % k == 0 and w % k == 0:
        img = img.reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)
    else:
        img = resize(img, (out_h, out_w), order=1, anti_aliasing=frame_px_per_px > 1, preserve_range=True)
        img = img.astype(np.float32, copy=False)
    return img, h / img.shape[0]


def normalize(img: np.ndarray, norm: Normalization) -> np.ndarray:
    """Percentile stretch to [0, 1] (percentiles from a strided subsample), then (x - mean) / std."""
    step = max(1, int(np.sqrt(img.size / 65536)))
    sample = img[::step, ::step]
    lo, hi = np.percentile(sample, [norm.low_percentile, norm.high_percentile])
    scale = 1.0 / max(float(hi - lo), 1e-6)
    out = (img - np.float32(lo)) * np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    out -= np.float32(norm.mean)
    out *= np.float32(1.0 / norm.std)
    return out
