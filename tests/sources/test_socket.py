"""SocketSource with real ZeroMQ sockets on 127.0.0.1 (wildcard port: the OS picks a free one)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import numpy as np
import pytest
import zmq

from copilot.frame import Frame
from copilot.sources.push import push_frames
from copilot.sources.socket import SocketSource
from copilot.sources.wire import encode_pixels


@pytest.fixture
def source(collector) -> Iterator[Callable[..., SocketSource]]:
    started: list[SocketSource] = []

    def make(**kw) -> SocketSource:
        src = SocketSource("tcp://127.0.0.1:*", **kw)
        src.start(collector)
        started.append(src)
        return src

    yield make
    for src in started:
        src.stop()


@pytest.fixture
def sender() -> Iterator[Callable[[str], zmq.Socket]]:
    ctx = zmq.Context()
    socks: list[zmq.Socket] = []

    def connect(endpoint: str) -> zmq.Socket:
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 2000)
        s.setsockopt(zmq.SNDTIMEO, 5000)
        s.connect(endpoint)
        socks.append(s)
        return s

    yield connect
    for s in socks:
        s.close()
    ctx.term()


def header(**kw) -> bytes:
    h = {"stream": "t", "frame_id": "1", "shape": [4, 5], "dtype": "uint16", "nm_per_px": 0.5}
    h.update(kw)
    return json.dumps({k: v for k, v in h.items() if v is not ...}).encode()


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.01)


def test_binds_to_loopback_by_default():
    src = SocketSource()
    assert src.endpoint == "tcp://127.0.0.1:5557" and src.bind


def test_good_frame_arrives_as_frame(source, collector):
    src = source()
    assert src.endpoint.startswith("tcp://127.0.0.1:") and not src.endpoint.endswith(":*")
    pixels = np.arange(12 * 7, dtype=np.uint16).reshape(12, 7) * 3
    when = datetime(2026, 5, 9, 12, 0, 0, 500000, tzinfo=timezone.utc)
    frame = Frame(pixels, nm_per_px=0.25, stream="stem1", frame_id="000042", origin="mem", acquired_at=when,
                  meta={"detector": "HAADF", "dwell_us": np.float32(2.0)})
    assert push_frames(src.endpoint, [frame], timeout_s=5) == 1
    [arrival] = collector.wait_for(1)
    got = arrival.frame
    assert arrival.path is None and got is not None
    np.testing.assert_array_equal(got.pixels, pixels)
    assert got.pixels.dtype == np.uint16
    assert got.nm_per_px == 0.25 and got.calibration_source == "socket"
    assert (got.stream, got.frame_id) == ("stem1", "000042")
    assert got.acquired_at == when
    assert got.meta == {"detector": "HAADF", "dwell_us": 2.0, "pushed_from": "mem"}
    assert arrival.origin == got.origin == f"{src.endpoint}/stem1/000042"
    assert (src.received, src.accepted, src.rejected) == (1, 1, 0)


def test_uncalibrated_frame_and_receiver_defaults(source, collector, sender):
    src = source(stream_default="scope7")
    s = sender(src.endpoint)
    s.send_multipart([header(stream=..., frame_id=..., nm_per_px=None, dtype="float32"), np.ones((4, 5), "<f4")])
    [arrival] = collector.wait_for(1)
    f = arrival.frame
    assert f.nm_per_px is None and f.calibration_source == "none" and not f.calibrated
    assert f.stream == "scope7" and f.frame_id  # filled in by the receiver
    assert f.pixels.dtype == np.float32 and f.pixels.shape == (4, 5)


def test_wrong_buffer_size_is_rejected_and_the_next_frame_processed(source, collector, sender):
    src = source()
    s = sender(src.endpoint)
    s.send_multipart([header(frame_id="bad"), b"\x00" * 39])  # 4x5 uint16 needs 40 bytes
    s.send_multipart([header(frame_id="good"), np.full((4, 5), 7, "<u2")])
    [arrival] = collector.wait_for(1)
    assert arrival.frame.frame_id == "good"
    assert (arrival.frame.pixels == 7).all()
    assert src.rejected == 1 and src.accepted == 1
    assert "buffer size 39 bytes" in src.last_reject_reason and "40 bytes" in src.last_reject_reason


def test_unknown_dtype_is_rejected(source, collector, sender):
    src = source()
    s = sender(src.endpoint)
    s.send_multipart([header(dtype="complex64"), b"\x00" * 160])
    wait_until(lambda: src.rejected == 1)
    assert "dtype" in src.last_reject_reason
    assert collector.arrivals == []


def test_oversized_messages_are_rejected(source, collector, sender):
    src = source(max_bytes=1000)
    s = sender(src.endpoint)
    # Declared 100x100 uint8 = 10000 bytes > max_bytes: counted, with the reason.
    s.send_multipart([header(shape=[100, 100], dtype="uint8"), b"\x00" * 10000])
    wait_until(lambda: src.rejected == 1)
    assert "exceeds max_bytes 1000" in src.last_reject_reason
    # A part beyond ZMQ_MAXMSGSIZE (here 64 KiB, the header allowance) never reaches Python at all.
    s.send_multipart([header(shape=[300, 300], dtype="uint8"), b"\x00" * 90000])
    # libzmq dropped that connection; a fresh sender is served normally.
    s2 = sender(src.endpoint)
    s2.send_multipart([header(shape=[10, 10], dtype="uint8", frame_id="ok"), b"\x01" * 100])
    [arrival] = collector.wait_for(1)
    assert arrival.frame.frame_id == "ok"
    assert src.accepted == 1 and src.rejected == 1


BAD_MESSAGES = [
    ("one part", [header()], "expected 2 message parts"),
    ("three parts", [header(), b"\x00" * 40, b"x"], "expected 2 message parts"),
    ("not json", [b"{shape: 4", b"\x00" * 40], "not UTF-8 JSON"),
    ("json list", [b"[1, 2]", b"\x00" * 40], "JSON object"),
    ("3-D shape", [header(shape=[2, 2, 5]), b"\x00" * 40], "2-D"),
    ("zero height", [header(shape=[0, 5]), b""], "positive"),
    ("negative nm/px", [header(nm_per_px=-1.0), b"\x00" * 40], "nm_per_px"),
    ("infinite nm/px", [header(nm_per_px=1e999), b"\x00" * 40], "nm_per_px"),
    ("misspelt key", [header(nm_per_pixel=0.5), b"\x00" * 40], "nm_per_pixel"),
    ("bad stream", [header(stream="a b/c"), b"\x00" * 40], "stream"),
    ("bad time", [header(acquired_at="yesterday"), b"\x00" * 40], "acquired_at"),
    ("big-endian name", [header(dtype=">u2"), b"\x00" * 40], "dtype"),
]


def test_every_kind_of_bad_message_is_counted_never_fatal(source, collector, sender):
    src = source()
    s = sender(src.endpoint)
    reasons = []
    for i, (_, parts, expect) in enumerate(BAD_MESSAGES, start=1):
        s.send_multipart(parts)
        wait_until(lambda i=i: src.rejected == i)
        reasons.append((expect, src.last_reject_reason))
    for expect, reason in reasons:
        assert expect in reason, (expect, reason)
    s.send_multipart([header(frame_id=17), np.zeros((4, 5), "<u2")])  # integer frame_id is accepted
    [arrival] = collector.wait_for(1)
    assert arrival.frame.frame_id == "17"
    assert src.received == len(BAD_MESSAGES) + 1


def test_stop_is_prompt_and_releases_the_port(source, collector):
    src = source()
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 1.0
    again = SocketSource(src.endpoint)  # same port can be bound again
    again.start(collector)
    again.stop()


def test_push_frames_without_receiver_times_out(tmp_path):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)  # bind then close, to get a port nobody listens on
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close()
    ctx.term()
    frame = Frame(np.zeros((2, 2), np.uint8), nm_per_px=None, stream="s", frame_id="1", origin="mem")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        push_frames(f"tcp://127.0.0.1:{port}", [frame], timeout_s=0.3)
    assert time.monotonic() - t0 < 3.0


def test_encode_pixels_converts_types_losslessly():
    parts = encode_pixels(np.array([[-1, 2]], dtype=np.int8))
    assert json.loads(parts[0])["dtype"] == "int16"
    parts = encode_pixels(np.array([[1, 2]], dtype=">u2"), stream="s")
    h = json.loads(parts[0])
    assert h["dtype"] == "uint16" and bytes(parts[1]) == b"\x01\x00\x02\x00"
    with pytest.raises(ValueError):
        encode_pixels(np.zeros((2, 2), np.complex64))
