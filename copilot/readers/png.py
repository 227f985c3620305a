"""PNG (and JPEG) → Decoded via Pillow. Always uncalibrated: a pHYs/dpi chunk is a print setting, not a scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from copilot.errors import RefusedFrame
from copilot.readers.base import Decoded, to_grey
from copilot.readers.limits import check_header_pixels

_BYTES_PER_SAMPLE = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


def read_png(path: Path) -> Decoded:
    """Decode a PNG/JPEG to a 2-D grey array (8-bit, 16-bit or float as stored); nm_per_px is always None."""
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own bound (2 × MAX_IMAGE_PIXELS), from the header
        raise RefusedFrame(str(path), f"{exc} (refused before decoding)") from None
    with opened as img:
        width, height = img.size  # from the header: checked before any pixel is decompressed
        check_header_pixels(str(path), (height, width), samples=len(img.getbands()),
                            itemsize=_BYTES_PER_SAMPLE.get(img.mode, 1))
        img.load()  # raises on truncated/corrupt data (Pillow never silently pads unless told to)
        fmt = (img.format or "png").lower()
        mode = img.mode
        meta: dict = {"format": fmt, "mode": mode}
        if "dpi" in img.info:
            meta["ignored_resolution"] = f"{img.info['dpi'][0]:g} dpi (print setting, not a specimen scale)"
        pixels, note = _grey_array(img)
    if note:
        meta["colour_conversion"] = note
    return Decoded(pixels=pixels, meta=meta, may_have_data_bar=True)


def _grey_array(img: Image.Image) -> tuple[np.ndarray, str | None]:
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.uint8) * np.uint8(255), None
    if mode in ("L", "F") or mode.startswith("I;16"):
        arr = np.asarray(img)
        return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="), copy=False)), None
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:  # 16-bit PNGs open as 32-bit "I"
            arr = arr.astype(np.uint16)
        return arr, None
    if mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        grey = (palette[:, 0] == palette[:, 1]) & (palette[:, 1] == palette[:, 2])
        index = np.asarray(img.convert("P") if mode == "PA" else img)
        if palette.size and grey.mean() >= 0.75 and np.all(grey[np.unique(index)]):
            return palette[:, 0][index], "palette-grey"
        return to_grey(np.asarray(img.convert("RGB")))[0], "palette-luminance"
    if mode in ("LA", "La"):
        return np.ascontiguousarray(np.asarray(img)[..., 0]), "grey-alpha"
    if mode not in ("RGB", "RGBA", "RGBX"):
        img = img.convert("RGB")
    return to_grey(np.asarray(img))
