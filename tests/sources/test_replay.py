"""ReplaySource: order, rate, loop, stop."""

from __future__ import annotations

import time

import pytest

from copilot.sources.replay import ReplaySource


@pytest.fixture
def folder(tmp_path):
    for name in ("f10.tif", "f9.tif", "f1.dm4", ".hidden.tif", "readme.txt", "f2.tif.part"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_in_natural_name_order_at_a_rate(folder, collector):
    src = ReplaySource(folder, interval_s=0.05)
    src.start(collector)
    assert src.wait(5)
    src.stop()
    assert collector.names == ["f1.dm4", "f9.tif", "f10.tif"]
    times = [a.arrived_at for a in collector.arrivals]
    assert times == sorted(times)
    assert times[-1] - times[0] >= 2 * 0.05 - 0.01  # paced on a schedule: a late frame may catch up, the rate holds
    assert all(a.origin == str(a.path) for a in collector.arrivals)


def test_explicit_files_keep_their_order_and_loop_until_stop(folder, collector):
    src = ReplaySource([folder / "f10.tif", folder / "f9.tif"], interval_s=0.01, loop=True)
    src.start(collector)
    collector.wait_for(6)
    src.stop()
    n = len(collector.arrivals)
    time.sleep(0.05)
    assert len(collector.arrivals) == n  # nothing after stop
    assert collector.names[:6] == ["f10.tif", "f9.tif"] * 3


def test_missing_input_and_empty_folder(tmp_path, collector):
    with pytest.raises(FileNotFoundError):
        ReplaySource(tmp_path / "nope").start(collector)
    src = ReplaySource(tmp_path, loop=True)  # empty: finishes instead of spinning
    src.start(collector)
    assert src.wait(2)
    src.stop()
    assert collector.arrivals == []
