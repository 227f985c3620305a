"""The ``triton`` backend against a real V2 server: MLServer with the ONNX Runtime adapter (adapters/mlserver_onnx),
started on free loopback ports from a repository written by ``copilot engines export-triton --mlserver``."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from copilot.inference.network import for_batch
from copilot.inference.card import load_card
from copilot.inference.mlserver_launch import MLServer
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.triton_backend import RemoteModelError, RemoteUnavailable, TritonBackend
from copilot.inference.triton_repo import export_model, mlserver_settings, triton_version
from copilot.inference.triton_settings import TritonSettings
from copilot.inference.tiling import tile_grid
from copilot.inference.verify import validation_frames
from copilot.pipeline import Pipeline
from copilot.sources.base import Arrival

# mlserver is never imported here: it registers the same protobuf names ("inference.*") as tritonclient.grpc, so
# the two cannot share a process; the server runs in its own (test extra: mlserver, tritonclient)
MODEL = "particles-stem"


def _two_channel_onnx(path: Path) -> None:
    """A model whose input does not fit the card (2 channels), for the wrong-shape error."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 2, "h", "w"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2, "h", "w"])
    g = helper.make_graph([helper.make_node("Identity", ["image"], ["probabilities"])], "two", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def make_repo(root: Path) -> Path:
    """particles-stem (5 ms batching window), a copy with a 100 ms window (batching is then sure to happen when two
    clients send at once), and two models with a 2-channel input (declared in metadata, or not)."""
    export_model(root, MODEL, mlserver=True)
    card, _ = load_card(MODEL)
    v = triton_version(card.version)
    batched = root / f"{MODEL}-batched"
    shutil.copytree(root / MODEL, batched)
    s = mlserver_settings(card, name=batched.name, version=v, max_batch=8, max_batch_time_s=0.1)
    (batched / "model-settings.json").write_text(json.dumps(s))
    for name, declared in (("two-channel", True), ("two-channel-undeclared", False)):
        (root / name / "1").mkdir(parents=True)
        _two_channel_onnx(root / name / "1" / "model.onnx")
        s = {"name": name, "implementation": "copilot_mlserver_onnx.OnnxRuntimeModel",
             "parameters": {"uri": "./1/model.onnx", "version": "1"}}
        if declared:
            s["inputs"] = [{"name": "image", "datatype": "FP32", "shape": [-1, 2, -1, -1]}]
        (root / name / "model-settings.json").write_text(json.dumps(s))
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("v2repo"))


@pytest.fixture(scope="module")
def server(repo):
    srv = MLServer(repo).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def card_folder():
    return load_card(MODEL)


@pytest.fixture(scope="module")
def frames(card_folder):
    """Two validation tiles (512² at the working scale) and a 256² crop of each (the cheap ones for streams)."""
    from dataclasses import replace

    tiles = validation_frames(card_folder[0], n_tiles=2, n_large=0)[0]
    return tiles + [replace(f, pixels=np.ascontiguousarray(f.pixels[:256, :256]), frame_id=f"{f.frame_id}-crop")
                    for f in tiles]


@pytest.fixture(scope="module")
def local(card_folder):
    return for_batch(OrtBackend(*card_folder, threads=1, max_whole_px=2048))  # same scale whatever came before


@pytest.fixture
def make():
    """TritonBackend(...), closed after the test: a gRPC channel left open keeps reconnecting to a dead server."""
    made: list = []

    def _make(*args, **kwargs) -> TritonBackend:
        made.append(for_batch(TritonBackend(*args, **kwargs)))
        return made[-1]

    yield _make
    for e in made:
        e.close()


def _equal_fraction(a, b) -> float:
    return float((a.labels == b.labels).mean())


def test_remote_masks_equal_the_local_backend(server, card_folder, frames, local, make):
    remote = make(*card_folder, TritonSettings(url=server.grpc_url), max_whole_px=2048)
    for f in frames:
        seg = remote.segment(f)
        assert seg.backend == "triton"
        assert _equal_fraction(seg, local.segment(f)) >= 0.999
    # a frame larger than max_whole_px as overlapping tiles, 4 per request: the same blending as the local tiled run
    tiled = make(*card_folder, TritonSettings(url=server.grpc_url, tile_batch=4), max_whole_px=256)
    tiled.tile_px = 160
    ref = for_batch(OrtBackend(*card_folder, threads=1, max_whole_px=256, tile_px=160, tile_batch=4))
    big = max(frames, key=lambda f: f.pixels.size)
    assert _equal_fraction(tiled.segment(big), ref.segment(big)) >= 0.999
    n_tiles = len(tile_grid(*tiled.prepare(big)[0].shape, 160, card_folder[0].tiling.overlap_px))
    assert n_tiles > 4 and tiled.requests == -(-n_tiles // 4)
    assert remote.status()["state"] == "ok" and remote.status()["requests"] == len(frames)
    assert remote.last_server_compute_ms > 0  # the adapter reports the network's own time


def test_http_protocol_without_the_binary_extension(server, card_folder, frames, local, make):
    remote = make(*card_folder, TritonSettings(url=server.http_url, protocol="http", http_binary=False))
    f = min(frames, key=lambda f: f.pixels.size)
    assert _equal_fraction(remote.segment(f), local.segment(f)) >= 0.999


def test_two_clients_are_batched_together_by_the_server(server, card_folder, frames, local, make):
    """Two daemons' backends send at once; the server runs their requests as one batch (adaptive batching)."""
    settings = TritonSettings(url=server.grpc_url, model_name=f"{MODEL}-batched")
    backends = [make(*card_folder, settings) for _ in range(2)]
    f = min(frames, key=lambda f: f.pixels.size)
    want = local.segment(f).labels
    start = threading.Barrier(2)
    out: dict[int, list] = {0: [], 1: []}

    def client(i: int) -> None:
        start.wait()
        for _ in range(3):
            out[i].append(backends[i].segment(f).labels)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(v) == 3 for v in out.values())
    assert all((labels == want).mean() >= 0.999 for v in out.values() for labels in v)
    assert sum(e.batched_with_others for e in backends) >= 1
    assert max(e.largest_server_batch for e in backends) == 2


def test_wrong_model_name_is_a_clear_error(server, card_folder):
    with pytest.raises(RemoteModelError, match="no ready model 'nope'.*it serves: .*particles-stem"):
        TritonBackend(*card_folder, TritonSettings(url=server.grpc_url, model_name="nope"))
    card = card_folder[0]
    with pytest.raises(RemoteModelError, match="version '999'"):
        TritonBackend(*card_folder, TritonSettings(url=server.grpc_url, model_version="999"))
    assert card.name == MODEL


def test_wrong_shape_is_a_clear_error(server, card_folder, frames, make):
    with pytest.raises(RemoteModelError, match=r"input 'image' is FP32 \[-1, 2, -1, -1\]"):
        TritonBackend(*card_folder, TritonSettings(url=server.grpc_url, model_name="two-channel", model_version="1"))
    undeclared = make(*card_folder, TritonSettings(url=server.grpc_url, model_name="two-channel-undeclared",
                                                                      model_version=""))
    with pytest.raises(RemoteModelError, match="shape .*the model takes"):
        undeclared.segment(frames[0])


def _stream(frames, n: int):
    """n frames of one stream with distinct ids (the validation tiles, repeated)."""
    from dataclasses import replace

    small = [f for f in frames if f.pixels.size == min(g.pixels.size for g in frames)]
    return [replace(small[i % len(small)], frame_id=f"f{i:03d}") for i in range(n)]



@pytest.fixture
def own_server(tmp_path):
    """A server this test may kill and restart (same ports)."""
    export_model(tmp_path / "repo", MODEL, mlserver=True)
    srv = MLServer(tmp_path / "repo").start()
    yield srv
    srv.stop()


def test_server_killed_mid_stream_frames_wait_and_none_are_lost(own_server, card_folder, frames, make):
    backend = make(*card_folder, TritonSettings(url=own_server.grpc_url, backoff_s=0.1, backoff_max_s=0.5,
                                                       max_wait_s=120))
    got: list = []
    pipe = Pipeline(backend, stream="s", sinks=[got.append]).start()
    stream = _stream(frames, 5)
    for f in stream[:2]:
        pipe.submit(Arrival(origin=f.frame_id, frame=f))
    while len(got) < 2:
        threading.Event().wait(0.05)
    own_server.kill()
    for f in stream[2:]:
        pipe.submit(Arrival(origin=f.frame_id, frame=f))
    while backend.status()["state"] != "down":  # the next frame is waiting for the server
        threading.Event().wait(0.05)
    own_server.start()
    pipe.stop()
    assert [r.doc.frame_id for r in got] == [f.frame_id for f in stream]
    assert pipe.stats.failed == 0 and all(r.doc.model.backend == "triton" for r in got)
    st = backend.status()
    assert st["state"] == "ok" and st["retries"] >= 1


def test_server_down_falls_back_to_local_only_when_configured(own_server, card_folder, frames, make):
    s = TritonSettings(url=own_server.grpc_url, fallback="local", retries=1, backoff_s=0.05, recheck_s=0.2)
    backend = make(*card_folder, s, local=lambda: OrtBackend(*card_folder, threads=1))
    f = _stream(frames, 1)[0]
    assert backend.segment(f).backend == "triton"
    own_server.kill()
    seg = backend.segment(f)
    assert seg.backend == "onnxruntime-cpu (fallback: triton unavailable)"
    assert backend.status()["state"] == "fallback" and backend.fallbacks == 1
    own_server.start()
    back = None
    for _ in range(100):  # every recheck_s a frame tries the server again; the first answer ends the fallback
        threading.Event().wait(0.2)
        if (back := backend.segment(f).backend) == "triton":
            break
    assert back == "triton" and backend.status()["state"] == "ok"
    # without a fallback, a frame that cannot wait long enough fails with a clear error
    own_server.kill()
    strict = make(*card_folder, TritonSettings(url=own_server.grpc_url, max_wait_s=0.3, backoff_s=0.1))
    with pytest.raises(RemoteUnavailable, match="attempt"):
        strict.segment(f)
    assert strict.status()["state"] == "down"


def test_select_registers_triton_and_never_falls_back_silently(server, card_folder):
    from copilot.inference.select import load_backend

    backend = load_backend(MODEL, "triton", triton=TritonSettings(url=server.grpc_url, verify=False))
    assert isinstance(backend, TritonBackend) and backend.selection[-1] == ("triton", "selected")
    backend.close()
    with pytest.raises(RuntimeError, match="backend triton unavailable.*nope"):
        load_backend(MODEL, "triton", triton=TritonSettings(url=server.grpc_url, model_name="nope"))
    chosen = load_backend(MODEL, "triton", triton=TritonSettings(url=server.grpc_url, model_name="nope",
                                                                 fallback="local"))
    assert chosen.name == "onnxruntime-cpu"


def test_daemon_configured_for_triton_reports_its_state(server, tmp_path):
    """The config path a user takes: [model] backend = "triton" + [triton] (verification: the next test, on fewer
    frames than the card's validation set, which costs half a minute through MLServer on a busy CPU)."""
    from copilot.config import load_settings
    from copilot.daemon import Daemon

    (tmp_path / "acq").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[source]\nwatch = "{tmp_path / "acq"}"\n'
                   f'[model]\nname = "{MODEL}"\nbackend = "triton"\n'
                   f'[triton]\nurl = "{server.grpc_url}"\nverify = false\n'
                   '[publish]\npub_endpoint = "tcp://127.0.0.1:*"\nsnapshot_endpoint = "tcp://127.0.0.1:*"\n')
    daemon = Daemon(load_settings(cfg))
    try:
        assert isinstance(daemon.backend, TritonBackend)
        assert daemon.backend.selection[-1] == ("triton", "selected")
        st = daemon.status()
        assert st["backend"] == "triton" and st["backend_status"]["state"] == "ok"
    finally:
        daemon.backend.close()
        daemon.exports.close()
        daemon.publisher.close()
        daemon.store.close()


def test_verification_of_the_remote_backend_against_onnxruntime_cpu(server, card_folder, frames, local, make):
    """What select does for backend = "triton" with verify = true, on the small frames."""
    from copilot.inference.verify import require_agreement

    remote = make(*card_folder, TritonSettings(url=server.grpc_url))
    v = require_agreement(remote, local, [f for f in frames if f.frame_id.endswith("-crop")])
    assert v.accepted and v.miou >= 0.999
