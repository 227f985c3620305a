"""The frame path end to end with real parts: files on disk, the reader, ONNX Runtime, SQLite, ZeroMQ."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from copilot.config import load_settings
from copilot.daemon import Daemon
from copilot.inference.ort_backend import OrtBackend
from copilot.pipeline import Pipeline
from copilot.publish.subscriber import Subscriber
from copilot.sources.base import Arrival
from copilot.store import ResultStore
from tests.conftest import disc_image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_frame(path: Path, nm_per_px: float = 0.5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.integers(30, 226, size=(8, 2))
    img = disc_image((256, 256), centres, 10)
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / nm_per_px, 1 / nm_per_px), metadata={"unit": "nm"})
    return path


def run_files(pipeline: Pipeline, files) -> Pipeline:
    pipeline.start()
    for f in files:
        pipeline.submit(Arrival(origin=str(f), path=f))
    pipeline.stop()
    return pipeline


def test_corrupt_tiff_is_quarantined_and_next_frame_processed(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    good = write_frame(acq / "good.tif")
    corrupt = acq / "corrupt.tif"
    corrupt.write_bytes(good.read_bytes()[:300])
    results = []
    store = ResultStore(tmp_path / "results.sqlite")
    p = Pipeline(OrtBackend.from_name(threshold_model_dir), store=store, sinks=[results.append],
                 quarantine_dir=tmp_path / "quarantine")
    run_files(p, [corrupt, good])
    assert p.stats.quarantined == 1 and p.stats.processed == 1
    assert [r.doc.frame_id for r in results] == ["good"]
    assert corrupt.read_bytes() == good.read_bytes()[:300]  # the acquisition folder is read-only to the co-pilot
    assert not (tmp_path / "quarantine").exists()  # default: a record only
    status, reason = store.status(str(corrupt))
    assert status == "quarantined" and "truncated" in reason
    doc = results[0].doc
    assert doc.calibration.nm_per_px == pytest.approx(0.5) and doc.measurements.length_unit == "nm"
    assert doc.measurements.particles.count >= 6
    assert {"read", "infer", "analyze", "assess", "end_to_end"} <= set(doc.timings_ms)
    store.close()


def test_restart_does_not_reprocess_stored_frames(tmp_path, threshold_model_dir):
    files = [write_frame(tmp_path / f"f{i}.tif", seed=i) for i in range(3)]
    backend = OrtBackend.from_name(threshold_model_dir)
    store = ResultStore(tmp_path / "results.sqlite")
    first = run_files(Pipeline(backend, store=store), files[:2])
    assert first.stats.processed == 2
    store.close()
    store = ResultStore(tmp_path / "results.sqlite")  # the daemon restarted
    second = run_files(Pipeline(backend, store=store), files)
    assert second.stats.skipped == 2 and second.stats.processed == 1
    write_frame(files[0], seed=99)  # rewritten with new content: a new frame
    os.utime(files[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    third = run_files(Pipeline(backend, store=store), files)
    assert third.stats.processed == 1 and third.stats.skipped == 2
    store.close()


def test_daemon_watches_folder_and_publishes(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame(acq / "present.tif", seed=1)
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    settings = load_settings(None, {
        "daemon": {"stream": "tst", "state_dir": str(tmp_path / "state")},
        "source": {"watch": str(acq), "settle_s": 0.1},
        "model": {"name": str(threshold_model_dir)},
        "publish": {"pub_endpoint": pub, "snapshot_endpoint": snap},
    })
    daemon = Daemon(settings)
    import threading

    t = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    t.start()
    sub = Subscriber(pub, snap, topics=("result.",))
    try:
        got = {}
        deadline = time.time() + 20
        written = False
        while time.time() < deadline and len(got) < 2:
            if not written and got:
                write_frame(acq / "new.tif", seed=2)
                written = True
            msg = sub.recv(timeout_s=0.5)
            if msg is not None:
                got[msg.doc.frame_id] = msg
        assert set(got) == {"present", "new"}
        msg = got["new"]
        assert msg.topic == "result.tst"
        labels = msg.parts["labels"]
        assert labels.shape == (256, 256) and labels.max() == msg.doc.measurements.particles.count
    finally:
        sub.close()
        daemon.request_stop()
        t.join(30)
    assert not t.is_alive()
    summary = (daemon.session_dir / "summary.json").read_text()
    assert '"frames": 2' in summary
    assert len((daemon.session_dir / "results.jsonl").read_text().splitlines()) == 2


def test_service_signals_ready_and_drains_on_sigterm(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    notify_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(notify_path)
    server.settimeout(60)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[daemon]\nstream = "svc"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[source]\nwatch = "{acq}"\nsettle_s = 0.1\n[model]\nname = "{threshold_model_dir}"\n'
        f'[publish]\npub_endpoint = "tcp://127.0.0.1:{free_port()}"\n'
        f'snapshot_endpoint = "tcp://127.0.0.1:{free_port()}"\n'
    )
    env = {**os.environ, "NOTIFY_SOCKET": notify_path}
    proc = subprocess.Popen([sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"READY=1" in server.recv(4096)
        for i in range(3):
            write_frame(acq / f"f{i}.tif", seed=i)
        store_path = tmp_path / "state" / "results.sqlite"
        deadline = time.time() + 30
        while time.time() < deadline:
            with ResultStore(store_path) as store:
                if store.count() >= 1:
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        messages = []
        server.settimeout(1)
        try:
            while True:
                messages.append(server.recv(4096))
        except socket.timeout:
            pass
        assert any(b"STOPPING=1" in m for m in messages)
        with ResultStore(store_path) as store:
            assert store.count() >= 1
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()


@pytest.mark.parametrize("args, expected", [
    (["--watch", "/nonexistent/acquisition"], "is not a folder"),
    ([], "a folder to watch is required"),
])
def test_run_refuses_a_bad_source_at_start(tmp_path, args, expected):
    out = subprocess.run([sys.executable, "-m", "copilot.cli", "run", "--state-dir", str(tmp_path / "s"), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and expected in " ".join((out.stdout + out.stderr).split())


def test_bad_config_fails_at_start_naming_the_field(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[publish]\npub_endpoint = "127.0.0.1:5555"\n')
    out = subprocess.run([sys.executable, "-m", "copilot.cli", "run", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "publish.pub_endpoint" in out.stdout + out.stderr


def test_daemon_socket_source_end_to_end(tmp_path, threshold_model_dir):
    """copilot push → ZeroMQ PULL source → pipeline → PUB; a malformed message in between is rejected, not fatal."""
    import threading

    import zmq

    from copilot.sources.push import push_frames

    pull = f"tcp://127.0.0.1:{free_port()}"
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    settings = load_settings(None, {
        "daemon": {"stream": "sock", "state_dir": str(tmp_path / "state")},
        "source": {"kind": "socket", "endpoint": pull},
        "model": {"name": str(threshold_model_dir)},
        "publish": {"pub_endpoint": pub, "snapshot_endpoint": snap},
    })
    daemon = Daemon(settings)
    t = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    t.start()
    sub = Subscriber(pub, snap, topics=("result.",))
    try:
        ctx = zmq.Context.instance()
        bad = ctx.socket(zmq.PUSH)
        bad.connect(pull)
        bad.send_multipart([b'{"shape": [4, 4], "dtype": "uint16", "frame_id": "bad"}', b"\0" * 7])
        bad.close(linger=1000)
        frame = write_frame(tmp_path / "f.tif", seed=4)
        assert push_frames(pull, [frame], stream="sock") == 1
        msg = sub.recv(timeout_s=20)
        assert msg is not None and msg.doc.frame_id == "f" and msg.doc.calibration.source == "socket"
        assert msg.doc.calibration.nm_per_px == pytest.approx(0.5)
        deadline = time.monotonic() + 20  # the bad message travels on its own socket: it may land after the good one
        while daemon.source.rejected < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.source.rejected == 1
    finally:
        sub.close()
        daemon.request_stop()
        t.join(30)


def test_stages_form_one_typed_path():
    from copilot.pipeline import STAGES

    assert [s.name for s in STAGES] == ["read", "infer", "analyze", "assess", "follow", "sink"]
    assert all(a.output is b.input for a, b in zip(STAGES, STAGES[1:]))


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_measure_workers_keep_frame_order_and_series_state_per_stream(tmp_path, threshold_model_dir, mode):
    """Big and small frames on two streams through 3 measure workers, a corrupt file among them: results leave in
    submission order, each stream's series counts its own frames 1, 2, 3, …, and the gap left by the quarantined
    file does not hold the others back."""
    from copilot.frame import Frame

    rng = np.random.default_rng(3)
    arrivals = []
    for i in range(12):
        size = 768 if i % 4 == 0 else 128  # the big ones take longest to measure: workers finish out of order
        centres = rng.integers(20, size - 20, size=(max(4, size // 24), 2))
        frame = Frame(disc_image((size, size), centres, 8), 0.5, stream=f"s{i % 2}", frame_id=f"f{i:02d}",
                      origin="mem")
        arrivals.append(Arrival(origin=f"f{i:02d}", frame=frame))
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\0" + b"\0" * 50)
    arrivals.insert(5, Arrival(origin=str(corrupt), path=corrupt))
    results = []
    p = Pipeline(OrtBackend.from_name(threshold_model_dir), sinks=[results.append], quarantine_dir=tmp_path / "q",
                 workers=3, queue_size=2, measure_mode=mode).start()
    for a in arrivals:
        p.submit(a)
    p.stop()
    assert p.stats.processed == 12 and p.stats.quarantined == 1
    assert [r.doc.frame_id for r in results] == [f"f{i:02d}" for i in range(12)]
    for stream in ("s0", "s1"):
        frames = [r.doc.series.frames for r in results if r.doc.stream == stream]
        assert frames == list(range(1, 7))
    windows = [r.doc.reliability.shift_window_mmd2 for r in results if r.doc.stream == "s0"]
    assert windows[:2] == [None, None]  # the threshold card has no embedding samples: no window score at all
    assert {"analyze", "assess", "follow", "infer", "read", "end_to_end"} <= set(results[0].doc.timings_ms)


def test_workers_must_be_positive(threshold_model_dir):
    with pytest.raises(ValueError, match="workers"):
        Pipeline(OrtBackend.from_name(threshold_model_dir), workers=0)


def test_restart_rebuilds_the_shift_window_from_the_store(tmp_path, threshold_model_dir):
    """After a restart the rolling shift window holds the stream's last frames again (from their documents)."""
    from copilot.inference.card import EmbeddingReference

    backend = OrtBackend.from_name(threshold_model_dir)
    rng = np.random.default_rng(0)
    samples = rng.normal([0.2, 0.9], 0.05, (50, 2))
    card = backend.card.model_copy(update={"embedding_reference": EmbeddingReference(
        mean=samples.mean(0).tolist(), std=samples.std(0).tolist(), samples=samples.tolist())})
    backend.card = card
    files = [write_frame(tmp_path / f"f{i}.tif", seed=i) for i in range(4)]
    store = ResultStore(tmp_path / "results.sqlite")
    results = []
    run_files(Pipeline(backend, store=store, sinks=[results.append]), files[:3])
    restarted = Pipeline(backend, store=store, sinks=[results.append])
    run_files(restarted, files[3:])
    fresh = []
    run_files(Pipeline(backend, sinks=[fresh.append]), files)
    assert results[-1].doc.reliability.shift_window_mmd2 == pytest.approx(fresh[-1].doc.reliability.shift_window_mmd2,
                                                                         rel=1e-3)
    assert results[-1].doc.reliability.shift_window_mmd2 is not None
    store.close()


def test_a_failed_frame_does_not_set_its_streams_next_scale():
    """Poisson noise (specks of ~1 nm) then a photograph in one stream: had the noise frame set the photograph's
    scale (2x finer), the photograph would pass for particles there (predicted F1 0.94 with particles-stem 0.7.0)."""
    from skimage import data, transform

    from copilot.frame import Frame

    noise = np.random.default_rng(0).poisson(50, (512, 512)).astype(np.uint16)
    photo = (transform.resize(data.camera(), (512, 512)) * 60000).astype(np.uint16)
    results = []
    p = Pipeline(OrtBackend.from_name("particles-stem"), sinks=[results.append]).start()
    for i, img in enumerate((noise, photo)):
        p.submit(Arrival(origin=f"f{i}", frame=Frame(img, 0.25, stream="s", frame_id=f"f{i}", origin=f"f{i}")))
        deadline = time.monotonic() + 120
        while len(results) <= i and time.monotonic() < deadline:  # the verdict before the next frame arrives
            time.sleep(0.05)
    p.stop()
    assert [r.doc.verdict.level for r in results] == ["fail", "fail"], [r.doc.verdict for r in results]
    first_pass = p.backend.scale_policy.first_guess(Frame(photo, 0.25, stream="s", frame_id="next", origin="t"))
    assert first_pass[1] == "card scale (coarse pass)"  # the photograph failed too: the stream remembers nothing
