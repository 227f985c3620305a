"""File → Frame with calibration. One entry point, one registry, one error type.

>>> from copilot.readers import read_frame                       # doctest: +SKIP
>>> frame = read_frame(Path("Sample.tif"), stream="sem-1")       # doctest: +SKIP
>>> frame.nm_per_px, frame.calibration_source, frame.meta["data_bar_rows"]   # doctest: +SKIP
(0.543, 'zeiss', 77)

Every failure (missing, empty, truncated, corrupt, unknown, not 2-D) raises ``UnreadableFrame(origin, reason)``;
an input outside the bounds of :class:`InputLimits` (pixel count declared in the header, size, non-finite values)
raises its subclass ``RefusedFrame`` before the expensive work. File names may hold any bytes: ``origin`` and
``frame_id`` are their UTF-8-safe text (:func:`path_text`).
"""

from __future__ import annotations

import os
import stat as stat_mode
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from copilot.errors import RefusedFrame, UnreadableFrame
from copilot.frame import Frame
from copilot.readers import registry
from copilot.readers.base import Decoded, jsonable, path_text
from copilot.readers.databar import detect_data_bar
from copilot.readers.limits import InputLimits, checked_pixels, limits_in_force
from copilot.readers.registry import FORMATS, Format, register
from copilot.readers.sidecar import merge_sidecar

__all__ = ["read_frame", "decode", "FORMATS", "Format", "register", "detect_data_bar", "UnreadableFrame",
           "RefusedFrame", "InputLimits", "path_text"]


#: the largest share of the height a metadata-declared data bar may take before it is distrusted
_MAX_BAR_FRACTION = 0.5


def read_frame(path: Path, stream: str = "default", frame_id: str | None = None,
               limits: InputLimits | None = None) -> Frame:
    """Read one image file as a Frame: 2-D grey pixels without data bar, nm/px (or None) and provenance.

    ``frame_id`` defaults to the file stem; ``origin`` is ``str(path)``; ``acquired_at`` comes from the file's
    metadata when it has a time stamp (instrument wall-clock is taken in the host's zone), else from its mtime.
    A JSON sidecar beside the file (``copilot.readers.sidecar``) adds the keys the file's metadata lacks.
    """
    path = Path(path)
    origin = path_text(path)
    decoded = decode(path, limits)
    pixels = decoded.pixels
    meta = dict(decoded.meta)
    merge_sidecar(path, meta)
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
            frame_id=frame_id if frame_id is not None else path_text(path.stem),
            origin=origin,
            acquired_at=acquired_at,
            calibration_source=decoded.calibration_source if valid else "none",
            meta=jsonable(meta),
        )
    except ValueError as exc:  # Frame's own checks
        raise UnreadableFrame(origin, str(exc)) from exc


def decode(path: Path, limits: InputLimits | None = None) -> Decoded:
    """Pick the format and decode within ``limits``, turning every failure into UnreadableFrame with a reason."""
    path = Path(path)
    origin = path_text(path)
    fmt: Format | None = None
    try:
        st, head = _head_of_regular_file(path, origin)
        fmt = registry.choose(path, head)
        with limits_in_force(limits):
            decoded = fmt.read(path)
    except UnreadableFrame:
        raise
    except MemoryError as exc:
        raise RefusedFrame(origin, f"too large to decode in memory ({exc})") from exc
    except Exception as exc:  # every decoder failure becomes one readable error type (RecursionError included)
        name = fmt.name.upper() if fmt is not None else "file"
        raise UnreadableFrame(origin, f"corrupt, truncated or unsupported {name} ({type(exc).__name__}: "
                                     f"{_short(exc)})") from exc
    decoded.pixels, notes = checked_pixels(decoded.pixels, origin, limits)
    decoded.meta.update(notes)
    decoded.mtime = st.st_mtime
    return decoded


def _head_of_regular_file(path: Path, origin: str) -> tuple[os.stat_result, bytes]:
    """The file's stat and first bytes, refusing anything but a non-empty regular file without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise UnreadableFrame(origin, "file does not exist") from None
    except OSError as exc:
        raise UnreadableFrame(origin, f"cannot open ({exc.strerror or exc}): still open by the writer, or no "
                                      "permission?") from None
    try:
        st = os.fstat(fd)
        if not stat_mode.S_ISREG(st.st_mode):
            raise UnreadableFrame(origin, "not a regular file (FIFO, device, socket or folder)")
        if st.st_size == 0:
            raise UnreadableFrame(origin, "empty file (0 bytes): still being written?")
        return st, os.read(fd, registry.HEAD_BYTES)
    finally:
        os.close(fd)


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
