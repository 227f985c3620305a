"""Preview images: a small 8-bit JPEG of every frame, published on ``preview.<stream>``.

Subscribers (``copilot overlay``) draw the newest frame under its particle outlines without any access to the
acquisition files. The frame is box-averaged down to at most ``max_px`` pixels on its long edge, contrast-stretched
between two percentiles (so one hot pixel or a dark corner does not wash the view out) and JPEG-encoded.

The header travels as the JSON frame of the message (``Publisher.publish_preview`` adds ``parts``)::

    {"schema": "copilot.preview/1", "stream": "cam1", "frame_id": "f0012", "acquired_at": "...",
     "shape": [512, 512],            # preview rows, columns
     "frame_shape": [2048, 2048],    # the frame's rows, columns (data bar already cropped)
     "scale": 4.0,                   # frame pixels per preview pixel (the same on both axes)
     "nm_per_px": 1.2,               # of the preview; null for an uncalibrated frame
     "stretch": [412.0, 3810.0]}     # raw values mapped to 0 and 255

>>> import numpy as np
>>> from copilot.frame import Frame
>>> f = Frame(np.arange(2048 * 1024, dtype=np.uint16).reshape(2048, 1024), 0.3, "s", "f1", "mem")
>>> header, jpeg = make_preview(f, max_px=256)
>>> header["shape"], header["scale"], round(header["nm_per_px"], 2), jpeg[:3] == b"\\xff\\xd8\\xff"
([256, 128], 8.0, 2.4, True)
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from copilot.frame import Frame

PREVIEW_SCHEMA = "copilot.preview/1"


def stretch_to_uint8(pixels: np.ndarray, low_pct: float = 0.5,
                     high_pct: float = 99.5) -> tuple[np.ndarray, float, float]:
    """Map the ``low_pct``..``high_pct`` percentile range linearly onto 0..255; returns (image, low, high)."""
    v = np.asarray(pixels, np.float32)
    finite = np.isfinite(v)
    if not finite.all():
        fill = float(np.median(v[finite])) if finite.any() else 0.0
        v = np.where(finite, v, fill)
    sample = v[:: max(1, v.shape[0] // 256), :: max(1, v.shape[1] // 256)]  # ≤ ~65k values: cheap percentiles
    lo, hi = (float(x) for x in np.percentile(sample, [low_pct, high_pct]))
    if hi - lo < 1e-12:
        lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        return np.zeros(v.shape, np.uint8), lo, hi
    out = np.clip((v - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    return out, lo, hi


def make_preview(frame: Frame, max_px: int = 512, quality: int = 80) -> tuple[dict[str, Any], bytes]:
    """The frame as a downsampled, percentile-stretched 8-bit JPEG, and the header that describes it.

    The reduction factor is a whole number (``scale``), so preview pixel ``(r, c)`` covers frame pixels
    ``r*scale .. (r+1)*scale`` exactly and outlines computed on any grid line up with it.
    """
    if max_px < 16:
        raise ValueError(f"max_px must be at least 16, got {max_px}")
    h, w = frame.shape
    factor = max(1, math.ceil(max(h, w) / max_px))
    pixels = np.asarray(frame.pixels)
    if factor > 1:
        # Box-average by an integer factor (the last partial block is averaged over what exists).
        img = Image.fromarray(np.ascontiguousarray(pixels, np.float32), mode="F")
        small = img.reduce(factor)
        pixels = np.asarray(small, np.float32)
    gray, lo, hi = stretch_to_uint8(pixels)
    buf = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buf, format="JPEG", quality=int(quality), optimize=False)
    header = {
        "schema": PREVIEW_SCHEMA,
        "stream": frame.stream,
        "frame_id": frame.frame_id,
        "acquired_at": frame.acquired_at.isoformat(),
        "shape": [int(gray.shape[0]), int(gray.shape[1])],
        "frame_shape": [int(h), int(w)],
        "scale": float(factor),
        "nm_per_px": None if frame.nm_per_px is None else float(frame.nm_per_px) * factor,
        "stretch": [lo, hi],
    }
    return header, buf.getvalue()


def decode_preview(jpeg: bytes) -> np.ndarray:
    """JPEG bytes → uint8 gray image (rows, columns)."""
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("L"))
