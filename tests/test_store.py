"""ResultStore: a real SQLite file on tmp_path, reopened, written from several threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from copilot.document.schema import (
    Calibration,
    ImageInfo,
    Measurements,
    ModelRef,
    ParticleSummary,
    Reliability,
    ResultDocument,
    Verdict,
)
from copilot.store import ResultStore, file_fingerprint

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def make_doc(stream: str, n: int, origin: str | None = None) -> ResultDocument:
    return ResultDocument(
        stream=stream,
        frame_id=f"{stream}-{n:05d}",
        origin=origin or f"/data/{stream}/frame_{n:05d}.tif",
        acquired_at=T0 + timedelta(seconds=n),
        processed_at=T0 + timedelta(seconds=n, milliseconds=200),
        calibration=Calibration(nm_per_px=0.5, calibrated=True, source="tiff-resolution", length_unit="nm"),
        image=ImageInfo(height_px=512, width_px=512, dtype="uint16"),
        model=ModelRef(name="particles-stem", version="1.0.0", backend="onnxruntime-cpu"),
        timings_ms={"read": 2.0, "infer": 30.0, "total": 35.0},
        measurements=Measurements(
            task="particles", length_unit="nm", particles=ParticleSummary(count=n, count_edge=0, count_sized=n)
        ),
        reliability=Reliability(predicted_f1=0.9),
        verdict=Verdict(level="ok"),
    )


def test_records_survive_close_and_reopen(tmp_path):
    db = tmp_path / "state" / "results.sqlite"
    frames = []
    for n in range(6):
        f = tmp_path / f"frame_{n}.tif"
        f.write_bytes(b"x" * (100 + n))
        frames.append(f)
    docs = [make_doc("cam1", n, origin=str(f)) for n, f in enumerate(frames)]

    store = ResultStore(db)
    for doc, f in zip(docs[:3], frames[:3]):  # the daemon finished three frames, then died
        store.record_result(doc, file_fingerprint(f))
    store.close()

    with ResultStore(db) as store:  # the restarted daemon
        todo = [f for f in frames if not store.is_done(str(f), file_fingerprint(f))]
        assert todo == frames[3:]  # neither redoes nor skips a frame
        assert store.is_done(str(frames[0]))  # any version of it
        assert not store.is_done(str(frames[0]), "1:2")
        assert store.count() == 3 and store.count("ok") == 3
        assert list(store.results()) == docs[:3]
        assert store.last("cam1") == docs[2]
        assert store.last("nope") is None
        assert store.status(str(frames[1])) == ("ok", None)

    check = sqlite3.connect(db)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = check.execute("SELECT stream, frame_id, status, processed_at FROM frames ORDER BY id LIMIT 1").fetchone()
        assert row == ("cam1", "cam1-00000", "ok", docs[0].processed_at.isoformat())
    finally:
        check.close()


def test_rewritten_file_gets_a_new_fingerprint(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"partial")
    first = file_fingerprint(f)
    assert file_fingerprint(f) == first
    f.write_bytes(b"partial and now complete")
    os.utime(f, ns=(1, 1_000_000_007))
    assert file_fingerprint(f) == f"{len(b'partial and now complete')}:1000000007" != first
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.record_failure(str(f), first, "quarantined", "truncated TIFF")
        assert store.is_done(str(f), first) and not store.is_done(str(f), file_fingerprint(f))


def test_failures_are_recorded_with_reason(tmp_path):
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        store.record_failure("/data/bad.tif", "10:1", "quarantined", "not a TIFF: bad magic bytes")
        store.record_failure("/data/boom.tif", "11:1", "failed", "infer: RuntimeError: out of memory",
                             stream="cam1", frame_id="boom")
        store.record_result(make_doc("cam1", 1), "12:1")
        with pytest.raises(ValueError):
            store.record_failure("/data/x.tif", None, "exploded", "?")
    with ResultStore(db) as store:
        assert store.status("/data/bad.tif", "10:1") == ("quarantined", "not a TIFF: bad magic bytes")
        assert store.status("/data/boom.tif") == ("failed", "infer: RuntimeError: out of memory")
        assert store.is_done("/data/bad.tif", "10:1") and store.is_done("/data/boom.tif", "11:1")
        assert (store.count(), store.count("ok"), store.count("quarantined"), store.count("failed")) == (3, 1, 1, 1)
        assert [d.frame_id for d in store.results()] == ["cam1-00001"]  # failures carry no document
        assert store.status("/data/x.tif") is None

        # a frame retried and now processed replaces its failure
        store.record_result(make_doc("cam1", 2, origin="/data/boom.tif"), "11:1")
        assert store.status("/data/boom.tif", "11:1") == ("ok", None)
        assert store.count() == 3 and store.last("cam1").frame_id == "cam1-00002"


def test_socket_frames_without_fingerprint(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", synchronous="NORMAL") as store:
        doc = make_doc("cam2", 5, origin="socket://cam2/cam2-00005")
        store.record_result(doc, None)
        assert store.is_done("socket://cam2/cam2-00005")
        store.record_result(doc, None)  # recorded twice: still one row
        assert store.count() == 1
        assert [d.frame_id for d in store.results("cam2")] == ["cam2-00005"] and list(store.results("cam1")) == []


def test_concurrent_writes_from_two_threads(tmp_path):
    db = tmp_path / "r.sqlite"
    store = ResultStore(db)  # created here, written only from other threads
    errors: list[BaseException] = []
    per_thread = 60

    def writer(stream: str) -> None:
        try:
            for n in range(per_thread):
                if n % 10 == 9:
                    store.record_failure(f"/data/{stream}/bad_{n}.tif", f"{n}:0", "failed", f"boom {n}")
                else:
                    store.record_result(make_doc(stream, n), f"{n}:0")
                store.is_done(f"/data/{stream}/frame_{n:05d}.tif", f"{n}:0")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while any(t.is_alive() for t in writers):
                sum(1 for _ in store.results())
                store.count()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(s,)) for s in ("a", "b")]
    for t in writers:
        t.start()
    r = threading.Thread(target=reader)
    r.start()
    for t in writers + [r]:
        t.join(60)
    assert not errors
    assert store.count() == 2 * per_thread
    assert store.count("failed") == 2 * (per_thread // 10)
    assert [d.frame_id for d in store.results("a")] == [f"a-{n:05d}" for n in range(per_thread) if n % 10 != 9]
    store.close()
    with ResultStore(db) as again:
        assert again.count() == 2 * per_thread
        assert again.is_done("/data/b/frame_00000.tif", "0:0")


def test_results_iterate_in_batches(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", synchronous="NORMAL") as store:
        for n in range(7):
            store.record_result(make_doc("s", n), None)
        assert [d.frame_id for d in store.results(batch=3)] == [f"s-{n:05d}" for n in range(7)]
