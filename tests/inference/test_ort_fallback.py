"""ONNX Runtime device sessions never fall back to the CPU silently — checked with real sessions on this CPU machine:
the Azure execution provider (in every onnxruntime wheel) cannot run a single node of these models, so every node
would silently land on the CPU."""

import numpy as np
import onnxruntime as ort
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import (DeviceFallback, OrtBackend, node_placement, open_device_session,
                                           ort_distributions, ort_tensorrt_cache, ort_tensorrt_providers)

AZURE = "AzureExecutionProvider"
needs_azure = pytest.mark.skipif(AZURE not in ort.get_available_providers(), reason="no AzureExecutionProvider")


@pytest.fixture
def card_folder(threshold_model_dir):
    return load_card(threshold_model_dir)


@needs_azure
def test_strict_session_refuses_nodes_on_the_cpu(card_folder):
    card, folder = card_folder
    with pytest.raises(RuntimeError, match=f"could not run the model on {AZURE} alone.*assigned to the default CPU"):
        OrtBackend(card, folder, providers=[AZURE, "CPUExecutionProvider"], allow_cpu_nodes=False)


@needs_azure
def test_a_device_session_whose_nodes_all_ran_on_the_cpu_is_refused_with_its_placement(card_folder):
    card, folder = card_folder
    with pytest.raises(RuntimeError, match=r"ran every node of the model on the CPU.*'CPUExecutionProvider': 10"):
        OrtBackend(card, folder, providers=[AZURE])


@needs_azure
def test_placement_is_read_from_a_profiled_run(card_folder, tmp_path):
    card, folder = card_folder
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "p")
    s = ort.InferenceSession(str(card.model_path(folder)), opts, providers=[AZURE, "CPUExecutionProvider"])
    s.run(None, {"image": np.zeros((1, 1, 8, 8), np.float32)})
    assert node_placement(s.end_profiling()) == {"CPUExecutionProvider": 10}


def test_an_unavailable_provider_is_a_clear_error(card_folder):
    card, folder = card_folder
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeError, match="has no CUDAExecutionProvider.*install onnxruntime-gpu"):
        OrtBackend(card, folder, providers=["CUDAExecutionProvider"])
    # ONNX Runtime itself, asked the same strictly, fails instead of running on the CPU
    with pytest.raises(RuntimeError, match="assigned to the default CPU EP"):
        open_device_session(str(card.model_path(folder)), ["CUDAExecutionProvider"], ort.SessionOptions,
                            np.zeros((1, 1, 8, 8), np.float32), "image", allow_cpu_nodes=False)


def test_a_session_that_changes_provider_at_run_time_is_caught(card_folder):
    card, folder = card_folder
    backend = OrtBackend(card, folder)
    assert backend.session._enable_fallback is False  # ORT's own run-time fall-back is off
    x = np.zeros((1, 1, 8, 8), np.float32)
    backend.run_batch(x)
    # what ORT's fall-back does to a session (set_providers to the fallback list), here to another provider
    other = AZURE if AZURE in ort.get_available_providers() else None
    if other is None:
        pytest.skip("no second provider to switch to")
    backend.session.set_providers([other, "CPUExecutionProvider"])
    with pytest.raises(DeviceFallback, match="moved from CPUExecutionProvider"):
        backend.run_batch(x)


def test_ort_tensorrt_engine_cache_is_keyed_by_precision(card_folder, tmp_path):
    card, _ = card_folder
    root = ort_tensorrt_cache(tmp_path, card, "x").parent
    fp16 = dict(ort_tensorrt_providers(root, card, fp16=True)[0][1])
    fp32 = dict(ort_tensorrt_providers(root, card, fp16=False)[0][1])
    assert fp16["trt_engine_cache_path"] != fp32["trt_engine_cache_path"]
    assert fp16["trt_engine_cache_prefix"] != fp32["trt_engine_cache_prefix"]
    assert fp16["trt_engine_cache_prefix"].endswith("fp16") and fp16["trt_fp16_enable"] is True
    assert fp16["trt_timing_cache_path"] == fp32["trt_timing_cache_path"]  # timings do not depend on the flag


def test_one_onnxruntime_distribution_here():
    dists = ort_distributions()
    assert len(dists) == 1 and dists[0].split("==")[1] == ort.__version__, dists


def test_packaging_selects_exactly_one_onnxruntime_distribution():
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]

    def ort(reqs):
        return [r for r in reqs if re.match(r"onnxruntime(-gpu)?\b", r)]

    extras = project["optional-dependencies"]
    assert ort(project["dependencies"]) == []  # the base chooses none: the cpu or gpu extra does
    assert [r.split("==")[0] for r in ort(extras["cpu"])] == ["onnxruntime"]
    assert [r.split("==")[0] for r in ort(extras["gpu"])] == ["onnxruntime-gpu"]
    assert all(not ort(reqs) for name, reqs in extras.items() if name not in ("cpu", "gpu"))
    assert "cpu" in (Path(__file__).resolve().parents[2] / "Makefile").read_text()
