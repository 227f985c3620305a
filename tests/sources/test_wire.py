"""Wire format round trips (no sockets)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from copilot.errors import InvalidMessage
from copilot.sources.wire import DTYPES, decode_message, encode_pixels

WIRE_DTYPES = [np.dtype(s) for s in DTYPES.values()]


@settings(max_examples=60, deadline=None)
@given(
    pixels=st.sampled_from(WIRE_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9), elements={"allow_nan": False})
        if dt.kind == "f"
        else hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9))
    ),
    nm=st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e6)),
)
def test_encode_decode_round_trip(pixels, nm):
    parts = encode_pixels(pixels, stream="s1", frame_id="f", nm_per_px=nm)
    header, out = decode_message([parts[0], bytes(parts[1])], max_bytes=10**6)
    np.testing.assert_array_equal(out, pixels)
    assert out.dtype == pixels.dtype.newbyteorder("<") or out.dtype == pixels.dtype
    assert header.nm_per_px == nm and header.shape == pixels.shape


def test_naive_time_is_taken_as_utc():
    raw = json.dumps({"shape": [1, 1], "dtype": "uint8", "acquired_at": "2026-05-09T12:00:00"}).encode()
    header, _ = decode_message([raw, b"\x00"], max_bytes=10)
    assert header.acquired_at == datetime(2026, 5, 9, 12, tzinfo=timezone.utc)


def test_header_size_limit():
    raw = json.dumps({"shape": [1, 1], "dtype": "uint8", "meta": {"x": "y" * 70000}}).encode()
    with pytest.raises(InvalidMessage, match="header is"):
        decode_message([raw, b"\x00"], max_bytes=10)


@pytest.mark.parametrize("meta, field", [({"signal": 5}, "meta.signal"), ({"signal": ["HAADF"]}, "meta.signal"),
                                         ({"data_bar_rows": "40"}, "meta.data_bar_rows"),
                                         ({"data_bar_rows": -1}, "meta.data_bar_rows"),
                                         ({"data_bar_rows": 1.5}, "meta.data_bar_rows")])
def test_meta_keys_the_daemon_reads_are_typed(meta, field):
    """A sender's meta may hold anything, but the keys the daemon reads itself must have their type: the message is
    refused with the key named, instead of the frame failing later inside the document."""
    raw = json.dumps({"shape": [1, 1], "dtype": "uint8", "meta": meta}).encode()
    with pytest.raises(InvalidMessage, match=field.replace(".", r"\.")):
        decode_message([raw, b"\x00"], max_bytes=10)
    ok = json.dumps({"shape": [1, 1], "dtype": "uint8",
                     "meta": {"signal": "HAADF", "data_bar_rows": 0, "detector": ["free", 1]}}).encode()
    assert decode_message([ok, b"\x00"], max_bytes=10)[0].meta["signal"] == "HAADF"
