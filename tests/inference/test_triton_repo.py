"""`copilot engines export-triton`: a model repository Triton's own config parser accepts; the [triton] config."""

from __future__ import annotations

import json

import pytest

from copilot.cli import main
from copilot.inference.card import load_card
from copilot.inference.triton_repo import triton_version

MODEL = "particles-stem"


def parse_config(path):
    """Triton's ModelConfig protobuf (shipped in tritonclient) parses the text format exactly as the server does."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_writes_a_versioned_repository_triton_can_parse(tmp_path, capsys):
    assert main(["engines", "export-triton", str(tmp_path / "repo"), "--model", MODEL, "--gpu", "--instances", "2",
                 "--mlserver", "--state-dir", str(tmp_path / "state")]) == 0
    card, folder = load_card(MODEL)
    model = tmp_path / "repo" / MODEL
    version = triton_version(card.version)
    assert (model / version / "model.onnx").read_bytes() == (folder / "model.onnx").read_bytes()
    assert json.loads((model / "card.json").read_text())["version"] == card.version
    c = parse_config(model / "config.pbtxt")
    assert (c.name, c.platform, c.max_batch_size) == (MODEL, "onnxruntime_onnx", 8)
    assert c.HasField("dynamic_batching") and c.dynamic_batching.max_queue_delay_microseconds > 0
    assert c.instance_group[0].kind == c.instance_group[0].KIND_GPU and c.instance_group[0].count == 2
    assert [(t.name, list(t.dims)) for t in c.input] == [("image", [1, -1, -1])]
    assert [(t.name, list(t.dims)) for t in c.output] == [("probabilities", [3, -1, -1]), ("embedding", [64])]
    assert c.parameters["card_version"].string_value == card.version
    ms = json.loads((model / "model-settings.json").read_text())
    assert ms["parameters"]["uri"] == f"./{version}/model.onnx" and ms["max_batch_size"] == 8
    assert not (tmp_path / "repo" / f"{MODEL}-trt").exists()  # no verified TensorRT plan cached
    assert f"version {version}" in capsys.readouterr().out


def test_a_verified_tensorrt_plan_gets_a_tensorrt_plan_variant(tmp_path):
    card, _ = load_card(MODEL)
    plans = tmp_path / "state" / "engines" / MODEL / card.model_sha256[:12]
    plans.mkdir(parents=True)
    (plans / "trt10-h200-sm90-fp16-abc.plan").write_bytes(b"plan bytes")
    (plans / "trt10-h200-sm90-fp16-abc.json").write_text(json.dumps(
        {"key": {"onnx_sha256": card.model_sha256}, "verification": {"accepted": True, "miou": 0.995}}))
    assert main(["engines", "export-triton", str(tmp_path / "repo"), "--model", MODEL,
                 "--state-dir", str(tmp_path / "state")]) == 0
    trt = tmp_path / "repo" / f"{MODEL}-trt"
    c = parse_config(trt / "config.pbtxt")
    assert c.platform == "tensorrt_plan" and c.instance_group[0].kind == c.instance_group[0].KIND_GPU
    assert (trt / triton_version(card.version) / "model.plan").read_bytes() == b"plan bytes"


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["engines", "export-triton", str(tmp_path / "r"), "--model", "no-such-model"]) == 2
    assert main(["engines", "export-triton", str(tmp_path / "r"), "--max-batch", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no model 'no-such-model'" in err[0]


def test_triton_version_mapping():
    assert triton_version("0.2.0") == "2000" and triton_version("2.0") == "2000000"
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        triton_version("test")


def test_triton_config_section(tmp_path):
    from copilot.config import ConfigError, load_settings

    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nbackend = "triton"\n[triton]\nurl = "gpu:8001"\nfallback = "local"\n')
    s = load_settings(cfg)
    assert s.model.backend == "triton" and s.triton.url == "gpu:8001" and s.triton.fallback == "local"
    cfg.write_text('[triton]\nurll = "gpu:8001"\n')
    with pytest.raises(ConfigError, match="triton.urll"):
        load_settings(cfg)


def test_an_unreachable_http_server_is_unavailable_not_a_model_error():
    from copilot.inference.triton_backend import RemoteUnavailable, TritonBackend
    from copilot.inference.triton_settings import TritonSettings
    from copilot.inference.verify import validation_frames

    card, folder = load_card(MODEL)
    e = TritonBackend(card, folder, TritonSettings(url="127.0.0.1:1", protocol="http", max_wait_s=0.3, backoff_s=0.1,
                                                   connect_timeout_s=0.5))
    assert e.status()["state"] == "down"
    with pytest.raises(RemoteUnavailable):
        e.segment(validation_frames(card, n_tiles=1, n_large=0)[0][0])
