"""Run-time fall-back: a device backend that keeps failing hands over to ONNX Runtime CPU; no frame is lost."""

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.select import Candidate, RuntimeFallback, select_backend


class FlakyDevice(OrtBackend):
    """A device backend whose device fails on the frames in ``bad`` (by call number), or from call ``dead_from`` on."""

    def __init__(self, *args, bad=(), dead_from=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.name, self.bad, self.dead_from, self.calls, self.closed = "fake-cuda", set(bad), dead_from, 0, False

    def segment(self, frame):
        self.calls += 1
        if self.calls in self.bad or (self.dead_from is not None and self.calls >= self.dead_from):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().segment(frame)

    def close(self):
        self.closed = True


@pytest.fixture
def card_folder(threshold_model_dir):
    return load_card(threshold_model_dir)


def _frame(i=0, shape=(96, 96)):
    rng = np.random.default_rng(i)
    return Frame(rng.poisson(100, shape).astype(np.uint16), nm_per_px=0.5, stream="s", frame_id=f"f{i}", origin="t")


def test_isolated_device_errors_are_covered_by_the_cpu_backend(card_folder):
    card, folder = card_folder
    backend = RuntimeFallback(FlakyDevice(card, folder, bad={2, 4}), lambda: OrtBackend(card, folder), max_errors=2)
    segs = [backend.segment(_frame(i)) for i in range(6)]
    assert [s.backend for s in segs] == ["fake-cuda", "onnxruntime-cpu"] * 2 + ["fake-cuda"] * 2
    assert not backend.switched and backend.device_errors == 2 and backend.name == "fake-cuda"


def test_repeated_device_errors_switch_to_the_cpu_backend_for_good(card_folder):
    card, folder = card_folder
    device = FlakyDevice(card, folder, dead_from=3)
    backend = RuntimeFallback(device, lambda: OrtBackend(card, folder), max_errors=3)
    segs = [backend.segment(_frame(i)) for i in range(8)]
    assert [s.backend for s in segs] == ["fake-cuda"] * 2 + ["onnxruntime-cpu"] * 6
    assert backend.switched and backend.name == "onnxruntime-cpu" and device.closed
    assert device.calls == 5  # three failures, then never asked again
    assert backend.selection[-2][0] == "fake-cuda" and "3 consecutive device errors" in backend.selection[-2][1]
    assert backend.card is card  # the rest is the active backend's


def test_a_bad_frame_is_its_own_error_not_a_device_error(card_folder):
    card, folder = card_folder
    backend = RuntimeFallback(FlakyDevice(card, folder), lambda: OrtBackend(card, folder), max_errors=1)
    bad = Frame(np.zeros((0, 5), np.uint16), nm_per_px=0.5, stream="s", frame_id="empty", origin="t")
    with pytest.raises(Exception):
        backend.segment(bad)
    assert not backend.switched and backend.device_errors == 0


def test_select_wraps_device_backends_only(card_folder):
    card, folder = card_folder
    names = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda")
    table = {n: Candidate(n, lambda: "not here", lambda: None) for n in names}
    table["torch-cuda"] = Candidate("torch-cuda", lambda: None, lambda: FlakyDevice(card, folder), verify=False)
    table["onnxruntime-cpu"] = Candidate("onnxruntime-cpu", lambda: None, lambda: OrtBackend(card, folder),
                                         verify=False)
    backend = select_backend(card, folder, "auto", table=table)
    assert isinstance(backend, RuntimeFallback) and backend.name == "fake-cuda"
    assert backend.selection[-1] == ("torch-cuda", "selected")
    cpu = select_backend(card, folder, "onnxruntime-cpu", table=table)
    assert isinstance(cpu, OrtBackend)


def test_a_remote_backend_keeps_its_own_fallback_policy(card_folder):
    card, folder = card_folder
    names = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda")
    table = {n: Candidate(n, lambda: "not here", lambda: None) for n in names}
    table["onnxruntime-cpu"] = Candidate("onnxruntime-cpu", lambda: None, lambda: OrtBackend(card, folder),
                                         verify=False)
    table["triton"] = Candidate("triton", lambda: None, lambda: FlakyDevice(card, folder), verify=False)
    backend = select_backend(card, folder, "triton", table=table)
    assert isinstance(backend, FlakyDevice)  # not wrapped: the triton settings decide about local fall-back


def test_a_failed_frame_is_forgotten_by_the_device_and_the_cpu_backend():
    """The follow stage's ``forget_scale`` reaches the scale memory of whichever backend segmented the frame."""
    from copilot.sim.stem import SimParams, simulate_frame

    card, folder = load_card("particles-stem")
    image = simulate_frame(SimParams(size_px=256, nm_per_px=0.25), 0).image
    frames = [Frame(image, 0.25, stream="s", frame_id=f"f{i}", origin="t") for i in range(2)]
    device = FlakyDevice(card, folder, bad={2})
    backend = RuntimeFallback(device, lambda: OrtBackend(card, folder), max_errors=3)
    assert [backend.segment(f).backend for f in frames] == ["fake-cuda", "onnxruntime-cpu"]
    policies = (device.scale_policy, backend.fallback.scale_policy)
    assert [p.last["s"][2] for p in policies] == ["f0", "f1"]  # each remembers the frame it segmented
    backend.forget_scale("s", "f0")
    backend.forget_scale("s", "f1")
    assert all("s" not in p.last for p in policies)
