"""The socket wire format: one ZeroMQ multipart message per frame, ``[JSON header, raw pixel buffer]``.

Shared by the receiver (:mod:`copilot.sources.socket`) and the pusher (:mod:`copilot.sources.push`); the standalone
``adapters/pusher.py`` re-implements the encoding without importing copilot, and ``adapters/WIRE.md`` is the prose
version of this module. Keep the three in step.

Header (UTF-8 JSON object, at most ``MAX_HEADER_BYTES``; unknown keys are rejected so that a typo such as
``nm_per_pixel`` cannot silently turn into an uncalibrated frame)::

    {"v": 1, "stream": "stem1", "frame_id": "000042", "shape": [1024, 1024], "dtype": "uint16",
     "nm_per_px": 0.25, "acquired_at": "2026-05-09T12:00:00.123+00:00", "meta": {"detector": "HAADF"}}

Buffer: ``shape[0] * shape[1] * itemsize`` bytes, C order (row-major), little-endian.

>>> import numpy as np
>>> parts = encode_pixels(np.arange(6, dtype=np.uint16).reshape(2, 3), stream="s", frame_id="1", nm_per_px=0.5)
>>> header, pixels = decode_message(parts, max_bytes=1024)
>>> header.shape, header.dtype, pixels.tolist()
((2, 3), 'uint16', [[0, 1, 2], [3, 4, 5]])
>>> decode_message([parts[0], parts[1][:-1]], max_bytes=1024)
Traceback (most recent call last):
...
copilot.errors.InvalidMessage: buffer size 11 bytes does not match shape 2x3 uint16 (12 bytes)
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from pathlib import PurePath
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from copilot.errors import InvalidMessage
from copilot.frame import Frame
from copilot.readers.base import json_nesting_depth

WIRE_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
#: deepest JSON nesting a header may have (a real one has 2); checked before parsing
MAX_HEADER_DEPTH = 16

#: wire dtype name -> numpy dtype string (always little-endian).
DTYPES: dict[str, str] = {
    "uint8": "|u1",
    "uint16": "<u2",
    "int16": "<i2",
    "uint32": "<u4",
    "int32": "<i4",
    "float32": "<f4",
    "float64": "<f8",
}
DtypeName = Literal["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]

_STREAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_FRAME_ID_PATTERN = r"^[^/\\\x00-\x1f]{1,200}$"


class FrameHeader(BaseModel):
    """The JSON header of one frame message. ``stream``/``frame_id`` may be left out (the receiver fills them in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = WIRE_VERSION
    stream: str | None = Field(default=None, pattern=_STREAM_PATTERN)
    frame_id: str | None = Field(default=None, pattern=_FRAME_ID_PATTERN)
    shape: tuple[int, int]
    dtype: DtypeName
    nm_per_px: float | None = None
    acquired_at: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("frame_id", mode="before")
    @classmethod
    def _int_frame_id(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("frame_id must be a string or an integer")
        return str(v) if isinstance(v, int) else v

    @field_validator("shape", mode="before")
    @classmethod
    def _shape_2d(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"shape must be [height, width] (2-D), got {v!r}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in v):
            raise ValueError(f"shape must hold two positive integers, got {v!r}")
        return v

    @field_validator("nm_per_px", mode="before")
    @classmethod
    def _calibration(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"nm_per_px must be a number or null, got {v!r}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"nm_per_px must be positive and finite, got {v!r}")
        return float(v)

    @field_validator("meta")
    @classmethod
    def _own_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        """The keys the daemon reads itself carry their types (free keys pass as they are)."""
        rows = v.get("data_bar_rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise ValueError(f"meta.data_bar_rows must be a whole number ≥ 0 (rows of burned-in bar removed), "
                             f"got {rows!r}")
        if v.get("signal") is not None and not isinstance(v["signal"], str):
            raise ValueError(f"meta.signal must be text (the signal's title), got {v['signal']!r}")
        return v

    @field_validator("acquired_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        # A naive timestamp is taken as UTC (documented in adapters/WIRE.md).
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=timezone.utc)
        return v

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.itemsize


def _pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "header"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid header: " + "; ".join(parts)


def _buffer_len(part: Any) -> int:
    if isinstance(part, (bytes, bytearray)):
        return len(part)
    return memoryview(part).nbytes


def decode_header(raw: bytes | bytearray | memoryview) -> FrameHeader:
    """Parse and validate the JSON header; raises :class:`InvalidMessage` with a readable reason."""
    raw = bytes(raw)
    if len(raw) > MAX_HEADER_BYTES:
        raise InvalidMessage(f"header is {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    depth = json_nesting_depth(raw)
    if depth > MAX_HEADER_DEPTH:
        raise InvalidMessage(f"header nests {depth} levels deep, more than {MAX_HEADER_DEPTH}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"header is not UTF-8 JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"header must be a JSON object, got {type(obj).__name__}")
    try:
        return FrameHeader.model_validate(obj)
    except ValidationError as exc:
        raise InvalidMessage(_pydantic_reason(exc)) from None


def decode_message(parts: Sequence[Any], *, max_bytes: int) -> tuple[FrameHeader, np.ndarray]:
    """Validate a received multipart message; return the header and a (read-only, zero-copy) 2-D pixel array.

    ``parts`` holds bytes or buffer-protocol objects (``zmq.Frame.buffer``). Raises :class:`InvalidMessage`.
    """
    if len(parts) != 2:
        raise InvalidMessage(f"expected 2 message parts [header, pixels], got {len(parts)}")
    header = decode_header(parts[0])
    expected = header.nbytes
    h, w = header.shape
    if expected > max_bytes:
        raise InvalidMessage(f"frame of {expected} bytes ({h}x{w} {header.dtype}) exceeds max_bytes {max_bytes}")
    got = _buffer_len(parts[1])
    if got != expected:
        raise InvalidMessage(
            f"buffer size {got} bytes does not match shape {h}x{w} {header.dtype} ({expected} bytes)"
        )
    pixels = np.frombuffer(parts[1], dtype=np.dtype(DTYPES[header.dtype])).reshape(h, w)
    return header, pixels


# --------------------------------------------------------------------------------------------------- encoding side


#: (numpy kind, itemsize) of a source array -> wire dtype it is sent as.
_WIRE_TARGET: dict[tuple[str, int], np.dtype] = {
    ("b", 1): np.dtype("|u1"),
    ("u", 1): np.dtype("|u1"),
    ("i", 1): np.dtype("<i2"),
    ("u", 2): np.dtype("<u2"),
    ("i", 2): np.dtype("<i2"),
    ("u", 4): np.dtype("<u4"),
    ("i", 4): np.dtype("<i4"),
    ("f", 2): np.dtype("<f4"),
    ("f", 4): np.dtype("<f4"),
    ("f", 8): np.dtype("<f8"),
    ("u", 8): np.dtype("<f8"),
    ("i", 8): np.dtype("<f8"),
}


def to_wire_array(pixels: np.ndarray) -> np.ndarray:
    """A C-contiguous little-endian 2-D array of a wire dtype (lossless where the source dtype allows).

    bool/int8 widen to uint8/int16, float16 to float32; 64-bit integers become float64 (exact below 2**53).
    """
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ValueError(f"a frame must be 2-D, got shape {a.shape}")
    target = _WIRE_TARGET.get((a.dtype.kind, a.dtype.itemsize))
    if target is None:
        raise ValueError(f"dtype {a.dtype} cannot be sent; supported: {', '.join(DTYPES)}")
    return np.ascontiguousarray(a, dtype=target)


def _dtype_name(a: np.ndarray) -> str:
    for name, s in DTYPES.items():
        if np.dtype(s) == a.dtype:
            return name
    raise ValueError(f"not a wire dtype: {a.dtype}")  # pragma: no cover - to_wire_array guarantees it


def _jsonable(v: Any, depth: int = 0) -> Any:
    """Best-effort conversion of reader metadata to JSON (numpy scalars, dates, paths; the rest as ``str``)."""
    if depth > 20:
        return str(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.generic):
        return _jsonable(v.item(), depth + 1)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist(), depth + 1) if v.size <= 64 else f"<array {v.shape} {v.dtype}>"
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, PurePath):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {str(k): _jsonable(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x, depth + 1) for x in v]
    return str(v)


def encode_pixels(
    pixels: np.ndarray,
    *,
    stream: str | None = None,
    frame_id: str | int | None = None,
    nm_per_px: float | None = None,
    acquired_at: datetime | None = None,
    meta: dict[str, Any] | None = None,
) -> list[Any]:
    """Build ``[header bytes, pixel buffer]``; the header is validated with :class:`FrameHeader` before sending."""
    a = to_wire_array(pixels)
    header: dict[str, Any] = {"v": WIRE_VERSION, "shape": [int(a.shape[0]), int(a.shape[1])], "dtype": _dtype_name(a)}
    if stream is not None:
        header["stream"] = stream
    if frame_id is not None:
        header["frame_id"] = str(frame_id)
    header["nm_per_px"] = None if nm_per_px is None else float(nm_per_px)
    if acquired_at is not None:
        if acquired_at.tzinfo is None:
            acquired_at = acquired_at.astimezone()  # local wall-clock time -> aware
        header["acquired_at"] = acquired_at.isoformat()
    if meta:
        header["meta"] = _jsonable(meta)
    raw = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    decode_header(raw)  # fail on the sending side, with the same reason the receiver would give
    return [raw, memoryview(a).cast("B")]


def encode_frame(frame: Frame, *, stream: str | None = None, meta: dict[str, Any] | None = None) -> list[Any]:
    """Encode a :class:`Frame` (``stream`` overrides ``frame.stream``; ``meta`` is merged over ``frame.meta``)."""
    return encode_pixels(
        frame.pixels,
        stream=stream or frame.stream,
        frame_id=frame.frame_id,
        nm_per_px=frame.nm_per_px,
        acquired_at=frame.acquired_at,
        meta={**frame.meta, **(meta or {})},
    )
