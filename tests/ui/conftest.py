"""A real daemon (tiny threshold ONNX model, real files, real ZeroMQ) for the view tests, shared per module."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from copilot.config import load_settings
from copilot.inference.card import sha256_of
from tests.conftest import build_threshold_model

NM_PER_PX = 0.25  # the model works at 0.5 nm/px: the label mask is on a grid of 2 frame pixels


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoints() -> tuple[str, str]:
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


def write_frame(path: Path, seed: int, shape=(384, 320)) -> Path:
    """Bright discs of varied sizes (radius 9-17 px) on a noisy background; 12-16 of them, so numbers vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 100.0)
    cells = [(50 + 95 * i, 45 + 80 * j) for i in range(4) for j in range(4)]
    for k in rng.choice(len(cells), size=int(rng.integers(12, 17)), replace=False):
        cy, cx = cells[k][0] + rng.integers(-8, 9), cells[k][1] + rng.integers(-8, 9)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(9, 17) ** 2] = 1000
    img = (img + rng.normal(0, 20, shape)).clip(0, 65535).astype(np.uint16)
    tmp = path.with_suffix(".part")
    tifffile.imwrite(tmp, img, imagej=True, resolution=(1 / NM_PER_PX, 1 / NM_PER_PX), metadata={"unit": "nm"})
    tmp.rename(path)
    return path


def threshold_engine(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    build_threshold_model(folder / "model.onnx")
    card = {
        "name": "threshold", "version": "test", "task": "particles",
        "class_names": ["background", "particle", "boundary"],
        "working_nm_per_px": 0.5, "trained_nm_per_px_range": [0.25, 1.0],
        "tiling": {"tile_px": 128, "overlap_px": 16, "multiple_of": 8},
        "outputs": {"embedding_dim": 2},
        "model_sha256": sha256_of(folder / "model.onnx"),
        "training_command": "tests/conftest.py build_threshold_model",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def results_carry_frames():
    """The daemon publishes previews of ``Result.frame``; until the pipeline sets it, attach it here."""
    from copilot.result import Result

    if "frame" in getattr(Result, "__dataclass_fields__", {}):
        yield
        return
    import copilot.pipeline as pipeline

    mp = pytest.MonkeyPatch()
    original = pipeline.build_result

    def build_result(fm, *args, **kwargs):
        result = original(fm, *args, **kwargs)
        result.frame = fm.segmentation.frame
        return result

    mp.setattr(pipeline, "build_result", build_result)
    yield
    mp.undo()


class RunningDaemon:
    def __init__(self, root: Path):
        from copilot.daemon import Daemon

        self.acq = root / "acq"
        self.acq.mkdir(parents=True)
        self.pub, self.snap = endpoints()
        settings = load_settings(None, {
            "daemon": {"stream": "ui", "state_dir": str(root / "state")},
            "source": {"watch": str(self.acq), "settle_s": 0.05},
            "model": {"name": str(threshold_engine(root / "engines" / "threshold"))},
            "publish": {"pub_endpoint": self.pub, "snapshot_endpoint": self.snap},
        })
        self.daemon = Daemon(settings)
        self.thread = threading.Thread(target=self.daemon.run, kwargs={"install_signals": False}, daemon=True)
        self.thread.start()
        self.written = 0

    @property
    def endpoint(self) -> str:
        return f"{self.pub},{self.snap}"

    def write(self, n: int = 1) -> None:
        for _ in range(n):
            write_frame(self.acq / f"frame_{self.written:04d}.tif", seed=self.written)
            self.written += 1

    def wait_processed(self, n: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while self.daemon.pipeline.stats.processed < n:
            assert time.monotonic() < deadline, f"daemon processed {self.daemon.pipeline.stats.processed} of {n}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(30)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, results_carry_frames):
    d = RunningDaemon(tmp_path_factory.mktemp("ui-daemon"))
    try:
        d.write(2)
        d.wait_processed(2)
        yield d
    finally:
        d.stop()
