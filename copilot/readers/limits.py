"""Bounds every input meets before the expensive work: pixel count from the header, size, grey type, finite values.

``InputLimits`` is the ``[limits]`` config section. Readers call :func:`check_header_pixels` with what the file's
header declares *before* decoding (a 389 kB zlib TIFF can declare 20000² pixels); :func:`checked_pixels` validates the
decoded array (files and socket frames alike) and masks a few non-finite pixels or refuses the frame, so no NaN/inf
ever reaches the backend or per-stream state.

>>> pixels, notes = checked_pixels(np.array([[1.0, np.nan], [3.0, 4.0]] * 4, np.float32), "mem", InputLimits(
...                                max_nonfinite_fraction=0.5))
>>> float(pixels[0, 1]), notes
(3.0, {'nonfinite_px': 4, 'nonfinite_replaced_by': 3.0})
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from copilot.errors import RefusedFrame


class InputLimits(BaseModel):
    """Bounds on one input frame (``[limits]`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_frame_mpx: float = Field(50.0, gt=0, description="largest frame accepted (megapixels of the first image), "
                                 "checked against the file header before decoding")
    max_decoded_mb: float = Field(768.0, gt=0, description="largest decoded first image (all samples) in MiB")
    min_edge_px: int = Field(2, ge=2, description="frames narrower or shorter than this are refused")
    max_nonfinite_fraction: float = Field(0.01, ge=0, le=1, description="NaN/inf pixels up to this share of a float "
                                          "frame are replaced by the median of the finite ones; more refuses the frame")
    max_upsample: float = Field(4.0, ge=1, description="largest enlargement to the model's working scale; a frame "
                                "that would need more (e.g. 10 nm/px for a 0.5 nm/px model) is refused with the reason")
    max_working_mpx: float = Field(8.4, gt=0, description="largest working grid (megapixels); a larger one is "
                                   "resampled coarser than the working scale to fit, and the result says so")
    max_stage_s: float = Field(600.0, gt=0, description="an input that keeps one pipeline stage busy longer than this "
                               "makes the daemon unhealthy: it exits for a restart, and an input in flight at "
                               "repeated deaths is skipped with the reason")
    quarantine_copy_max_mb: float = Field(256.0, ge=0, description="quarantine = 'copy': data larger than this is "
                                          "recorded but not copied")

    @property
    def max_pixels(self) -> int:
        return int(self.max_frame_mpx * 1e6)


DEFAULT_LIMITS = InputLimits()
#: float pixels beyond this magnitude count as non-finite: float32 arithmetic on them (resampling sums, percentile
#: ranges) would overflow to inf and turn into NaN downstream
MAX_ABS_VALUE = 1e30
_current: contextvars.ContextVar[InputLimits] = contextvars.ContextVar("input_limits", default=DEFAULT_LIMITS)


@contextlib.contextmanager
def limits_in_force(limits: InputLimits | None) -> Iterator[InputLimits]:
    """Make ``limits`` the ones :func:`check_header_pixels` applies in this thread (format readers take no argument)."""
    token = _current.set(limits or DEFAULT_LIMITS)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_limits() -> InputLimits:
    return _current.get()


def check_header_pixels(origin: str, shape: tuple[int, ...], samples: int = 1, itemsize: int = 1) -> None:
    """Refuse, before decoding, an image whose header declares more pixels or bytes than the limits allow."""
    limits = _current.get()
    dims = [int(n) for n in shape]
    if any(n < 0 for n in dims):
        raise RefusedFrame(origin, f"header declares a negative size {tuple(dims)}")
    px = int(np.prod(dims[-2:], dtype=object)) if len(dims) >= 2 else int(np.prod(dims, dtype=object))
    if px > limits.max_pixels:
        raise RefusedFrame(origin, f"header declares {_mpx(px)} Mpx {'×'.join(map(str, dims[-2:]))}, more than "
                                   f"limits.max_frame_mpx = {limits.max_frame_mpx:g} (refused before decoding)")
    nbytes = px * max(1, int(samples)) * max(1, int(itemsize))
    if nbytes > limits.max_decoded_mb * 2**20:
        raise RefusedFrame(origin, f"first image would decode to {nbytes / 2**20:.0f} MiB, more than "
                                   f"limits.max_decoded_mb = {limits.max_decoded_mb:g} (refused before decoding)")


def checked_pixels(pixels: np.ndarray, origin: str, limits: InputLimits | None = None) -> tuple[np.ndarray, dict]:
    """A 2-D grey array within the limits, with every pixel finite; returns it and notes for ``Frame.meta``.

    Raises :class:`RefusedFrame` with the reason otherwise. Up to ``max_nonfinite_fraction`` NaN/inf pixels (or
    beyond ±``MAX_ABS_VALUE``) are replaced (on a copy) by the median of the finite ones and counted in ``notes["nonfinite_px"]``.
    """
    limits = limits or _current.get()
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2:
        raise RefusedFrame(origin, f"not a 2-D image (shape {getattr(pixels, 'shape', None)})")
    h, w = pixels.shape
    if min(h, w) < limits.min_edge_px:
        raise RefusedFrame(origin, f"image {h}×{w} px is too small to analyse (limits.min_edge_px = "
                                   f"{limits.min_edge_px})")
    if h * w > limits.max_pixels:
        raise RefusedFrame(origin, f"image {h}×{w} px ({_mpx(h * w)} Mpx) is larger than limits.max_frame_mpx = "
                                   f"{limits.max_frame_mpx:g}")
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * np.uint8(255)
    if pixels.dtype.kind not in "uif":
        raise RefusedFrame(origin, f"pixel type {pixels.dtype} is not a grey level")
    notes: dict = {}
    if pixels.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            finite = np.abs(pixels) <= MAX_ABS_VALUE  # False for NaN and ±inf too
        bad = int(finite.size - np.count_nonzero(finite))
        if bad:
            fraction = bad / finite.size
            if fraction > limits.max_nonfinite_fraction:
                raise RefusedFrame(origin, f"{bad} of {finite.size} pixels ({fraction:.1%}) are NaN, infinite or beyond "
                                           f"±{MAX_ABS_VALUE:g}, more than limits.max_nonfinite_fraction = "
                                           f"{limits.max_nonfinite_fraction:g}")
            fill = float(np.median(pixels[finite]))
            pixels = pixels.astype(np.float32) if pixels.dtype.itemsize > 4 else pixels.copy()
            pixels[~finite] = fill
            notes = {"nonfinite_px": bad, "nonfinite_replaced_by": fill}
        if pixels.dtype.itemsize > 4:  # float64: every value is within float32's range now; halves the memory
            pixels = pixels.astype(np.float32)
    return pixels, notes


def _mpx(px: int) -> str:
    return f"{px / 1e6:.1f}"
