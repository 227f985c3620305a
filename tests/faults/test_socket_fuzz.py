"""The real daemon with a ZeroMQ socket source, fed malformed, deeply nested, lying and flooding messages between good
frames: the receive thread survives, every bad message is counted with a reason, every good frame is processed."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import zmq

from copilot.daemon import Daemon
from copilot.sources.wire import encode_pixels
from tests.faults.hostile_files import good_image
from tests.faults.test_hostile_folder import daemon_settings, free_port, wait_started


def header(**kw) -> bytes:
    base = {"v": 1, "shape": [128, 128], "dtype": "uint16", "nm_per_px": 0.5}
    base.update(kw)
    return json.dumps(base).encode()


def bad_messages(rng: np.random.Generator) -> list[list[bytes]]:
    px = good_image(1).tobytes()
    nan = good_image(2).astype(np.float32)
    nan[:] = np.nan
    msgs = [
        [b""], [header()], [header(), px, b"extra"], [b"", b""],  # wrong part counts, empty header
        [b"not json", px], [b"\xff\xfe\xfd", px], [b"[1, 2]", px], [b"42", px], [b"null", px], [b'"s"', px],
        [b"[" * 60000, px], [b"{\"a\":" * 12000 + b"1" + b"}" * 12000, px],  # deep nesting (RecursionError before)
        [b'{"meta": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b', "v": 1, "shape": [128, 128], "dtype": "uint16"}', px],
        [b" " * 70000, px],  # header over 64 KiB
        [header(shape=[128, 129]), px], [header(shape=[10**9, 10**9]), px], [header(shape=[-1, 128]), px],
        [header(shape=[1, 1]), b"\x00\x00"], [header(shape=[128]), px], [header(shape=[128, 128, 1]), px],
        [header(shape=[True, 128]), px], [header(shape=["128", 128]), px], [header(shape=[0, 0]), b""],
        [header(dtype="complex64"), px], [header(dtype="float16"), px], [header(dtype=None), px],
        [header(nm_per_px="NaN"), px], [header(nm_per_px=-1), px], [header(nm_per_px=[1]), px],
        [header(v=2), px], [header(unknown_key=1), px], [header(stream="../etc"), px], [header(frame_id="a/b"), px],
        [header(frame_id="x" * 500), px], [header(acquired_at="yesterday"), px], [header(meta=[1, 2]), px],
        [header(shape=[128, 128], dtype="float32"), nan.tobytes()],  # all NaN: refused
        [header(shape=[2, 2], dtype="uint8"), b"\x00" * 4],  # too small for the working grid: quarantined
        [b'{"v": 1, "shape": [128, 128], "dtype": "uint16", "nm_per_px": 1e400}', px],
    ]
    msgs += [[rng.bytes(int(rng.integers(0, 300))), rng.bytes(int(rng.integers(0, 300)))] for _ in range(40)]
    return msgs


def test_socket_fuzz_never_stops_the_receiver(tmp_path, threshold_model_dir):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = Daemon(daemon_settings(tmp_path, threshold_model_dir, kind="socket", endpoint=endpoint))
    runner = threading.Thread(target=lambda: setattr(daemon, "exit_code", daemon.run(install_signals=False)))
    runner.start()
    wait_started(daemon)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(endpoint)
    rng = np.random.default_rng(0)
    bad = bad_messages(rng)
    good_ids = []
    try:
        for i, msg in enumerate(bad):
            push.send_multipart(msg)
            if i % 4 == 0:
                img = good_image(100 + i).astype(np.float32)
                if i % 8 == 0:
                    img[3, 3] = np.nan  # one NaN pixel: masked, processed, nothing poisoned
                good_ids.append(f"good-{i}")
                push.send_multipart(encode_pixels(img, stream="fuzz", frame_id=good_ids[-1], nm_per_px=0.5))
        for k in range(2000):  # a flood of junk
            push.send_multipart([b"{", b""])
        good_ids.append("after-flood")
        push.send_multipart(encode_pixels(good_image(7), stream="fuzz", frame_id="after-flood", nm_per_px=0.5))
        src = daemon.source
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and daemon.pipeline.stats.processed < len(good_ids):
            assert daemon.pipeline.healthy(), daemon.pipeline.problems()
            time.sleep(0.2)
        stats = src.stats()
        alive = src._thread.is_alive()
        status = daemon.status()
        results = [d.frame_id for d in daemon.store.results("fuzz")]
    finally:
        push.close()
        daemon.request_stop()
        runner.join(60)
    assert alive and status["healthy"] and daemon.exit_code == 0
    assert sorted(results) == sorted(good_ids)
    refused_downstream = 1  # the 2×2 frame is accepted by the socket and refused at the working-grid bound
    assert stats["rejected"] == len(bad) - refused_downstream + 2000, stats
    assert stats["accepted"] == len(good_ids) + refused_downstream
    assert status["quarantined"] == refused_downstream and status["failed"] == 0
