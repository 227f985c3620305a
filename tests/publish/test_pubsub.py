"""Publisher ↔ Subscriber over real ZeroMQ sockets on 127.0.0.1 (free ports)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import zmq

from copilot.publish.publisher import SNAPSHOT_END, Publisher
from copilot.document.schema import ResultDocument
from copilot.publish.subscriber import Subscriber, decode_message

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9"


def labels_for(n: int, shape=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 3000, size=shape, dtype=np.uint16)


def test_result_arrives_with_parts_intact(publisher, doc_factory, sync):
    with Subscriber(publisher.pub_endpoint, topics=("result.", "status")) as sub:
        sync(publisher, sub)
        labels = labels_for(1)
        uncertainty = np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80)
        strided = labels_for(2, (64, 160))[:, ::2]  # not C-contiguous
        big_endian = labels_for(3).astype(">u2")
        doc = doc_factory("cam1", 1)
        publisher.publish_result(
            doc, {"labels": labels, "uncertainty": uncertainty, "strided": strided, "be": big_endian, "preview": PNG}
        )
        assert [p.name for p in doc.parts] == ["labels", "uncertainty", "strided", "be", "preview"]

        msg = sub.recv(5.0)
        assert msg is not None and msg.topic == "result.cam1" and msg.kind == "result" and msg.stream == "cam1"
        assert isinstance(msg.doc, ResultDocument)
        assert msg.doc == doc
        assert msg.doc.parts[0].model_dump() == {"name": "labels", "dtype": "uint16", "shape": [64, 80]}
        assert msg.doc.parts[4].model_dump() == {"name": "preview", "dtype": "png", "shape": [len(PNG)]}
        np.testing.assert_array_equal(msg.parts["labels"], labels)
        assert msg.parts["labels"].dtype == np.uint16
        np.testing.assert_array_equal(msg.parts["uncertainty"], uncertainty)
        np.testing.assert_array_equal(msg.parts["strided"], strided)
        np.testing.assert_array_equal(msg.parts["be"], big_endian)
        assert msg.parts["preview"] == PNG
        assert not msg.from_snapshot
        assert not msg.parts["labels"].flags.writeable  # a view on the received buffer
    # the arrays stay valid after the subscriber is closed
    assert int(msg.parts["labels"].sum()) == int(labels.sum())


def test_late_joiner_gets_last_result_per_stream(publisher, doc_factory):
    published = {}
    for stream, count in (("a", 5), ("b", 3)):
        for n in range(count):
            labels = labels_for(100 * len(stream) + n + ord(stream))
            publisher.publish_result(doc_factory(stream, n), {"labels": labels})
            published[stream] = (f"{stream}-{n:05d}", labels)

    with Subscriber(publisher.pub_endpoint, publisher.snapshot_endpoint) as sub:
        assert sub.snapshot_ok
        got = [sub.recv(1.0), sub.recv(1.0)]
        assert sub.recv(0.2) is None  # only the last result of each stream, nothing older
    assert all(m is not None and m.from_snapshot for m in got)
    assert sorted(m.doc.frame_id for m in got) == ["a-00004", "b-00002"]
    for m in got:
        frame_id, labels = published[m.doc.stream]
        assert m.doc.frame_id == frame_id
        np.testing.assert_array_equal(m.parts["labels"], labels)

    # one stream only, and topic filters apply to the snapshot too
    with Subscriber(publisher.pub_endpoint, publisher.snapshot_endpoint, topics=("result.b",)) as sub:
        assert [m.doc.frame_id for m in sub.messages(timeout_s=0.2)] == ["b-00002"]
        assert sub.fetch_snapshot(stream="a") and sub.recv(0.2) is None  # "a" is outside the topic filter


def test_snapshot_then_live_without_duplicates(publisher, doc_factory, sync):
    publisher.publish_result(doc_factory("a", 7), {"labels": labels_for(7)})
    with Subscriber(publisher.pub_endpoint, publisher.snapshot_endpoint, topics=("result.", "status")) as sub:
        first = sub.recv(1.0)
        assert first.from_snapshot and first.doc.frame_id == "a-00007"
        sync(publisher, sub)
        # what a subscriber can see live right after its snapshot: the snapshot frame again, an older frame
        publisher.publish_result(doc_factory("a", 7), {"labels": labels_for(7)})
        publisher.publish_result(doc_factory("a", 6), {"labels": labels_for(6)})
        publisher.publish_result(doc_factory("a", 8), {"labels": labels_for(8)})
        publisher.publish_result(doc_factory("b", 1), {"labels": labels_for(1)})
        received = [(m.doc.frame_id, m.from_snapshot) for m in sub.results(timeout_s=0.5)]
        assert received == [("a-00008", False), ("b-00001", False)]
        assert sub.duplicates == 2
        # once caught up, the stream is no longer filtered
        publisher.publish_result(doc_factory("a", 5), {"labels": labels_for(5)})
        assert sub.recv(2.0).doc.frame_id == "a-00005"


@pytest.mark.timeout(120)  # the bound: publishing must return, whatever the subscriber does
def test_slow_subscriber_does_not_block_publisher(doc_factory, sync):
    with Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", hwm=20) as pub:
        slow = Subscriber(pub.pub_endpoint, topics=("result.", "status"), rcvhwm=10)
        try:
            sync(pub, slow)  # connected and subscribed; from here on it never reads
            base = doc_factory("s", 0)
            last = None
            for n in range(5000):
                last = labels_for(n % 7, (64, 64)) + np.uint16(n % 3)
                doc = base.model_copy(update={"frame_id": f"s-{n:05d}"})
                pub.publish_result(doc, {"labels": last})
            assert pub.sent >= 5000
            with Subscriber(pub.pub_endpoint, pub.snapshot_endpoint) as fresh:
                msg = fresh.recv(5.0)
            assert msg is not None and msg.from_snapshot and msg.doc.frame_id == "s-04999"
            np.testing.assert_array_equal(msg.parts["labels"], last)
            # the slow subscriber lost messages (dropped at the high-water marks) instead of holding the publisher
            assert sum(1 for _ in slow.messages(timeout_s=0.2)) < 5000
        finally:
            slow.close()


def test_status_alert_and_preview_topics(publisher):
    with Subscriber(publisher.pub_endpoint, topics=("status", "alert.", "preview.")) as sub:
        when = datetime(2025, 5, 1, 8, 30, tzinfo=timezone.utc)
        # sync on status, then check a full status message
        for _ in range(200):
            publisher.publish_status({"sync": 1})
            if sub.recv(0.05) is not None:
                break
        while sub.recv(0.05) is not None:
            pass
        publisher.publish_status({"state": "running", "fps": np.float32(2.5), "queues": np.array([0, 1]), "at": when})
        publisher.publish_alert("cam1", {"level": "warn", "reasons": ["domain shift 0.8 > 0.5"]})
        publisher.publish_preview("cam1", {"frame_id": "cam1-00001", "width_px": 80}, JPEG)
        publisher.publish_preview("cam2", {"frame_id": "cam2-00001"}, PNG)
        msgs = list(sub.messages(timeout_s=0.3))
    assert [m.topic for m in msgs] == ["status", "alert.cam1", "preview.cam1", "preview.cam2"]
    status, alert, preview, png = msgs
    assert status.kind == "status" and status.stream is None
    assert status.doc == {"state": "running", "fps": 2.5, "queues": [0, 1], "at": "2025-05-01T08:30:00+00:00"}
    assert status.parts == {}
    assert alert.stream == "cam1" and alert.doc["reasons"] == ["domain shift 0.8 > 0.5"]
    assert preview.doc["frame_id"] == "cam1-00001"
    assert preview.doc["parts"] == [{"name": "preview", "dtype": "jpeg", "shape": [len(JPEG)]}]
    assert preview.parts["preview"] == JPEG
    assert png.parts["preview"] == PNG and png.doc["parts"][0]["dtype"] == "png"


def test_invalid_messages_are_skipped_not_fatal():
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=("",)) as sub:
            for _ in range(200):
                raw.send_multipart([b"status", b"{}"])
                if sub.recv(0.05) is not None:
                    break
            while sub.recv(0.05) is not None:
                pass
            raw.send_multipart([b"result.x", b"{not json"])
            raw.send_multipart([b"status", b'{"parts": [{"name": "m", "dtype": "uint16", "shape": [4, 4]}]}', b"123"])
            raw.send_multipart([b"alert.x", b"[1, 2]"])
            raw.send_multipart([b"status", b'{"ok": true}'])
            msg = sub.recv(2.0)
            assert msg.doc == {"ok": True}
            assert sub.invalid == 3
    finally:
        raw.close(0)
        ctx.term()


def test_snapshot_protocol_end_marker_and_bad_request(publisher, doc_factory):
    publisher.publish_result(doc_factory("a", 1), {"labels": labels_for(1)})
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(publisher.snapshot_endpoint)
        dealer.send_multipart([b"SNAPSHOT", b"nope"])
        assert dealer.poll(5000)
        end = dealer.recv_multipart()
        assert end[0] == SNAPSHOT_END and json.loads(end[1]) == {"count": 0}
        dealer.send_multipart([b"GIMME"])
        assert dealer.poll(5000)
        end = dealer.recv_multipart()
        assert end[0] == SNAPSHOT_END and "error" in json.loads(end[1])
        dealer.send_multipart([b"SNAPSHOT"])
        assert dealer.poll(5000)
        msg = decode_message(dealer.recv_multipart())
        assert msg.doc.frame_id == "a-00001"
        assert dealer.poll(5000) and json.loads(dealer.recv_multipart()[1]) == {"count": 1}
    finally:
        dealer.close(0)
        ctx.term()


def test_no_snapshot_server_falls_back_to_live(doc_factory):
    with Publisher("tcp://127.0.0.1:*", None) as pub:
        # nothing listens on the snapshot endpoint: bounded wait, then live only
        ctx = zmq.Context()
        s = ctx.socket(zmq.ROUTER)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        s.close(0)
        ctx.term()
        with Subscriber(pub.pub_endpoint, f"tcp://127.0.0.1:{port}", snapshot_timeout_s=0.3) as sub:
            assert sub.snapshot_ok is False
            assert sub.recv(0.05) is None


def test_bind_conflict_raises_and_close_is_idempotent(publisher):
    with pytest.raises(zmq.ZMQError):
        Publisher(publisher.pub_endpoint, "tcp://127.0.0.1:*")
    with pytest.raises(zmq.ZMQError):
        Publisher("tcp://127.0.0.1:*", publisher.snapshot_endpoint)
    publisher.close()
    publisher.close()
    with pytest.raises(RuntimeError):
        publisher.publish_status({})


@pytest.mark.timeout(20)
def test_bad_endpoint_raises_without_leaking():
    with pytest.raises(zmq.ZMQError):
        Subscriber("tcp://nonsense-no-port", "tcp://127.0.0.1:1")


def test_inproc_with_a_shared_context(doc_factory):
    """In one process (a notebook, the overlay) inproc endpoints skip TCP; received arrays stay read-only."""
    ctx = zmq.Context()
    try:
        with Publisher("inproc://results", "inproc://snapshot", context=ctx) as pub:
            labels = labels_for(9)
            pub.publish_result(doc_factory("a", 9), {"labels": labels})
            with Subscriber("inproc://results", "inproc://snapshot", context=ctx) as sub:
                msg = sub.recv(2.0)
                np.testing.assert_array_equal(msg.parts["labels"], labels)
                with pytest.raises(ValueError):
                    msg.parts["labels"][0, 0] = 1
    finally:
        ctx.term()


def test_late_joiner_gets_the_last_preview_and_result_from_the_snapshot(publisher, doc_factory):
    publisher.publish_preview("cam1", {"frame_id": "cam1-00001"}, JPEG)
    publisher.publish_preview("cam1", {"frame_id": "cam1-00002"}, JPEG)
    publisher.publish_result(doc_factory("cam1", 2), {})
    with Subscriber(publisher.pub_endpoint, publisher.snapshot_endpoint, topics=("result.", "preview.")) as sub:
        msgs = [sub.recv(2.0), sub.recv(2.0)]
    assert [m.topic for m in msgs] == ["preview.cam1", "result.cam1"]
    assert all(m.from_snapshot for m in msgs)
    assert msgs[0].doc["frame_id"] == "cam1-00002" and msgs[0].parts["preview"] == JPEG
    assert msgs[1].doc.frame_id == "cam1-00002"
