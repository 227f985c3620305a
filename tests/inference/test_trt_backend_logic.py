"""TensorRTBackend's own logic without a GPU: a fake plan description and fake CUDA memory, with ONNX Runtime doing the
arithmetic (tests/inference/fake_tensorrt.py). TensorRT's and CUDA's own behaviour is checked by the `gpu` tests."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.trt_backend import (BuildProgress, PerThreadDevice, TensorRTBackend, _set_timing_cache,
                                           check_io_tensors, checked)
from copilot.inference.trt_plan import default_profiles, plan_run, shape_classes
from copilot.inference.verify import frames_for, verify_backend
from tests.inference.fake_tensorrt import FAKE_TRT, FakeCuda, FakeCudaEngine, TensorIOMode


@pytest.fixture
def card_folder(threshold_model_dir):
    return load_card(threshold_model_dir)


def _backend(card, folder, cuda=None, profiles=None, io=None):
    profiles = profiles or default_profiles(card.tiling.tile_px, card.tiling.multiple_of, tile_batch=2)
    cuda = cuda or FakeCuda()
    desc = FakeCudaEngine(card, folder, profiles, cuda, io=io)
    return TensorRTBackend(card, folder, "fake.plan", profiles, cuda=cuda, trt=FAKE_TRT, cuda_engine=desc), desc, cuda


def test_tensor_names_are_checked_against_the_card(card_folder):
    card, folder = card_folder
    good = FakeCudaEngine(card, folder, default_profiles(128, 8), FakeCuda())
    check_io_tensors(good, card, FAKE_TRT)
    renamed = {"input": TensorIOMode.INPUT, "probabilities": TensorIOMode.OUTPUT, "embedding": TensorIOMode.OUTPUT}
    with pytest.raises(ValueError, match=r"'image' missing.*unexpected 'input'"):
        check_io_tensors(FakeCudaEngine(card, folder, default_profiles(128, 8), FakeCuda(), io=renamed), card,
                         FAKE_TRT)
    swapped = {"image": TensorIOMode.INPUT, "probabilities": TensorIOMode.INPUT, "embedding": TensorIOMode.OUTPUT}
    with pytest.raises(ValueError, match="'probabilities' is TensorIOMode.INPUT, expected TensorIOMode.OUTPUT"):
        check_io_tensors(FakeCudaEngine(card, folder, default_profiles(128, 8), FakeCuda(), io=swapped), card,
                         FAKE_TRT)


def test_a_plan_with_other_names_is_refused_and_frees_everything(card_folder):
    card, folder = card_folder
    renamed = {"input": TensorIOMode.INPUT, "probabilities": TensorIOMode.OUTPUT, "embedding": TensorIOMode.OUTPUT}
    cuda = FakeCuda()
    with pytest.raises(ValueError, match="do not match card.json"):
        _backend(card, folder, cuda=cuda, io=renamed)
    assert cuda.mem == {} and cuda.streams == []


@pytest.mark.parametrize("fail_at", [1, 2, 4, 7])
def test_failure_part_way_through_initialisation_frees_buffers_and_stream(card_folder, fail_at):
    card, folder = card_folder
    cuda = FakeCuda(fail_at_alloc=fail_at)
    with pytest.raises(RuntimeError, match="out of memory"):
        _backend(card, folder, cuda=cuda)
    assert cuda.allocations == fail_at and cuda.mem == {} and cuda.streams == []


def test_contexts_share_one_activation_buffer_and_one_set_of_io_buffers(card_folder):
    card, folder = card_folder
    backend, desc, cuda = _backend(card, folder)
    memories = {ctx.memory for ctx in desc.contexts}
    assert len(desc.contexts) == 3 and len(memories) == 1
    assert memories.pop()[1] == 3000  # the largest profile's requirement, allocated once
    assert len(cuda.mem) == 1 + 2 * 3  # activation buffer + pinned/device pairs for input, probabilities, embedding
    backend.close()
    assert cuda.mem == {} and cuda.streams == []


def test_every_shape_class_runs_on_its_profile_and_verifies(card_folder):
    card, folder = card_folder
    backend, desc, _ = _backend(card, folder)
    classes = shape_classes(backend.profiles, card.tiling.multiple_of)
    assert set(classes) == {("whole", 0), ("whole", 1), ("whole", 2), ("tiled", 2)}
    frames, src = frames_for(backend, card, n_tiles=1)
    assert sorted({f.shape[0] for f in frames}) == sorted({card.tiling.tile_px, *classes.values()})
    v = verify_backend(backend, OrtBackend(card, folder), frames, frames_from=src)
    assert v.accepted and v.miou == 1.0 and v.embedding_diff < 1e-5, v.message
    assert all(ctx.runs for ctx in desc.contexts)  # every profile ran
    tiled = desc.contexts[2].runs
    assert (2, 1, 512, 512) in tiled  # the tiled path sends tile_batch tiles per call, the batch profile 2 is tuned for
    for (mode, profile), edge in classes.items():
        assert plan_run(backend.profiles, edge, edge, card.tiling.multiple_of).profile == profile


def test_rejected_shapes_and_addresses_are_errors_not_garbage(card_folder):
    card, folder = card_folder
    backend, desc, _ = _backend(card, folder)
    x = np.zeros((1, 1, 64, 64), np.float32)
    probs, emb = backend.run_batch(x)
    assert probs.shape == (1, 3, 64, 64) and emb.shape == (1, 2)
    desc.contexts[0].reject_shapes = True
    with pytest.raises(RuntimeError, match="TensorRT rejected input shape"):
        backend.run_batch(x)
    desc.contexts[0].reject_shapes, desc.contexts[0].reject_addresses = False, True
    with pytest.raises(RuntimeError, match="TensorRT rejected the address of 'image'"):
        backend.run_batch(x)
    with pytest.raises(ValueError, match="no optimization profile"):
        backend.run_batch(np.zeros((3, 1, 64, 64), np.float32))


def test_the_device_is_set_in_the_thread_that_runs_inference(card_folder):
    card, folder = card_folder
    backend, _, cuda = _backend(card, folder)
    loaded_in = list(cuda.device_threads)
    t = threading.Thread(target=backend.run_batch, args=(np.zeros((1, 1, 64, 64), np.float32),), name="backend-thread")
    t.start()
    t.join()
    backend.run_batch(np.zeros((1, 1, 64, 64), np.float32))
    assert cuda.device_threads.count("backend-thread") == 1
    assert cuda.device_threads.count(threading.current_thread().name) == 1 + loaded_in.count(
        threading.current_thread().name)


def test_per_thread_device_calls_once_per_thread():
    calls = []
    device = PerThreadDevice(lambda: calls.append(threading.current_thread().name))
    for _ in range(3):
        device.ensure()
    threads = [threading.Thread(target=device.ensure, name=f"t{i}") for i in range(2)]
    for t in threads:
        t.start()
        t.join()
    assert sorted(calls) == sorted([threading.current_thread().name, "t0", "t1"])


def test_progress_display_errors_never_cancel_the_build():
    class Broken:
        def add_task(self, *a, **k):
            return 1

        def update(self, *a, **k):
            raise KeyError("task vanished")

        def remove_task(self, *a):
            raise AssertionError("display stopped after the first error")

    display = BuildProgress(Broken())
    display.phase_start("Building", None, 4)
    assert display.step_complete("Building", 0) is True
    assert isinstance(display.error, KeyError)
    assert display.step_complete("Building", 1) is True
    display.phase_finish("Building")  # no-op after the error


class FakeConfig:
    def __init__(self, accept_stored: bool, accept_empty: bool = True):
        self.accept_stored, self.accept_empty, self.cache = accept_stored, accept_empty, None

    def create_timing_cache(self, data: bytes):
        return SimpleNamespace(data=data)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        ok = self.accept_stored if cache.data else self.accept_empty
        if ok:
            self.cache = cache
        return ok


def test_a_rejected_timing_cache_is_replaced_by_an_empty_one():
    cfg = FakeConfig(accept_stored=True)
    _set_timing_cache(cfg, b"stored")
    assert cfg.cache.data == b"stored"
    cfg = FakeConfig(accept_stored=False)
    _set_timing_cache(cfg, b"stored by another TensorRT")
    assert cfg.cache.data == b""
    with pytest.raises(RuntimeError, match="rejected an empty timing cache"):
        _set_timing_cache(FakeConfig(accept_stored=False, accept_empty=False), b"")


def test_checked():
    checked(True, "x")
    for bad in (False, None):
        with pytest.raises(RuntimeError, match="TensorRT rejected x"):
            checked(bad, "x")


def test_whole_frames_are_reduced_where_the_output_lies(card_folder):
    pytest.importorskip("torch")
    from copilot.inference.torch_backend import DeviceSegmentation
    from copilot.reliability.features import entropy_map
    from tests.inference.fake_tensorrt import ReducingFakeCuda

    card, folder = card_folder
    backend, _, _ = _backend(card, folder, cuda=ReducingFakeCuda())
    frames, _ = frames_for(backend, card, n_tiles=1)
    ref = OrtBackend(card, folder)
    for frame in frames:
        seg = backend.segment(frame)
        mode = backend.run_path(*seg.probabilities.shape[1:])[0]
        assert isinstance(seg, DeviceSegmentation) == (mode == "whole")
        np.testing.assert_array_equal(seg.labels, seg.probabilities.argmax(0))
        np.testing.assert_allclose(seg.confidence, seg.probabilities.max(0), rtol=1e-6)
        if mode == "whole":
            np.testing.assert_allclose(seg.entropy, entropy_map(seg.probabilities), atol=1e-5)
        np.testing.assert_array_equal(seg.labels, ref.segment(frame).labels)
