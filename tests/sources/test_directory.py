"""DirectorySource with real watchdog observers (inotify and polling) on tmp_path."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from copilot.sources.directory import DirectorySource

SETTLE = 0.3  # seconds; writers below pause for less than this between chunks
CHUNK = b"\x01" * 4096


@pytest.fixture
def make_source(collector) -> Iterator[Callable[..., DirectorySource]]:
    started: list[DirectorySource] = []

    def make(root: Path, **kw) -> DirectorySource:
        kw.setdefault("settle_s", SETTLE)
        src = DirectorySource(root, **kw)
        src.start(collector)
        started.append(src)
        return src

    yield make
    for src in started:
        src.stop()


def write_slowly(path: Path, chunks: int = 5, pause: float = 0.1) -> tuple[int, float]:
    """Write ``chunks`` chunks with pauses shorter than SETTLE; return (final size, time the writer finished)."""
    with open(path, "wb", buffering=0) as f:
        for i in range(chunks):
            f.write(CHUNK)
            if i < chunks - 1:
                time.sleep(pause)
    return path.stat().st_size, time.time()


def assert_no_more(collector, n: int, quiet: float = SETTLE + 0.3) -> None:
    time.sleep(quiet)
    assert len(collector.arrivals) == n, collector.names


def test_slow_chunked_write_is_emitted_once_after_it_is_complete(tmp_path, make_source, collector):
    make_source(tmp_path)
    final_size, finished_at = write_slowly(tmp_path / "frame_001.tif")
    [arrival] = collector.wait_for(1)
    assert arrival.path == tmp_path / "frame_001.tif"
    assert arrival.origin == str(tmp_path / "frame_001.tif")
    assert collector.sizes[0] == final_size == 5 * len(CHUNK)
    assert arrival.arrived_at >= finished_at
    assert_no_more(collector, 1)


def test_writer_that_closes_and_reopens_is_emitted_once_with_the_final_size(tmp_path, make_source, collector):
    make_source(tmp_path)
    path = tmp_path / "reopened.tif"
    path.write_bytes(CHUNK)  # close-after-write #1
    time.sleep(SETTLE / 3)
    with open(path, "ab") as f:  # the writer comes back to patch/append
        f.write(CHUNK)
    collector.wait_for(1)
    assert collector.sizes == [2 * len(CHUNK)]
    assert_no_more(collector, 1)


def test_rename_into_place_is_emitted_once_without_waiting_for_settle(tmp_path, make_source, collector):
    make_source(tmp_path, settle_s=2.0)
    tmp = tmp_path / "frame_002.tif.part"  # excluded while being written
    final_size, _ = write_slowly(tmp, chunks=3, pause=0.05)
    renamed_at = time.time()
    os.rename(tmp, tmp_path / "frame_002.tif")
    [arrival] = collector.wait_for(1, timeout=1.5)  # well before settle_s
    assert arrival.path == tmp_path / "frame_002.tif"
    assert collector.sizes == [final_size]
    assert arrival.arrived_at - renamed_at < 1.0
    assert_no_more(collector, 1, quiet=0.5)


def test_existing_files_are_processed_once(tmp_path, make_source, collector):
    for name in ("b.tif", "a.tif", "c.dm4"):
        (tmp_path / name).write_bytes(CHUNK)
    old = time.time() - 60
    for p in tmp_path.iterdir():
        os.utime(p, (old, old))
    make_source(tmp_path, existing="process")
    collector.wait_for(3)
    assert collector.names == ["a.tif", "b.tif", "c.dm4"]  # name order
    assert_no_more(collector, 3, quiet=0.4)


def test_existing_file_still_being_written_at_start_waits_for_settle(tmp_path, make_source, collector):
    path = tmp_path / "busy.tif"
    path.write_bytes(CHUNK)  # fresh mtime: may still be in progress
    make_source(tmp_path, existing="process")
    time.sleep(0.1)
    with open(path, "ab") as f:
        f.write(CHUNK)
    collector.wait_for(1)
    assert collector.sizes == [2 * len(CHUNK)]
    assert_no_more(collector, 1)


def test_existing_files_are_ignored_with_skip(tmp_path, make_source, collector):
    (tmp_path / "old.tif").write_bytes(CHUNK)
    make_source(tmp_path, existing="skip")
    # Reading an existing file (open + close without writing) must not nominate it either.
    (tmp_path / "old.tif").read_bytes()
    (tmp_path / "new.tif").write_bytes(CHUNK)  # a live arrival still works
    collector.wait_for(1)
    assert_no_more(collector, 1)
    assert collector.names == ["new.tif"]


def test_existing_files_the_store_already_has_are_skipped(tmp_path, make_source, collector):
    for name in ("done.tif", "todo.tif"):
        (tmp_path / name).write_bytes(CHUNK)
    asked: list[str] = []

    def is_done(path: str) -> bool:
        asked.append(path)
        return path.endswith("done.tif") and not path.endswith("todo.tif")

    make_source(tmp_path, is_done=is_done)
    collector.wait_for(1)
    assert_no_more(collector, 1)
    assert collector.names == ["todo.tif"]
    assert sorted(asked) == [str(tmp_path / "done.tif"), str(tmp_path / "todo.tif")]


def test_excluded_and_foreign_names_are_ignored(tmp_path, make_source, collector):
    make_source(tmp_path)
    for name in (".hidden.tif", "frame.tif.part", "frame.tmp", "~lock.tif", "notes.txt", "frame.TIF.PART"):
        (tmp_path / name).write_bytes(CHUNK)
    (tmp_path / "Frame_003.TIF").write_bytes(CHUNK)  # globs are case-insensitive
    collector.wait_for(1)
    assert_no_more(collector, 1)
    assert collector.names == ["Frame_003.TIF"]


def test_rewritten_file_is_emitted_again_but_not_for_the_same_content(tmp_path, make_source, collector):
    make_source(tmp_path)
    path = tmp_path / "live.tif"
    path.write_bytes(CHUNK)
    collector.wait_for(1)
    path.read_bytes()  # a reader opening and closing the file
    time.sleep(SETTLE + 0.2)
    assert len(collector.arrivals) == 1
    path.write_bytes(CHUNK * 3)  # new content
    collector.wait_for(2)
    assert collector.sizes == [len(CHUNK), 3 * len(CHUNK)]
    assert_no_more(collector, 2)


def test_empty_file_is_not_emitted_until_written(tmp_path, make_source, collector):
    make_source(tmp_path, settle_s=0.15)
    path = tmp_path / "placeholder.tif"
    path.touch()
    time.sleep(0.4)
    assert collector.arrivals == []
    path.write_bytes(CHUNK)
    collector.wait_for(1)
    assert collector.sizes == [len(CHUNK)]


def test_recursive_option(tmp_path, make_source, collector):
    (tmp_path / "flat").mkdir()
    (tmp_path / "deep").mkdir()
    make_source(tmp_path / "flat", recursive=False)
    make_source(tmp_path / "deep", recursive=True)
    for root in ("flat", "deep"):
        sub = tmp_path / root / "session1"
        sub.mkdir()
        (sub / "x.tif").write_bytes(CHUNK)
        hidden = tmp_path / root / ".cache"
        hidden.mkdir()
        (hidden / "y.tif").write_bytes(CHUNK)
    [arrival] = collector.wait_for(1)
    assert arrival.path == tmp_path / "deep" / "session1" / "x.tif"
    assert_no_more(collector, 1)


def test_polling_observer(tmp_path, make_source, collector):
    make_source(tmp_path, poll=True, poll_interval_s=0.1)
    final_size, finished_at = write_slowly(tmp_path / "smb_001.tif", chunks=4, pause=0.08)
    tmp = tmp_path / "smb_002.tif.tmp"
    tmp.write_bytes(CHUNK)
    os.rename(tmp, tmp_path / "smb_002.tif")
    collector.wait_for(2)
    assert sorted(collector.names) == ["smb_001.tif", "smb_002.tif"]
    sizes = dict(zip(collector.names, collector.sizes))
    assert sizes == {"smb_001.tif": final_size, "smb_002.tif": len(CHUNK)}
    first = collector.arrivals[collector.names.index("smb_001.tif")]
    assert first.arrived_at >= finished_at
    assert_no_more(collector, 2)


def test_start_and_stop(tmp_path, collector):
    with pytest.raises(FileNotFoundError):
        DirectorySource(tmp_path / "missing").start(collector)
    with pytest.raises(ValueError):
        DirectorySource(tmp_path, existing="maybe")  # type: ignore[arg-type]
    before = threading.active_count()
    src = DirectorySource(tmp_path, settle_s=0.05)
    src.start(collector)
    with pytest.raises(RuntimeError):
        src.start(collector)
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 2.0
    assert threading.active_count() <= before
