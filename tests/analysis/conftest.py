"""A grains "model" for tests: a real ONNX graph calling dark pixels boundaries (an etched micrograph's grooves)."""

import json
from pathlib import Path

import pytest

from copilot.inference.card import sha256_of


def build_dark_line_model(path: Path, gain: float = 6.0, offset: float = -1.0) -> None:
    """Two classes: 'grain' for bright pixels, 'boundary' below ``-offset / gain`` of the normalized input;
    embedding = [mean, max] of the input."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2, "h", "w"])
    emb = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 2])
    inits = [helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
             helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
             helper.make_tensor("flat", TensorProto.INT64, [2], [0, -1])]
    nodes = [
        helper.make_node("Mul", ["image", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["grain"]),
        helper.make_node("Neg", ["grain"], ["boundary"]),
        helper.make_node("Concat", ["grain", "boundary"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
        helper.make_node("GlobalMaxPool", ["image"], ["gmp"]),
        helper.make_node("Concat", ["gap", "gmp"], ["pooled"], axis=1),
        helper.make_node("Reshape", ["pooled", "flat"], ["embedding"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "dark-lines", [x], [probs, emb], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture
def grains_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "engines" / "dark-lines"
    folder.mkdir(parents=True)
    build_dark_line_model(folder / "model.onnx")
    card = {
        "name": "dark-lines", "version": "test", "task": "grains", "class_names": ["grain", "boundary"],
        "working_nm_per_px": 250.0, "trained_nm_per_px_range": [125.0, 500.0],
        "tiling": {"tile_px": 256, "overlap_px": 16, "multiple_of": 8}, "outputs": {"embedding_dim": 2},
        "model_sha256": sha256_of(folder / "model.onnx"), "training_command": "tests/analysis/conftest.py",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder
