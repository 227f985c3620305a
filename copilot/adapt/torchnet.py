"""The shipped model as a trainable torch network (fused form: convolutions with biases, no BatchNorm), and back."""

from __future__ import annotations

from pathlib import Path

from copilot.errors import UserError


def require_torch():
    """torch, or a one-line error naming the extra that brings it."""
    try:
        import torch
    except ImportError:
        raise UserError("adaptation needs torch: pip install 'copilot[train]' (the train extra)") from None
    return torch


def pick_device(device: str = "auto") -> str:
    """``auto``: the first CUDA GPU when torch sees one, else the CPU."""
    torch = require_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def trainable_from_onnx(onnx_path: Path):
    """A fused TinyUNet holding ``onnx_path``'s weights (``copilot.inference.weights``), in train mode on the CPU."""
    torch = require_torch()
    from copilot.inference.torch_backend import build_fused_unet
    from copilot.inference.weights import onnx_to_tensors

    tensors, meta = onnx_to_tensors(onnx_path)
    channels = tuple(int(c) for c in meta["channels"].split(","))
    net = build_fused_unet(channels, int(meta["n_classes"]), int(meta.get("in_channels", 1)))
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    return net


def d4(x, k: int, flip: bool):
    """One of the 8 symmetries of the square on the last two axes; :func:`d4_inverse` undoes it."""
    torch = require_torch()
    x = torch.rot90(x, k, (-2, -1)) if k else x
    return torch.flip(x, (-1,)) if flip else x


def d4_inverse(x, k: int, flip: bool):
    torch = require_torch()
    x = torch.flip(x, (-1,)) if flip else x
    return torch.rot90(x, -k, (-2, -1)) if k else x
