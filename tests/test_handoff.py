"""Dataclass trees of arrays across processes without pickle: what goes in comes out, and nothing else does."""

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from copilot.analysis.measurements import Interval, Sufficiency
from copilot.frame import Frame
from copilot.handoff import Channel, HandoffError, Reader


def test_round_trip_keeps_types_values_and_shared_arrays():
    entropy = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    frame = Frame(np.arange(12, dtype=np.uint16).reshape(3, 4), 0.25, stream="s", frame_id="f", origin="o",
                  acquired_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), meta={"gain": 2.5, "n": 3})
    obj = {"frame": frame, "iv": Interval(1.0, 2.0), "suff": Sufficiency("d50", None, 0.02, False, "frame"),
           "t": (1, "a", None), "l": [np.float32(1.5), np.int64(7), True], "p": Path("/x/y"),
           "entropy": entropy, "again": entropy, "empty": np.zeros((0, 3), np.int32)}
    channel, reader = Channel(), Reader()
    try:
        back = reader.unpack(channel.pack(obj))
        assert back["frame"].acquired_at == frame.acquired_at and back["frame"].meta == frame.meta
        np.testing.assert_array_equal(back["frame"].pixels, frame.pixels)
        assert back["frame"].pixels.dtype == np.uint16
        assert back["iv"] == obj["iv"] and back["suff"] == obj["suff"] and back["t"] == (1, "a", None)
        assert type(back["l"][0]) is np.float32 and back["l"][1] == 7 and back["p"] == Path("/x/y")
        assert back["again"] is back["entropy"] and back["entropy"].dtype == np.float32
        assert back["empty"].shape == (0, 3)
        big = np.ones((2048, 1024), np.float64)  # does not fit: the channel grows, the reader follows
        np.testing.assert_array_equal(reader.unpack(channel.pack({"big": big}))["big"], big)
    finally:
        reader.close()
        channel.close()


def test_refuses_what_it_cannot_rebuild_safely():
    @dataclass
    class Foreign:
        x: int

    channel = Channel()
    try:
        with pytest.raises(HandoffError, match="not a copilot type"):
            channel.pack(Foreign(1))
        with pytest.raises(HandoffError, match="object arrays"):
            channel.pack(np.array([object()]))
        with pytest.raises(HandoffError, match="cannot be handed over"):
            channel.pack({1, 2})
    finally:
        channel.close()
    header = {"tree": {"$c": "os:system", "f": {}}, "block": None, "layout": []}
    with pytest.raises(HandoffError, match="not a copilot type"):
        Reader().unpack(header)


def test_outlines_cross_as_one_flat_array_and_paint_the_same():
    from copilot.analysis.geometry import PackedOutlines, RefinedParticles, paint

    rng = np.random.default_rng(1)
    tiles = [rng.random((r, c)) > 0.4 for r, c in ((5, 7), (1, 1), (12, 3), (4, 4))]
    origins = np.array([[0, 0], [10, 10], [2, 20], [14, 2]])
    refined = RefinedParticles(2, (10, 12), tiles, origins, [t.astype(np.float32) for t in tiles])
    channel, reader = Channel(), Reader()
    try:
        header = channel.pack({"refined": PackedOutlines.of(refined)})
        assert len(header["layout"]) == 3  # origins, shapes, masks: not one array per particle
        back = reader.unpack(header)["refined"].unpacked()
        assert [t.tolist() for t in back.tiles] == [t.tolist() for t in tiles] and back.fields == []
        np.testing.assert_array_equal(paint(back), paint(refined))
    finally:
        channel.close()
        reader.close()


def test_a_full_dev_shm_is_an_error_to_hand_over_not_a_crash(full_dev_shm, monkeypatch):
    """Writing into a block /dev/shm cannot back kills the writer (SIGBUS); the block's pages are reserved first,
    so a full /dev/shm (a container's 64 MiB) is a HandoffError, and no block is left behind."""
    import os

    shm_dir = Path("/dev/shm")
    before = set(os.listdir(shm_dir)) if shm_dir.is_dir() else set()
    channel = Channel()
    try:
        full_dev_shm()
        with pytest.raises(HandoffError, match="shm-size"):
            channel.pack({"a": np.zeros((256, 256), np.float32)})
        assert channel.shm is None
        if shm_dir.is_dir():
            assert set(os.listdir(shm_dir)) == before
        monkeypatch.undo()
        header = channel.pack({"a": np.ones((256, 256), np.float32)})  # room again: handed over as before
        assert channel.shm.size >= 256 * 256 * 4 and header["block"] == channel.shm.name
    finally:
        channel.close()
