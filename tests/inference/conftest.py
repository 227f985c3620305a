"""Fixtures for the backend tests: a tiny real TinyUNet exported to ONNX (with non-trivial BatchNorm statistics, so
the BN folding is exercised) and its card; skipped where torch is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copilot.inference.card import sha256_of


@pytest.fixture(scope="session")
def unet_model_dir(tmp_path_factory) -> Path:
    return _tiny_unet_engine(tmp_path_factory, "tiny-unet")


@pytest.fixture(scope="session")
def s2d_model_dir(tmp_path_factory) -> Path:
    """The same kind of engine on 2 × 2 pixel blocks (``TinyUNet(space_to_depth=2)``)."""
    return _tiny_unet_engine(tmp_path_factory, "tiny-unet-s2d", space_to_depth=2)


def _tiny_unet_engine(tmp_path_factory, name: str, space_to_depth: int = 1) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from copilot.train.export import export_onnx
    from copilot.train.unet import TinyUNet

    torch.manual_seed(0)
    net = TinyUNet(n_classes=3, channels=(4, 8, 16), space_to_depth=space_to_depth)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        net.head.weight.mul_(8.0)  # confident classes, so arg-max masks are stable under float noise
    folder = tmp_path_factory.mktemp("engines") / name
    export_onnx(net.eval(), folder / "model.onnx")
    card = {
        "name": name,
        "version": "test",
        "task": "particles",
        "class_names": ["background", "particle", "boundary"],
        "working_nm_per_px": 0.5,
        "trained_nm_per_px_range": [0.25, 1.0],
        "tiling": {"tile_px": 64, "overlap_px": 8, "multiple_of": net.multiple_of},
        "outputs": {"embedding_dim": 16},
        "model_sha256": sha256_of(folder / "model.onnx"),
        "training_command": "tests/inference/conftest.py unet_model_dir",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder
