"""copilot hub: two real publishers (as two daemons publish) behind one hub; viewers subscribe to the hub only."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from copilot.hub import Hub, HubSecurity, Upstream
from copilot.security import ClientSecurity, SecurityError, ServerSecurity, create_keypair, is_loopback
from copilot.publish.publisher import SNAPSHOT_END, SNAPSHOT_REQUEST, Publisher
from copilot.publish.subscriber import Subscriber
from tests.publish.conftest import make_doc


@pytest.fixture
def daemons():
    pubs = [Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") for _ in range(2)]
    yield pubs
    for p in pubs:
        p.close()


@pytest.fixture
def hub(daemons):
    h = Hub([Upstream(p.pub_endpoint, p.snapshot_endpoint) for p in daemons], "tcp://127.0.0.1:*",
            "tcp://127.0.0.1:*").start()
    yield h
    h.close()


def _publish(pub: Publisher, stream: str, n: int) -> None:
    pub.publish_result(make_doc(stream, n), {"labels": np.full((4, 5), n, np.uint16)})


def test_viewer_of_the_hub_gets_every_daemons_snapshot_then_live_results(daemons, hub):
    _publish(daemons[0], "cam1", 1)
    _publish(daemons[1], "cam2", 1)
    sub = Subscriber(hub.pub_endpoint, hub.snapshot_endpoint, topics=("result.", "status"))
    try:
        assert sub.snapshot_ok
        first = [sub.recv(1.0) for _ in range(2)]
        assert sorted(m.stream for m in first) == ["cam1", "cam2"] and all(m.from_snapshot for m in first)
        assert first[0].parts["labels"].max() == 1
        # live: wait until the subscription has reached both daemons through the proxy (PUB/SUB slow joiner)
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 10
        n = 2
        while len(seen) < 2 and time.monotonic() < deadline:
            _publish(daemons[0], "cam1", n)
            _publish(daemons[1], "cam2", n)
            n += 1
            while (m := sub.recv(0.05)) is not None:
                if m.kind == "result":
                    seen[m.stream] = m.doc.frame_id
        assert set(seen) == {"cam1", "cam2"}
    finally:
        sub.close()


def _ask(endpoint: str, *frames: bytes, security=None, timeout_ms: int = 5000) -> tuple[list[list[bytes]], dict]:
    ctx = zmq.Context.instance()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    if security is not None:
        security.apply(d)
    d.connect(endpoint)
    d.send_multipart(list(frames))
    got = []
    try:
        while d.poll(timeout_ms):
            msg = d.recv_multipart()
            if msg[0] == SNAPSHOT_END:
                import json

                return got, json.loads(msg[1])
            got.append(msg)
    finally:
        d.close(0)
    raise AssertionError("no SNAPSHOT_END from the hub")


def test_stream_requests_go_to_the_daemon_that_owns_the_stream(daemons, hub):
    _publish(daemons[0], "cam1", 7)
    _publish(daemons[1], "cam2", 9)
    msgs, end = _ask(hub.snapshot_endpoint, SNAPSHOT_REQUEST)  # everyone answers; the hub learns who owns what
    assert end["count"] == 2 and end["daemons"] == 2
    assert hub.owners == {"cam1": {0}, "cam2": {1}}
    msgs, end = _ask(hub.snapshot_endpoint, SNAPSHOT_REQUEST, b"cam2")
    assert [m[0] for m in msgs] == [b"result.cam2"] and end["daemons"] == 1
    assert hub.targets([SNAPSHOT_REQUEST, b"cam2"]) == [1]
    assert hub.targets([b"REPLAY", b"cam1", b"41"]) == [0]  # any verb + stream (replay) is routed the same way
    # a daemon's own error answer comes back in the hub's end marker
    msgs, end = _ask(hub.snapshot_endpoint, b"BOGUS")
    assert msgs == [] and "expected [SNAPSHOT]" in end["error"]


def test_a_daemon_that_is_down_is_reported_missing_not_fatal(daemons):
    dead = "tcp://127.0.0.1:1"  # nothing listens there
    h = Hub([Upstream(daemons[0].pub_endpoint, daemons[0].snapshot_endpoint), Upstream("tcp://127.0.0.1:2", dead)],
            "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", timeout_s=0.3).start()
    try:
        _publish(daemons[0], "cam1", 1)
        msgs, end = _ask(h.snapshot_endpoint, SNAPSHOT_REQUEST)
        assert end["count"] == 1 and end["missing"] == [dead]
    finally:
        h.close()


def test_binding_beyond_loopback_needs_curve_keys(daemons, tmp_path):
    up = [Upstream(daemons[0].pub_endpoint)]
    assert is_loopback("tcp://127.0.0.1:5565") and is_loopback("ipc:///tmp/x") and not is_loopback("tcp://*:5565")
    with pytest.raises(SecurityError, match="--pub = tcp://0.0.0.0:.* beyond loopback without CURVE"):
        Hub(up, "tcp://0.0.0.0:*", None)
    _, secret = create_keypair(tmp_path / "hub", "hub")
    create_keypair(tmp_path / "viewers", "viewer")
    h = Hub(up, "tcp://0.0.0.0:*", None, security=HubSecurity(secret, tmp_path / "viewers")).start()
    try:
        assert h._xpub.curve_server and h.pub_endpoint.startswith("tcp://0.0.0.0:")
    finally:
        h.close()


def test_curve_all_the_way_daemon_to_hub_to_viewer(tmp_path):
    """The daemon allows only the hub's key; the hub allows only the viewer's; the viewer asks through the hub."""
    keys = tmp_path / "keys"
    server_pub, server_sec = create_keypair(keys / "daemon", "server")
    hub_pub, hub_sec = create_keypair(keys / "hub", "hub")
    viewer_pub, viewer_sec = create_keypair(keys / "viewer", "viewer")  # (the Subscriber's own CURVE snapshot is
    # not used here: on main it gets no snapshot even from a daemon directly; raw DEALERs show the hub's part)
    (keys / "daemon-allows").mkdir()
    (keys / "daemon-allows" / "hub.key").write_bytes(hub_pub.read_bytes())
    (keys / "hub-allows").mkdir()
    (keys / "hub-allows" / "viewer.key").write_bytes(viewer_pub.read_bytes())
    daemon_sec = ServerSecurity(server_sec, keys / "daemon-allows")
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", security=daemon_sec)
    hub = Hub([Upstream.parse(f"{pub.pub_endpoint},{pub.snapshot_endpoint},{server_pub}")], "tcp://127.0.0.1:*",
              "tcp://127.0.0.1:*", security=HubSecurity(hub_sec, keys / "hub-allows")).start()
    try:
        _publish(pub, "cam1", 5)
        msgs, end = _ask(hub.snapshot_endpoint, SNAPSHOT_REQUEST, security=ClientSecurity.from_files(viewer_sec, hub_pub))
        assert [m[0] for m in msgs] == [b"result.cam1"] and end["count"] == 1  # CURVE on both legs
        _, stranger_sec = create_keypair(keys / "stranger", "stranger")  # a key the hub does not allow
        with pytest.raises(AssertionError, match="no SNAPSHOT_END"):
            _ask(hub.snapshot_endpoint, SNAPSHOT_REQUEST, security=ClientSecurity.from_files(stranger_sec, hub_pub),
                 timeout_ms=1000)
    finally:
        hub.close()
        pub.close()
        daemon_sec.close()


def test_cli_refuses_an_unsafe_bind_in_one_line(capsys):
    from copilot.cli import main

    assert main(["hub", "--daemon", "tcp://127.0.0.1:5555", "--pub", "tcp://0.0.0.0:0", "--snapshot",
                 "tcp://127.0.0.1:0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("copilot hub: --pub = tcp://0.0.0.0:0 binds beyond loopback") and "\n" not in err
    assert main(["hub", "--daemon", "udp://x"]) == 2
