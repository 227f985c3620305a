"""adapters/pusher.py (the instrument-side script) pushing to a real SocketSource, run as a subprocess."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from copilot.frame import Frame
from copilot.sources.push import push_frames
from copilot.sources.socket import SocketSource

PUSHER = Path(__file__).resolve().parents[2] / "adapters" / "pusher.py"


def test_pusher_is_python38_syntax():
    ast.parse(PUSHER.read_text(encoding="utf-8"), feature_version=(3, 8))


def test_pusher_script_sends_npy_and_tiff_to_socket_source(tmp_path, collector):
    a = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 7).astype(np.uint16)
    b = np.linspace(0, 1, 16 * 8, dtype=np.float32).reshape(16, 8)
    np.save(tmp_path / "img_a.npy", a)
    tifffile.imwrite(tmp_path / "img_b.tif", b)
    src = SocketSource("tcp://127.0.0.1:*")
    src.start(collector)
    try:
        proc = subprocess.run(
            [sys.executable, str(PUSHER), "--endpoint", src.endpoint, "--stream", "tem2", "--nm-per-px", "0.8",
             "--timeout", "10", str(tmp_path / "img_a.npy"), str(tmp_path / "img_b.tif")],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        arrivals = collector.wait_for(2)
    finally:
        src.stop()
    frames = {x.frame.frame_id: x.frame for x in arrivals}
    assert set(frames) == {"img_a", "img_b"}
    np.testing.assert_array_equal(frames["img_a"].pixels, a)
    np.testing.assert_array_equal(frames["img_b"].pixels, b)
    for f in frames.values():
        assert f.stream == "tem2" and f.nm_per_px == 0.8 and f.calibration_source == "socket"
        assert f.acquired_at.tzinfo is not None
        assert f.meta["source_file"].endswith(f.frame_id + (".npy" if f.frame_id == "img_a" else ".tif"))
    assert src.rejected == 0


def test_pusher_script_reports_missing_receiver(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.uint8))
    proc = subprocess.run(
        [sys.executable, str(PUSHER), "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.3", str(tmp_path / "x.npy")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "no receiver" in proc.stderr


def test_push_frames_reads_files_with_copilot_readers(tmp_path, collector):
    pytest.importorskip("copilot.readers")
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tifffile.imwrite(tmp_path / "f1.tif", pixels)
    src = SocketSource("tcp://127.0.0.1:*")
    src.start(collector)
    try:
        assert push_frames(src.endpoint, [tmp_path / "f1.tif"], stream="files", timeout_s=5) == 1
        [arrival] = collector.wait_for(1)
    finally:
        src.stop()
    np.testing.assert_array_equal(arrival.frame.pixels, pixels)
    assert arrival.frame.stream == "files"
    assert arrival.frame.meta["pushed_from"].endswith("f1.tif")


def test_push_frames_mixes_frames_in_order(collector):
    src = SocketSource("tcp://127.0.0.1:*")
    src.start(collector)
    try:
        frames = [Frame(np.full((3, 3), i, np.int32), None, "s", f"{i}", "mem") for i in range(5)]
        assert push_frames(src.endpoint, frames, interval_s=0.01, timeout_s=5) == 5
        arrivals = collector.wait_for(5)
    finally:
        src.stop()
    assert [x.frame.frame_id for x in arrivals] == ["0", "1", "2", "3", "4"]
    assert [int(x.frame.pixels[0, 0]) for x in arrivals] == [0, 1, 2, 3, 4]
