"""Shared fixtures: a tiny real ONNX model (a smooth threshold) with a valid card, and synthetic particle frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.card import sha256_of


def build_threshold_model(path: Path, gain: float = 8.0) -> None:
    """A real ONNX graph: bright pixels → 'particle', dark → 'background'; embedding = [mean, max] of the input."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3, "h", "w"])
    emb = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 2])
    inits = [
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        helper.make_tensor("neg_gain", TensorProto.FLOAT, [], [-gain]),
        helper.make_tensor("never", TensorProto.FLOAT, [], [-50.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("flat", TensorProto.INT64, [2], [0, -1]),
    ]
    nodes = [
        helper.make_node("Mul", ["image", "gain"], ["fg"]),
        helper.make_node("Mul", ["image", "neg_gain"], ["bg"]),
        helper.make_node("Mul", ["image", "zero"], ["z"]),
        helper.make_node("Add", ["z", "never"], ["bd"]),
        helper.make_node("Concat", ["bg", "fg", "bd"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
        helper.make_node("GlobalMaxPool", ["image"], ["gmp"]),
        helper.make_node("Concat", ["gap", "gmp"], ["pooled"], axis=1),
        helper.make_node("Reshape", ["pooled", "flat"], ["embedding"]),
    ]
    graph = helper.make_graph(nodes, "threshold", [x], [probs, emb], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture
def threshold_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "engines" / "threshold"
    folder.mkdir(parents=True)
    build_threshold_model(folder / "model.onnx")
    card = {
        "name": "threshold",
        "version": "test",
        "task": "particles",
        "class_names": ["background", "particle", "boundary"],
        "working_nm_per_px": 0.5,
        "trained_nm_per_px_range": [0.25, 1.0],
        "tiling": {"tile_px": 128, "overlap_px": 16, "multiple_of": 8},
        "outputs": {"embedding_dim": 2},
        "model_sha256": sha256_of(folder / "model.onnx"),
        "training_command": "tests/conftest.py build_threshold_model",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def disc_image(shape, centres, radius_px, background=100, signal=1000) -> np.ndarray:
    """uint16 image of bright discs on a flat background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, background, np.float32)
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2] = signal
    return img.astype(np.uint16)


@pytest.fixture
def disc_frame() -> Frame:
    centres = [(40 + 60 * i, 40 + 60 * j) for i in range(4) for j in range(4)]
    return Frame(disc_image((256, 256), centres, 12), nm_per_px=0.5, stream="test", frame_id="discs", origin="memory")


@pytest.fixture
def full_dev_shm(monkeypatch):
    """Call it to make reserving shared memory fail in this process as on a full /dev/shm (ENOSPC from
    posix_fallocate, which copilot.handoff calls before writing into a new block)."""
    import errno
    import os

    import copilot.handoff as handoff

    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here")

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return lambda: monkeypatch.setattr(handoff.os, "posix_fallocate", no_room)
