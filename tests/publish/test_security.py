"""CURVE on every socket when keys are configured; an unauthenticated bind beyond loopback is refused."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
import zmq

from copilot.config import load_settings
from copilot.daemon import build_security
from copilot.frame import Frame
from copilot.metrics import Metrics
from copilot.publish.publisher import Publisher
from copilot.publish.subscriber import Subscriber
from copilot.security import ClientSecurity, SecurityError, ServerSecurity, create_keypair, is_loopback
from copilot.sources.push import push_frames
from copilot.sources.socket import SocketSource
from tests.publish.conftest import make_doc


@pytest.fixture
def keys(tmp_path):
    server_pub, server_sec = create_keypair(tmp_path / "server", "server")
    allowed = tmp_path / "allowed"
    ok_pub, ok_sec = create_keypair(tmp_path / "clients", "viewer")
    _, intruder_sec = create_keypair(tmp_path / "intruders", "intruder")
    allowed.mkdir()
    (allowed / "viewer.key").write_bytes(ok_pub.read_bytes())
    return {"server": ServerSecurity(server_sec, allowed),
            "ok": ClientSecurity.from_files(ok_sec, server_pub),
            "intruder": ClientSecurity.from_files(intruder_sec, server_pub)}


def test_loopback_rule_and_refusal_without_keys(tmp_path):
    assert is_loopback("tcp://localhost:1") and is_loopback("tcp://[::1]:5") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    assert not is_loopback("tcp://192.168.1.5:5555") and not is_loopback("tcp://eth0:5555")
    assert build_security(load_settings(None)) is None  # defaults: loopback, no keys, fine
    wide = {"publish": {"pub_endpoint": "tcp://0.0.0.0:5555"}}
    with pytest.raises(SecurityError, match="beyond loopback without CURVE keys"):
        build_security(load_settings(None, wide))
    assert build_security(load_settings(None, {**wide, "security": {"insecure": True}})) is None
    with pytest.raises(SecurityError, match="metrics"):
        build_security(load_settings(None, {"metrics": {"listen": "0.0.0.0:9464"}}))
    with pytest.raises(SecurityError, match="client_keys_dir"):
        sec = create_keypair(tmp_path, "server")[1]
        build_security(load_settings(None, {"security": {"server_secret_key": str(sec)}}))


def test_only_allow_listed_clients_read_results(keys, tmp_path):
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", security=keys["server"])
    ctx = zmq.Context()
    try:
        ok = Subscriber(pub.pub_endpoint, pub.snapshot_endpoint, ("result.",), security=keys["ok"], context=ctx)
        intruder = Subscriber(pub.pub_endpoint, None, ("result.",), security=keys["intruder"], context=ctx)
        plain = Subscriber(pub.pub_endpoint, None, ("result.",), context=ctx)
        got = None
        for n in range(100):  # until the allowed subscriber's subscription has arrived
            pub.publish_result(make_doc("cam1", n))
            if (got := ok.recv(0.05)) is not None:
                break
        assert got is not None and got.doc.stream == "cam1"
        assert intruder.recv(0.3) is None and plain.recv(0.3) is None
        for s in (ok, intruder, plain):
            s.close()
    finally:
        pub.close()
        keys["server"].close()
        ctx.term()


def test_allow_listed_subscriber_gets_the_snapshot_over_curve(keys):
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", security=keys["server"])
    ctx = zmq.Context()
    try:
        pub.publish_result(make_doc("cam1", 7))
        ok = Subscriber(pub.pub_endpoint, pub.snapshot_endpoint, ("result.",), security=keys["ok"], context=ctx)
        assert ok.fetch_snapshot(timeout_s=5.0)
        msg = ok.recv(1.0)
        assert msg is not None and msg.doc.stream == "cam1" and msg.doc.frame_id == make_doc("cam1", 7).frame_id
        intruder = Subscriber(pub.pub_endpoint, pub.snapshot_endpoint, ("result.",), security=keys["intruder"],
                              context=ctx)
        assert not intruder.fetch_snapshot(timeout_s=0.5)
        for s in (ok, intruder):
            s.close()
    finally:
        pub.close()
        keys["server"].close()
        ctx.term()


def test_socket_source_takes_frames_from_allowed_pushers_only(keys):
    got = []
    src = SocketSource("tcp://127.0.0.1:*", security=keys["server"])
    src.start(got.append)
    try:
        frame = Frame(np.zeros((8, 8), np.uint16), nm_per_px=1.0, stream="s", frame_id="a", origin="mem")
        with pytest.raises(TimeoutError):
            push_frames(src.endpoint, [frame], security=keys["intruder"], timeout_s=1.0)
        assert push_frames(src.endpoint, [frame], security=keys["ok"], timeout_s=10.0) == 1
        for _ in range(100):
            if got:
                break
            time.sleep(0.05)
        assert [a.frame.frame_id for a in got] == ["a"]
    finally:
        src.stop()
        keys["server"].close()


def test_metrics_endpoint_serves_status_and_latencies():
    status = {"processed": 7, "failed": 1, "queues": [0, 2, 0, 0], "last_seq": {"cam1": 7}, "model": "m",
              "model_version": "1", "backend": "onnxruntime-cpu", "publisher": {"dropped": 3, "replayed": 2}}
    m = Metrics(lambda: status, "127.0.0.1:0")
    try:
        from copilot.result import Result

        m.observe(Result(doc=make_doc("cam1", 1)))
        text = urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
    assert 'copilot_frames_total{outcome="processed"} 7.0' in text
    assert 'copilot_queue_depth{queue="1"} 2.0' in text and 'copilot_last_seq{stream="cam1"} 7.0' in text
    assert 'copilot_dropped_messages_total{where="publisher_send_queue_full"} 3.0' in text
    assert 'copilot_stage_seconds_bucket{le="0.025",stage="infer"} 1.0' in text
    assert 'model_version="1"' in text
