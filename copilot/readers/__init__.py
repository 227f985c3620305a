"""File → Frame with calibration. One entry point, one registry, one error type.

>>> from copilot.readers import read_frame                       # doctest: +SKIP
>>> frame = read_frame(Path("Sample.tif"), stream="sem-1")       # doctest: +SKIP
>>> frame.nm_per_px, frame.calibration_source, frame.meta["data_bar_rows"]   # doctest: +SKIP
(0.543, 'zeiss', 77)

Every failure (missing, empty, truncated, corrupt, unknown, not 2-D) raises ``UnreadableFrame(origin, reason)``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from copilot.errors import UnreadableFrame
from copilot.frame import Frame
from copilot.readers import registry
from copilot.readers.base import Decoded, jsonable
from copilot.readers.databar import detect_data_bar
from copilot.readers.registry import FORMATS, Format, register

__all__ = ["read_frame", "decode", "FORMATS", "Format", "register", "detect_data_bar", "UnreadableFrame"]


#: the largest share of the height a metadata-declared data bar may take before it is distrusted
_MAX_BAR_FRACTION = 0.5


def read_frame(path: Path, stream: str = "default", frame_id: str | None = None) -> Frame:
    """Read one image file as a Frame: 2-D grey pixels without data bar, nm/px (or None) and provenance.

    ``frame_id`` defaults to the file stem; ``origin`` is ``str(path)``; ``acquired_at`` comes from the file's
    metadata when it has a time stamp (instrument wall-clock is taken in the host's zone), else from its mtime.
    """
    path = Path(path)
    origin = str(path)
    decoded = decode(path)
    pixels = decoded.pixels
    meta = dict(decoded.meta)
    meta["source_shape"] = list(pixels.shape)

    rows, source = _data_bar(decoded)
    if rows:
        pixels = np.ascontiguousarray(pixels[: pixels.shape[0] - rows])
    meta["data_bar_rows"] = rows
    meta["data_bar_source"] = source

    acquired_at = decoded.acquired_at
    meta["acquired_at_source"] = decoded.acquired_at_source if acquired_at else "mtime"
    if acquired_at is None:
        acquired_at = datetime.fromtimestamp(decoded.mtime, tz=timezone.utc) if decoded.mtime else _now()

    nm = decoded.nm_per_px
    valid = nm is not None and np.isfinite(nm) and nm > 0
    try:
        return Frame(
            pixels=pixels,
            nm_per_px=float(nm) if valid else None,
            stream=stream,
            frame_id=frame_id if frame_id is not None else path.stem,
            origin=origin,
            acquired_at=acquired_at,
            calibration_source=decoded.calibration_source if valid else "none",
            meta=jsonable(meta),
        )
    except ValueError as exc:  # Frame's own checks
        raise UnreadableFrame(origin, str(exc)) from exc


def decode(path: Path) -> Decoded:
    """Pick the format and decode, turning every failure into UnreadableFrame with a readable reason."""
    path = Path(path)
    origin = str(path)
    fmt: Format | None = None
    try:
        if not path.exists():
            raise UnreadableFrame(origin, "file does not exist")
        if not path.is_file():
            raise UnreadableFrame(origin, "not a regular file")
        stat = path.stat()
        if stat.st_size == 0:
            raise UnreadableFrame(origin, "empty file (0 bytes): still being written?")
        with path.open("rb") as fh:
            head = fh.read(registry.HEAD_BYTES)
        fmt = registry.choose(path, head)
        decoded = fmt.read(path)
    except UnreadableFrame:
        raise
    except MemoryError as exc:
        raise UnreadableFrame(origin, f"too large to decode in memory ({exc})") from exc
    except Exception as exc:  # every decoder failure becomes one readable error type
        name = fmt.name.upper() if fmt is not None else "file"
        raise UnreadableFrame(origin, f"corrupt, truncated or unsupported {name} ({type(exc).__name__}: "
                                     f"{_short(exc)})") from exc
    _check_pixels(origin, decoded)
    decoded.mtime = stat.st_mtime
    return decoded


def _check_pixels(origin: str, decoded: Decoded) -> None:
    pixels = decoded.pixels
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2:
        raise UnreadableFrame(origin, f"not a 2-D image (shape {getattr(pixels, 'shape', None)})")
    if min(pixels.shape) < 2:
        raise UnreadableFrame(origin, f"image too small to analyse (shape {pixels.shape})")
    if pixels.dtype.kind not in "uif":
        raise UnreadableFrame(origin, f"pixel type {pixels.dtype} is not a grey level")


def _data_bar(decoded: Decoded) -> tuple[int, str]:
    height = decoded.pixels.shape[0]
    declared = decoded.data_bar_rows
    if declared is not None and 0 <= declared <= height * _MAX_BAR_FRACTION:
        return int(declared), decoded.data_bar_source or "metadata"
    if decoded.may_have_data_bar:
        rows = detect_data_bar(decoded.pixels)
        return rows, "detected" if rows else "none"
    return 0, "none"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    return text if len(text) <= limit else text[: limit - 1] + "…"
