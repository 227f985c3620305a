"""Frame pixels → network input: resample to the card's working scale, then normalize."""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy import ndimage as ndi
from skimage.transform import resize

from copilot.errors import RefusedFrame
from copilot.frame import Frame
from copilot.inference.card import ModelCard, Normalization

log = logging.getLogger(__name__)


def working_scale(frame: Frame, card: ModelCard) -> float:
    """Frame pixels per working pixel (2.0: the network sees the frame at half size). 1.0 when uncalibrated."""
    if frame.nm_per_px is None:
        return 1.0
    return card.working_nm_per_px / frame.nm_per_px


#: the narrowest working grid worth running the network on
MIN_WORKING_EDGE_PX = 8


def bounded_scale(frame: Frame, scale: float, *, max_upsample: float, max_working_px: float) -> float:
    """``scale`` (frame pixels per working pixel) kept within the input limits, before any resampling.

    An enlargement beyond ``max_upsample`` is refused with the reason (a 512² frame labelled 10 nm/px would become a
    10240² grid for a 0.5 nm/px model); a working grid above ``max_working_px`` pixels is made coarser than the
    working scale until it fits (logged; ``Segmentation.frame_px_per_px`` carries the scale used, so sizes in nm stay
    right).

    >>> f = Frame(np.zeros((512, 512), np.uint16), nm_per_px=10.0, stream="s", frame_id="f", origin="mem")
    >>> bounded_scale(f, 0.05, max_upsample=4, max_working_px=16e6)
    Traceback (most recent call last):
    ...
    copilot.errors.RefusedFrame: mem: frame is 10 nm/px but the model works at 0.5 nm/px: a 20.0× enlargement to 10240×10240 px, more than limits.max_upsample = 4
    >>> bounded_scale(f, 1.0, max_upsample=4, max_working_px=512 * 256)
    1.4142135623730951
    """
    if scale < 1.0 / max_upsample:
        h, w = frame.shape
        raise RefusedFrame(frame.origin, f"frame is {frame.nm_per_px:g} nm/px but the model works at "
                                         f"{(frame.nm_per_px or 1.0) * scale:g} nm/px: a {1 / scale:.1f}× enlargement to "
                                         f"{round(h / scale)}×{round(w / scale)} px, more than limits.max_upsample = "
                                         f"{max_upsample:g}")
    if min(frame.shape) / scale < MIN_WORKING_EDGE_PX:
        raise RefusedFrame(frame.origin, f"frame of {frame.shape[0]}×{frame.shape[1]} px "
                                         f"({frame.nm_per_px or 'uncalibrated'} nm/px) would be "
                                         f"{min(frame.shape) / scale:.1f} px wide on the model's working grid, less "
                                         f"than {MIN_WORKING_EDGE_PX}")
    px = frame.shape[0] * frame.shape[1]
    if px / scale**2 > max_working_px:
        coarser = math.sqrt(px / max_working_px)
        log.warning("%s: working grid of %.1f Mpx exceeds limits.max_working_mpx = %.1f; resampled %.2f× coarser "
                    "than the model's working scale", frame.origin, px / scale**2 / 1e6, max_working_px / 1e6,
                    coarser / scale)
        return coarser
    return scale


#: identity columns per block when building a resampling operator (bounds its memory to n_in × block × 8 bytes)
_OPERATOR_BLOCK = 256


@lru_cache(maxsize=16)
def _downsample_operator(n_in: int, n_out: int) -> sp.csr_matrix:
    """The (n_out, n_in) matrix of skimage's ``resize(order=1, anti_aliasing=True, mode="reflect")`` along one axis.

    That resize is a Gaussian (sigma = (n_in / n_out - 1) / 2, scipy ``mirror`` boundary) followed by linear
    interpolation at pixel-area-aligned positions (``ndi.zoom(grid_mode=True)``): both linear and separable, so
    applying them to the identity gives the exact operator, with about 8 non-zeros per row. Applying two of these
    (rows, then columns) reproduces ``resize`` to float32 rounding at a fifth of its cost, because the Gaussian is
    only evaluated where the interpolation reads it.
    """
    factor = n_in / n_out
    blocks = []
    for start in range(0, n_in, _OPERATOR_BLOCK):  # columns of the identity are independent: build block by block
        eye = np.zeros((n_in, min(_OPERATOR_BLOCK, n_in - start)), np.float64)
        eye[np.arange(start, start + eye.shape[1]), np.arange(eye.shape[1])] = 1.0
        eye = ndi.gaussian_filter1d(eye, max(0.0, (factor - 1) / 2), axis=0, mode="mirror")
        m = ndi.zoom(eye, (n_out / n_in, 1.0), order=1, mode="mirror", grid_mode=True)
        m[np.abs(m) < 1e-8] = 0.0
        blocks.append(sp.csc_matrix(m.astype(np.float32)))
    return sp.hstack(blocks, format="csr")


#: frame pixels per working pixel this close to 1 leave the frame as it is
SAME_SCALE = 0.02


def enlarged(frame_px_per_px: float) -> bool:
    """Whether ``resample`` enlarges a frame at this scale (its working grid is finer than its own pixels)."""
    return frame_px_per_px < 1.0 - SAME_SCALE


def resample(pixels: np.ndarray, frame_px_per_px: float) -> tuple[np.ndarray, float]:
    """Resample to the working grid; returns the image and the exact scale achieved (after rounding the shape).

    Exactly what the training data went through (``copilot.train.data``: skimage ``resize``, bilinear, with
    anti-aliasing when shrinking). Shrinking — the usual case, frames finer than the working scale — runs as two
    sparse products with cached per-axis operators (same numbers as ``resize``, about 5× faster: 18 ms instead of
    95 ms for 2048² → 819² on one core); enlarging calls ``resize`` itself.

    >>> img, s = resample(np.ones((100, 60), np.float32), 2.0)
    >>> img.shape, s
    ((50, 30), 2.0)
    """
    img = pixels.astype(np.float32, copy=False)
    if abs(frame_px_per_px - 1.0) < SAME_SCALE:
        return img, 1.0
    h, w = img.shape
    out_h, out_w = max(1, round(h / frame_px_per_px)), max(1, round(w / frame_px_per_px))
    if out_h < h and out_w < w:
        tmp = _downsample_operator(h, out_h) @ img
        img = np.ascontiguousarray((_downsample_operator(w, out_w) @ tmp.T).T, dtype=np.float32)
    else:
        img = resize(img, (out_h, out_w), order=1, anti_aliasing=frame_px_per_px > 1, preserve_range=True)
        img = img.astype(np.float32, copy=False)
    return img, h / img.shape[0]


def stretch_limits(img: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """The grey values ``normalize`` maps to 0 and 1: the card's percentiles of a strided subsample."""
    step = max(1, int(np.sqrt(img.size / 65536)))
    lo, hi = np.percentile(img[::step, ::step], [norm.low_percentile, norm.high_percentile])
    return float(lo), float(hi)


def normalize(img: np.ndarray, norm: Normalization, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Percentile stretch to [0, 1] (``stretch_limits``, or ``limits`` taken from a larger image), then
    (x - mean) / std."""
    lo, hi = stretch_limits(img, norm) if limits is None else limits
    scale = 1.0 / max(float(hi - lo), 1e-6)
    out = (img - np.float32(lo)) * np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    out -= np.float32(norm.mean)
    out *= np.float32(1.0 / norm.std)
    return out


def nearest_resample(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label image on another grid covering the same field, by the label at each new pixel's centre.

    >>> nearest_resample(np.array([[1, 2], [3, 4]]), (4, 4))[0].tolist()
    [1, 1, 2, 2]
    """
    rows, cols = nearest_indices(labels.shape, shape)
    return labels[np.ix_(rows, cols)]


def nearest_indices(source: tuple[int, ...], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``source`` row and column at the centre of each row and column of a ``shape`` grid covering the same
    field (``nearest_resample``'s lookup)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * source[0] / shape[0]).astype(int), source[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * source[1] / shape[1]).astype(int), source[1] - 1)
    return rows, cols
