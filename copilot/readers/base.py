"""What a format reader hands back before the shared steps (data bar, provenance) make it a Frame."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np


@dataclass
class Decoded:
    """One decoded 2-D image plus what the file said about it.

    ``data_bar_rows`` is what the *vendor metadata* says the burned-in bar measures (None = the metadata does not
    say). ``may_have_data_bar`` asks read_frame to look for a bar in the pixels when the metadata is silent: true for
    SEM exports (TIFF, PNG), false for raw detector data (DM, EMD, SER, BCF, MRC).
    """

    pixels: np.ndarray
    nm_per_px: float | None = None
    calibration_source: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)
    acquired_at: datetime | None = None
    acquired_at_source: str | None = None
    data_bar_rows: int | None = None
    data_bar_source: str | None = None
    may_have_data_bar: bool = False
    mtime: float | None = None  # set by readers.decode from the file it read


def positive_or_none(value: Any) -> float | None:
    """``float(value)`` if it is a positive finite number, else None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def path_text(path: str | bytes | os.PathLike) -> str:
    """``str(path)`` that always encodes as UTF-8 (store keys, documents, logs): bytes of a file name that are not
    UTF-8 become ``\\xNN``. Open files with the original path; use this text only to name them.

    >>> path_text(os.fsdecode(b"/data/frame\\xff.tif"))
    '/data/frame\\\\xff.tif'
    """
    raw = os.fspath(path)
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
            return raw
        except UnicodeEncodeError:
            raw = os.fsencode(raw)
    return raw.decode("utf-8", "backslashreplace")


# --- colour → grey -----------------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what Pillow's convert("L") uses


def to_grey(rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """Reduce an (H, W, C) RGB/RGBA/grey+alpha image to 2-D; returns (grey, how).

    Grey content (all colour channels equal) keeps its exact values ("grey-rgb"); colour content becomes BT.601 luma
    in the original dtype ("luminance"). Alpha is dropped.

    >>> g, how = to_grey(np.dstack([np.full((2, 2), 7, np.uint8)] * 3)); g.tolist(), how
    ([[7, 7], [7, 7]], 'grey-rgb')
    """
    if rgb.ndim != 3:
        raise ValueError(f"expected (H, W, C), got shape {rgb.shape}")
    channels = rgb.shape[2]
    colour = rgb[..., :3] if channels >= 3 else rgb[..., :1]
    first = colour[..., 0]
    if all(np.array_equal(first, colour[..., c]) for c in range(1, colour.shape[2])):
        return np.ascontiguousarray(first), "grey-rgb" if channels >= 3 else "grey-alpha"
    out = np.empty(first.shape, rgb.dtype)
    info = np.iinfo(rgb.dtype) if np.issubdtype(rgb.dtype, np.integer) else None
    for r0 in range(0, out.shape[0], 256):  # row blocks: no (H, W, 3) float64 copy of a large frame
        luma = colour[r0:r0 + 256].astype(np.float64) @ _LUMA
        out[r0:r0 + 256] = np.clip(np.rint(luma), info.min, info.max) if info is not None else luma
    return out, "luminance"


# --- time stamps -------------------------------------------------------------------------------------------------


def local_to_utc(naive: datetime, tz: str | None = None) -> datetime:
    """Attach ``tz`` (IANA name, 'UTC' or '+HH:MM') or, when absent, the host's local zone; return UTC.

    Instruments write wall-clock time without a zone; the daemon runs beside the microscope, so the host's zone is
    the best guess for files that say nothing.
    """
    if naive.tzinfo is None:
        zone = _parse_zone(tz)
        naive = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
    return naive.astimezone(timezone.utc)


def _parse_zone(tz: str | None):
    if not tz:
        return None
    tz = str(tz).strip()
    if tz.upper() in ("UTC", "GMT", "Z"):
        return timezone.utc
    if tz[0] in "+-" and len(tz) >= 3:
        try:
            sign = 1 if tz[0] == "+" else -1
            hh, _, mm = tz[1:].partition(":")
            return timezone(sign * timedelta(hours=int(hh[:2]), minutes=int(mm or hh[2:] or 0)))
        except ValueError:
            return None
    try:
        return ZoneInfo(tz)
    except Exception:  # unknown zone names are common in vendor files; fall back to local time
        return None


def parse_datetime(text: str, formats: tuple[str, ...], tz: str | None = None) -> datetime | None:
    """First of ``formats`` that parses ``text`` (whitespace-normalised), as UTC; None if none does."""
    text = " ".join(str(text).split())
    for fmt in formats:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not 1990 <= naive.year <= 2200:
            return None
        return local_to_utc(naive, tz)
    return None


# --- metadata hygiene ---------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """JSON-serialisable copy of ``value``: numpy scalars → Python, tuples → lists, NaN → None, bytes → str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist()) if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def json_nesting_depth(raw: bytes) -> int:
    """Deepest bracket nesting outside JSON strings (an upper bound for invalid JSON), without parsing: checked
    before ``json.loads`` of text from outside (socket headers, sidecars), whose recursion a deep nesting exhausts.

    >>> json_nesting_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest
