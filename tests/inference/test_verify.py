"""Verification of new backends against ONNX Runtime CPU, the plan-cache rule, and fallback — with ONNX Runtime
standing in for TensorRT."""

import json

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.select import Candidate, select_backend
from copilot.inference.verify import (BackendRefused, load_verified_build, mean_iou, validation_frames,
                                      verify_backend)


class ShiftedBackend(OrtBackend):
    """A broken backend: its probabilities are shifted by a few pixels (a wrong stride, a bad reformat)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "shifted"

    def run_batch(self, x):
        probs, emb = super().run_batch(x)
        return np.roll(probs, 3, axis=(2, 3)), emb


class NoisyBackend(OrtBackend):
    """A healthy reduced-precision backend: tiny differences in the probabilities (fp16-like)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "noisy"

    def run_batch(self, x):
        probs, emb = super().run_batch(x)
        noise = np.random.default_rng(0).normal(0, 1e-4, probs.shape).astype(np.float32)
        return probs + noise, emb


@pytest.fixture
def card_folder(threshold_model_dir):
    return load_card(threshold_model_dir)


@pytest.fixture
def frames(card_folder):
    card, _ = card_folder
    return validation_frames(card, n_tiles=4, n_large=1)[0]


def test_validation_frames_are_deterministic_simulated_tiles(card_folder):
    card, _ = card_folder
    a, src = validation_frames(card, n_tiles=3, n_large=1)
    b, _ = validation_frames(card, n_tiles=3, n_large=1)
    assert src == "copilot.sim"
    assert [f.shape for f in a] == [(128, 128)] * 3 + [(320, 320)]
    assert all(f.nm_per_px == card.working_nm_per_px for f in a)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.pixels, fb.pixels)
    discs, src = validation_frames(card, n_tiles=2, n_large=0, use_sim=False)
    assert src == "discs" and discs[0].pixels.dtype == np.uint16 and discs[0].pixels.std() > 0


def test_mean_iou():
    a = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    assert mean_iou(a, a, 3) == 1.0
    assert mean_iou(a, np.zeros_like(a), 3) == pytest.approx((3 / 8) / 3)
    assert mean_iou(np.zeros(4, int), np.zeros(4, int), 3) == 1.0  # absent classes are skipped


def test_identical_backend_is_accepted(card_folder, frames):
    card, folder = card_folder
    v = verify_backend(OrtBackend(card, folder, max_whole_px=64), OrtBackend(card, folder), frames)
    assert v.accepted and v.miou == 1.0 and v.n_frames == 5  # tiled candidate vs whole-frame reference
    assert "accepted" in v.message


def test_small_numeric_differences_are_accepted(card_folder, frames):
    card, folder = card_folder
    v = verify_backend(NoisyBackend(card, folder), OrtBackend(card, folder), frames)
    assert v.accepted and v.miou > 0.99 and 0 < v.max_abs_prob_diff < 1e-3


def test_perturbed_backend_is_refused_with_a_clear_message(card_folder, frames):
    card, folder = card_folder
    v = verify_backend(ShiftedBackend(card, folder), OrtBackend(card, folder), frames)
    assert not v.accepted and v.miou < 0.99
    assert "shifted REFUSED" in v.message and "mIoU" in v.message and "threshold 0.99" in v.message


def _build_rule(tmp_path, card, folder, backend_cls, frames):
    calls = {"build": 0, "load": 0, "reference": 0}
    artifact = tmp_path / "x.plan"

    def build():
        calls["build"] += 1
        artifact.write_bytes(b"plan")

    def load(path):
        calls["load"] += 1
        return backend_cls(card, folder)

    def reference():
        calls["reference"] += 1
        return OrtBackend(card, folder)

    kwargs = dict(artifact=artifact, record_path=tmp_path / "x.json", key={"precision": "fp16", "profiles": [(1, 2)]},
                  build=build, load=load, reference=reference, frames=frames)
    return calls, kwargs


def test_new_build_is_verified_then_cached_without_reverification(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, NoisyBackend, frames)
    backend, v = load_verified_build(**kw)
    assert v.accepted and calls == {"build": 1, "load": 1, "reference": 1}
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["verification"]["accepted"] and record["key"]["precision"] == "fp16"
    backend, v = load_verified_build(**kw)  # next start: cached and verified
    assert v is None and calls == {"build": 1, "load": 2, "reference": 1}
    backend, v = load_verified_build(**{**kw, "rebuild": True})
    assert v.accepted and calls["build"] == 2
    backend, v = load_verified_build(**{**kw, "key": {"precision": "fp32"}})  # another key: a new build
    assert calls["build"] == 3


def test_refused_build_is_recorded_and_not_rebuilt_on_every_start(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, ShiftedBackend, frames)
    with pytest.raises(BackendRefused, match="REFUSED.*falling back") as info:
        load_verified_build(**kw)
    assert info.value.verification.miou < 0.99
    assert not json.loads((tmp_path / "x.json").read_text())["verification"]["accepted"]
    with pytest.raises(BackendRefused, match="refused when it was built"):
        load_verified_build(**kw)
    assert calls["build"] == 1 and calls["reference"] == 1


def _table(card, folder, **builds):
    names = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda")
    table = {n: Candidate(n, lambda: "not on this machine", lambda: None) for n in names}
    for n, build in builds.items():
        table[n.replace("_", "-")] = Candidate(n, lambda: None, build)
    table["onnxruntime-cpu"] = Candidate("onnxruntime-cpu", lambda: None, lambda: OrtBackend(card, folder),
                                         verify=False)
    return table


def test_auto_falls_back_past_a_refused_backend(card_folder, monkeypatch):
    card, folder = card_folder
    import copilot.inference.verify as verify

    small = validation_frames(card, n_tiles=3, n_large=0)
    monkeypatch.setattr(verify, "validation_frames", lambda c, **k: small)

    def broken():
        raise RuntimeError("CUDA driver too old")

    table = _table(card, folder, tensorrt=lambda: ShiftedBackend(card, folder), onnxruntime_cuda=broken,
                   torch_cuda=lambda: NoisyBackend(card, folder))
    backend = select_backend(card, folder, "auto", table=table)
    assert backend.name == "noisy"
    outcomes = dict(backend.selection)
    assert outcomes["tensorrt"].startswith("refused:") and "mIoU" in outcomes["tensorrt"]
    assert outcomes["onnxruntime-tensorrt"] == "skipped: not on this machine"
    assert outcomes["onnxruntime-cuda"] == "failed to load: RuntimeError: CUDA driver too old"
    assert outcomes["torch-cuda"].startswith("selected (verified: mIoU")
    assert "onnxruntime-cpu" not in outcomes


def test_requested_backend_that_is_refused_falls_back_to_cpu(card_folder, monkeypatch):
    card, folder = card_folder
    import copilot.inference.verify as verify

    small = validation_frames(card, n_tiles=3, n_large=0)
    monkeypatch.setattr(verify, "validation_frames", lambda c, **k: small)
    table = _table(card, folder, tensorrt=lambda: ShiftedBackend(card, folder))
    backend = select_backend(card, folder, "tensorrt", table=table)
    assert backend.name == "onnxruntime-cpu"
    assert backend.selection[0][1].startswith("refused:") and backend.selection[-1] == ("onnxruntime-cpu",
                                                                                        "selected (fallback)")
    with pytest.raises(RuntimeError, match="backend tensorrt unavailable: refused"):
        select_backend(card, folder, "tensorrt", table=table, strict=True)


class EmbeddingOffsetBackend(OrtBackend):
    """Masks exactly right, embedding off by ``offset`` (an FP16 mean gone wrong)."""

    def __init__(self, *args, offset=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.name, self.offset = "embedding-offset", offset

    def run_batch(self, x):
        probs, emb = super().run_batch(x)
        return probs, emb + self.offset


def test_embedding_difference_is_judged(card_folder, frames):
    card, folder = card_folder
    ref = OrtBackend(card, folder)
    bad = verify_backend(EmbeddingOffsetBackend(card, folder, offset=0.5), ref, frames)
    assert not bad.accepted and bad.miou == 1.0 and bad.embedding_diff > bad.embedding_tolerance
    assert "EXCEEDED" in bad.message
    ok = verify_backend(EmbeddingOffsetBackend(card, folder, offset=0.01), ref, frames)
    assert ok.accepted and 0 < ok.embedding_diff < ok.embedding_tolerance


def test_load_errors_are_retried_and_never_recorded_as_refusals(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, NoisyBackend, frames)
    failures = iter([RuntimeError("CUDA error: out of memory")])

    def flaky_load(path):
        calls["load"] += 1
        err = next(failures, None)
        if err:
            raise err
        return NoisyBackend(card, folder)

    backend, v = load_verified_build(**{**kw, "load": flaky_load, "retry_delay_s": 0})
    assert v.accepted and calls["build"] == 1 and calls["load"] == 2
    assert json.loads((tmp_path / "x.json").read_text())["verification"]["accepted"]


def test_a_load_failure_after_a_good_build_keeps_the_build(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, NoisyBackend, frames)

    def broken_load(path):
        calls["load"] += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="failed 2 times.*illegal memory access"):
        load_verified_build(**{**kw, "load": broken_load, "attempts": 2, "retry_delay_s": 0})
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["verification"] is None and "illegal memory access" in record["last_error"]
    assert calls == {"build": 1, "load": 2, "reference": 0}
    backend, v = load_verified_build(**kw)  # next start: the plan is there, only verified — not rebuilt
    assert v.accepted and calls["build"] == 1
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["verification"]["accepted"] and "last_error" not in record


def test_errors_while_verifying_are_not_refusals(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, NoisyBackend, frames)

    class Crashing(NoisyBackend):
        def run_batch(self, x):
            raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        load_verified_build(**{**kw, "load": lambda p: Crashing(card, folder), "attempts": 2, "retry_delay_s": 0})
    assert json.loads((tmp_path / "x.json").read_text())["verification"] is None
    backend, v = load_verified_build(**kw)
    assert v.accepted and calls["build"] == 1


def test_a_cached_plan_is_rechecked_and_refused_when_it_no_longer_agrees(tmp_path, card_folder, frames):
    card, folder = card_folder
    calls, kw = _build_rule(tmp_path, card, folder, NoisyBackend, frames)
    load_verified_build(**kw)
    backend, v = load_verified_build(**{**kw, "recheck_frames": frames[:2]})
    assert v.accepted and v.n_frames == 2 and calls["build"] == 1
    with pytest.raises(BackendRefused, match="REFUSED"):
        load_verified_build(**{**kw, "recheck_frames": frames[:2], "load": lambda p: ShiftedBackend(card, folder)})
    assert not json.loads((tmp_path / "x.json").read_text())["verification"]["accepted"]
    with pytest.raises(BackendRefused, match="refused when it was built"):
        load_verified_build(**kw)
    assert calls["build"] == 1
