"""Delivered, not just published: the store journals first, consumers keep cursors, subscribers fill gaps by replay."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from copilot.delivery import Delivery, PublishSink, open_session_exports
from copilot.publish.publisher import Publisher
from copilot.publish.subscriber import Subscriber
from copilot.result import Result
from copilot.store import ResultStore
from tests.publish.conftest import make_doc


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "results.sqlite", synchronous="NORMAL")
    s.epoch = "test-epoch"
    yield s
    s.close()


def journal(store, stream, n):
    doc = make_doc(stream, n)
    assert store.journal(doc) is doc
    return doc


def test_journal_gives_gapless_seq_and_refuses_duplicates(tmp_path, store):
    docs = [journal(store, "cam1", n) for n in range(3)] + [journal(store, "cam2", 0)]
    assert [d.seq for d in docs] == [1, 2, 3, 1] and {d.session_epoch for d in docs} == {"test-epoch"}
    assert store.journal(make_doc("cam1", 1)) is None and store.duplicates == 1  # the same frame again
    store.record_failure(docs[0].origin, None, "failed", "late failure of a frame that has a result")
    assert store.status(docs[0].origin) == ("ok", None)  # a failure never replaces a result (its seq stays)
    assert store.last_seqs() == {"cam1": 3, "cam2": 1}
    assert [d.seq for d in store.after("cam1", 1)] == [2, 3]
    store.close()
    again = ResultStore(tmp_path / "results.sqlite")  # seq continues across restarts
    assert again.journal(make_doc("cam1", 7)).seq == 4
    again.close()


def test_v1_store_is_migrated_with_backfilled_seq(tmp_path):
    import sqlite3

    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, fingerprint TEXT NOT NULL"
        " DEFAULT '', stream TEXT, frame_id TEXT, status TEXT NOT NULL, reason TEXT, document TEXT,"
        " processed_at TEXT NOT NULL, UNIQUE (origin, fingerprint)); PRAGMA user_version=1;")
    for n in range(3):
        d = make_doc("old", n)
        conn.execute("INSERT INTO frames (origin, stream, frame_id, status, document, processed_at)"
                     " VALUES (?, 'old', ?, 'ok', ?, ?)", (d.origin, d.frame_id, d.to_json(), d.processed_at.isoformat()))
    conn.commit()
    conn.close()
    with ResultStore(db) as s:
        assert [d.seq for d in s.after("old", 0)] == [1, 2, 3]
        assert s.journal(make_doc("old", 9)).seq == 4


class Flaky:
    """A consumer that fails on chosen seqs the first time (a full disk, say) and records what it got."""

    name = "flaky"

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)
        self.got: list[int] = []

    def deliver(self, result):
        if result.doc.seq in self.fail_on:
            self.fail_on.discard(result.doc.seq)
            raise OSError("disk full")
        self.got.append(result.doc.seq)


def test_failed_delivery_is_retried_in_order_and_a_restart_catches_up(store):
    sink = Flaky(fail_on={2})
    delivery = Delivery(store, [sink])
    for n in range(4):
        delivery(Result(doc=journal(store, "s", n)))
    assert sink.got == [1, 2, 3, 4] and delivery.stats.failed == 1  # 2 retried before 3, from the store
    journal(store, "s", 4)  # journaled, then the daemon was killed before delivering
    journal(store, "s", 5)
    newcomer = Flaky()
    newcomer.name = "newcomer"  # a consumer new to the store starts at the end...
    assert Delivery(store, [newcomer]).catch_up() == 0 and newcomer.got == []
    restarted = Flaky()  # ...the same consumer after a restart resumes after its cursor
    assert Delivery(store, [restarted]).catch_up() == 2 and restarted.got == [5, 6]


def test_exports_continue_across_a_kill_without_duplicates(tmp_path, store):
    sessions = tmp_path / "sessions"
    writer = open_session_exports(store, sessions, "cam1")
    delivery = Delivery(store, [writer])
    for n in range(3):
        delivery(Result(doc=journal(store, "cam1", n)))
    # a kill after export but before the cursor moved: the frame's lines are on disk, the store does not know
    doc = journal(store, "cam1", 3)
    writer.writer.deliver(Result(doc=doc))
    with open(writer.out_dir / "particles.csv", "a") as fh:
        fh.write("cam1-00099,1,2")  # and half a line of the next one
    folder = writer.out_dir

    resumed = open_session_exports(store, sessions, "cam1")
    assert resumed.out_dir == folder
    d2 = Delivery(store, [resumed])
    assert d2.catch_up() == 1
    d2(Result(doc=journal(store, "cam1", 4)))
    summary = resumed.close()
    lines = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    assert [d["seq"] for d in lines] == [1, 2, 3, 4, 5]
    frames = (folder / "frames.csv").read_text().splitlines()
    assert len(frames) == 6 and frames[0].startswith("stream,")
    assert "cam1-00099" not in (folder / "particles.csv").read_text()
    assert summary["cam1"]["frames"] == 5  # rebuilt from the store, not from memory of the killed run


def test_new_session_after_a_long_pause_finishes_the_old_one(tmp_path, store):
    sessions = tmp_path / "sessions"
    w = open_session_exports(store, sessions, "cam1")
    Delivery(store, [w])(Result(doc=journal(store, "cam1", 0)))
    journal(store, "cam1", 1)  # journaled, not exported, then a long outage
    state = json.loads(store.sink_state("exports"))
    state["updated_at"] = (datetime.now(timezone.utc) - timedelta(hours=3)).isoformat()
    store.reset_sink("exports", None)
    store.advance("cam1", 1, {"exports": json.dumps(state)})
    new = open_session_exports(store, sessions, "cam1", gap_min=60, new_session=False)
    assert new.out_dir != w.out_dir
    old_lines = (w.out_dir / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in old_lines] == [1, 2] and (w.out_dir / "summary.json").exists()
    new.close()


def test_lossless_subscriber_fills_gaps_drops_repeats_and_reports_pruned(store):
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", history=store)
    try:
        docs = [journal(store, "cam1", n) for n in range(6)]
        sub = Subscriber(pub.pub_endpoint, pub.snapshot_endpoint, ("result.",), lossless=True, from_seq=0)
        try:
            for i in (0, 1, 3, 1, 5):  # 3 and 5 lost on the wire (seq 3, 5 missing), seq 2 repeated
                pub.publish_result(docs[i])
            got = []
            while (m := sub.recv(timeout_s=1.0)) is not None:
                got.append((m.doc.seq, m.replayed))
            assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]  # every one, once, in order
            assert sub.lost == 0
            # the tail: a heartbeat says the stream reached 8 though nothing was published
            journal(store, "cam1", 6), journal(store, "cam1", 7)
            pub.publish_status({"session_epoch": "e", "last_seq": store.last_seqs()})
            tail = [m.doc.seq for m in iter(lambda: sub.recv(timeout_s=1.0), None) if m.kind == "result"]
            assert tail == [7, 8]
        finally:
            sub.close()
        # pruned: a consumer starting at 0 is told seqs 1..8 are gone, then gets what is kept
        store.prune_documents(datetime.now(timezone.utc) + timedelta(days=1))
        journal(store, "cam1", 8)
        late = Subscriber(pub.pub_endpoint, pub.snapshot_endpoint, ("result.",), lossless=True, from_seq=0)
        try:
            got = [m.doc.seq for m in iter(lambda: late.recv(timeout_s=1.0), None)]
            assert got == [9] and late.lost == 8
        finally:
            late.close()
    finally:
        pub.close()


def test_publish_sink_and_replay_request_limits(store):
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", history=store)
    try:
        sink = PublishSink(pub)
        sink.deliver(Result(doc=journal(store, "cam1", 0)))
        assert pub.stats()["sent"] == 1
        import zmq

        ctx = zmq.Context.instance()
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(pub.snapshot_endpoint)
        big.send_multipart([b"SINCE", b"x" * 10_000, b"0"])  # beyond MAX_REQUEST_BYTES: ZeroMQ drops the peer
        assert not big.poll(500)
        big.close(0)
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(pub.snapshot_endpoint)
        d.send_multipart([b"SINCE", b"cam1", b"not-a-number"])
        assert d.poll(3000)
        assert "error" in json.loads(d.recv_multipart()[1])  # a malformed request gets an error, the server lives
        d.send_multipart([b"SINCE", b"cam1", b"0"])
        assert d.poll(3000) and d.recv_multipart()[0] == b"result.cam1"
        d.close(0)
    finally:
        pub.close()


def test_session_summary_merges_like_one_pass():
    from copilot.exports import SessionAggregate, session_summary

    docs = [make_doc(s, n) for n in range(9) for s in ("cam1", "cam2")]
    earlier, later = SessionAggregate(), SessionAggregate()
    for d in docs[:7]:
        earlier.add(d)
    for d in docs[7:]:
        later.add(d)
    earlier.merge(later)
    assert earlier.summary() == session_summary(docs)


def test_tail_prints_each_result_once_then_exits(store, capsys):
    import argparse

    from copilot.cli import tail

    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", history=store)
    try:
        for n in range(4):
            journal(store, "cam1", n)
        journal(store, "cam2", 0)
        args = argparse.Namespace(endpoint=pub.pub_endpoint, snapshot=pub.snapshot_endpoint, stream="cam1",
                                  from_seq=1, follow=False, connect_timeout=5.0, curve_server_key=None, curve_key=None)
        assert tail.run(args) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [(d["stream"], d["seq"]) for d in lines] == [("cam1", 2), ("cam1", 3), ("cam1", 4)]
        args.stream, args.from_seq = None, None  # default: the last result of each stream
        assert tail.run(args) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert sorted((d["stream"], d["seq"]) for d in lines) == [("cam1", 4), ("cam2", 1)]
        args.from_seq = -1
        assert tail.run(args) == 2
    finally:
        pub.close()
