"""The torch engine: the card's network in PyTorch (CPU or CUDA), weights from safetensors — never a pickle.

The network definition is ``copilot.train.unet.TinyUNet`` with its BatchNorms folded into the convolutions (what the
ONNX export holds); weights come from ``engines/<name>/model.safetensors`` when present and made for this
``model.onnx`` (metadata ``onnx_sha256``), otherwise they are converted once from the ONNX initializers
(:mod:`copilot.inference.weights`) into ``<state_dir>/engines/<name>/``.

Options: ``dtype`` float32 / float16 (CUDA only) / bfloat16, ``channels_last`` memory format, ``compile``
(``torch.compile``; the first frames of each new shape pay the compile). Probabilities are computed in float32
from the logits whatever the compute dtype, so argmax labels are comparable with ONNX Runtime's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkEngine

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


def build_fused_unet(channels: tuple[int, ...], n_classes: int, in_channels: int = 1):
    """A TinyUNet whose block convolutions carry a bias and whose BatchNorms are identities (the exported form)."""
    from torch import nn

    from copilot.train.unet import TinyUNet

    net = TinyUNet(n_classes=n_classes, channels=tuple(channels), in_channels=in_channels)
    for seq in [*net.downs, *net.ups]:
        for i, layer in enumerate(seq):
            if isinstance(layer, nn.Conv2d) and layer.bias is None:
                seq[i] = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding,
                                   bias=True)
            elif isinstance(layer, nn.BatchNorm2d):
                seq[i] = nn.Identity()
    return net.eval()


def load_safetensors_state(path: str | Path) -> tuple[dict, dict[str, str]]:
    """Tensors and metadata of a safetensors file (a JSON header plus raw little-endian buffers: no unpickling)."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        meta = dict(fh.metadata() or {})
        for k in fh.keys():
            tensors[k] = fh.get_tensor(k)
    return tensors, meta


def resolve_weights(card: ModelCard, folder: Path, state_dir: Path | None) -> Path:
    """The safetensors file for this card's model.onnx: shipped beside it, cached, or converted now."""
    from copilot.inference.weights import convert, read_metadata

    shipped = folder / "model.safetensors"
    if shipped.is_file():
        if read_metadata(shipped).get("onnx_sha256") == card.model_sha256:
            return shipped
        log.warning("%s was made from another model.onnx; converting the current one", shipped)
    cache = Path(state_dir or "state") / "engines" / card.name / f"{card.model_sha256[:16]}.safetensors"
    if cache.is_file() and read_metadata(cache).get("onnx_sha256") == card.model_sha256:
        return cache
    log.info("converting %s initializers to %s", card.model_path(folder), cache)
    return convert(card.model_path(folder), cache)


class TorchEngine(NetworkEngine):
    """``device``: ``cpu``, ``cuda`` or ``cuda:N``."""

    def __init__(self, card: ModelCard, folder: Path, *, weights: Path | None = None, state_dir: Path | None = None,
                 device: str = "cpu", dtype: str = "float32", channels_last: bool = True, compile: bool = False,
                 threads: int | None = None, max_whole_px: int = 1536, tile_px: int | None = None,
                 tile_batch: int = 1):
        import torch

        super().__init__(card, folder, max_whole_px=max_whole_px, tile_px=tile_px, tile_batch=tile_batch)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch reports no CUDA device")
        if dtype == "float16" and self.device.type != "cuda":
            raise ValueError("float16 needs CUDA; use bfloat16 or float32 on the CPU")
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.dtype = getattr(torch, dtype)
        self.channels_last = channels_last
        self.name = f"torch-{self.device.type}"
        self.weights = Path(weights) if weights else resolve_weights(card, folder, state_dir)
        state, meta = load_safetensors_state(self.weights)
        if meta.get("onnx_sha256") not in (None, card.model_sha256):
            raise ValueError(f"{self.weights} holds weights of another model.onnx ({meta.get('onnx_sha256')})")
        channels = tuple(int(c) for c in meta["channels"].split(","))
        net = build_fused_unet(channels, int(meta["n_classes"]), int(meta.get("in_channels", 1)))
        net.load_state_dict(state, strict=True)
        net = net.to(self.device, self.dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net, dynamic=True) if compile else net
        self._torch = torch

    @classmethod
    def from_name(cls, name_or_path: str | Path, **kwargs) -> "TorchEngine":
        card, folder = load_card(name_or_path)
        return cls(card, folder, **kwargs)

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if self.device.type == "cuda":
                t = t.pin_memory().to(self.device, non_blocking=True)
            t = t.to(self.dtype)
            if self.channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            logits, emb = self.net(t)
            probs = torch.softmax(logits.float(), dim=1)
            return (probs.contiguous().cpu().numpy(), emb.float().cpu().numpy())
