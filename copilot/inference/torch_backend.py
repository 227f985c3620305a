"""The torch backend: the card's network in PyTorch (CPU or CUDA), weights from safetensors — never a pickle.

The network definition is ``copilot.train.unet.TinyUNet`` with its BatchNorms folded into the convolutions (what the
ONNX export holds); weights come from ``engines/<name>/model.safetensors`` when present and made for this
``model.onnx`` (metadata ``onnx_sha256``), otherwise they are converted once from the ONNX initializers
(:mod:`copilot.inference.weights`) into ``<state_dir>/engines/<name>/``.

Options: ``dtype`` float32 / float16 (CUDA only) / bfloat16, ``channels_last`` memory format, ``compile``
(``torch.compile``; the first frames of each new shape pay the compile). Probabilities are computed in float32
from the logits whatever the compute dtype, so argmax labels are comparable with ONNX Runtime's. float32 on CUDA is
true FP32 (cuDNN's and cuBLAS's TF32 are switched off for the process).

On CUDA the device is set in whichever thread runs inference, the input goes up from a pinned buffer, and a whole
frame's softmax, arg-max, confidence and entropy are computed on the device (:func:`reduce_on_device`): the label
map and per-pixel maps come back into pinned buffers as a :class:`DeviceSegmentation`, so the CPU does none of that
arithmetic and, in the pipeline, the next frame's upload overlaps this frame's post-processing on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dataclasses import dataclass

from copilot.frame import Frame
from copilot.inference.card import ModelCard, load_card
from copilot.inference.network import NetworkBackend, wants_native_pass
from copilot.inference.segmentation import Segmentation

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


def build_fused_unet(channels: tuple[int, ...], n_classes: int, in_channels: int = 1, space_to_depth: int = 1):
    """A TinyUNet whose block convolutions carry a bias and whose BatchNorms are identities (the exported form)."""
    from torch import nn

    from copilot.train.unet import TinyUNet

    net = TinyUNet(n_classes=n_classes, channels=tuple(channels), in_channels=in_channels,
                   space_to_depth=space_to_depth)
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


@dataclass(frozen=True)
class DeviceSegmentation(Segmentation):
    """A Segmentation whose arg-max labels, confidence and normalized entropy were computed on the GPU."""

    device_labels: np.ndarray | None = None
    device_confidence: np.ndarray | None = None
    entropy: np.ndarray | None = None  # predictive entropy / log(n_classes), float32 in [0, 1]

    @property
    def labels(self) -> np.ndarray:
        return self.device_labels if self.device_labels is not None else super().labels

    @property
    def confidence(self) -> np.ndarray:
        return self.device_confidence if self.device_confidence is not None else super().confidence


def device_segmentation(*, labels, confidence, entropy, **fields) -> Segmentation:
    """A Segmentation carrying the maps computed on the device: Segmentation's own fields where it declares them
    (labels / confidence / entropy), else a :class:`DeviceSegmentation`."""
    import dataclasses

    if {"labels", "confidence", "entropy"} <= {f.name for f in dataclasses.fields(Segmentation)}:
        return Segmentation(**fields, labels=labels, confidence=confidence, entropy=entropy)
    return DeviceSegmentation(**fields, device_labels=labels, device_confidence=confidence, entropy=entropy)


def reduce_on_device(probs):
    """(C, h, w) float32 probabilities (a torch tensor, on any device) → labels (uint8), confidence (max
    probability) and entropy normalized by log(C), all computed where the tensor lives."""
    import math

    import torch

    conf, labels = probs.max(dim=0)
    p = probs.clamp(1e-7, 1.0)
    entropy = -(p * p.log()).sum(dim=0) / math.log(probs.shape[0])
    return labels.to(torch.uint8), conf, entropy.float()


class TorchBackend(NetworkBackend):
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
        if self.device.type == "cuda" and dtype == "float32":
            torch.backends.cudnn.allow_tf32 = False  # true FP32 when FP32 is asked for
            torch.backends.cuda.matmul.allow_tf32 = False
        self.channels_last = channels_last
        self.name = f"torch-{self.device.type}"
        self.weights = Path(weights) if weights else resolve_weights(card, folder, state_dir)
        state, meta = load_safetensors_state(self.weights)
        if meta.get("onnx_sha256") not in (None, card.model_sha256):
            raise ValueError(f"{self.weights} holds weights of another model.onnx ({meta.get('onnx_sha256')})")
        channels = tuple(int(c) for c in meta["channels"].split(","))
        net = build_fused_unet(channels, int(meta["n_classes"]), int(meta.get("in_channels", 1)),
                               int(meta.get("space_to_depth", 1)))
        net.load_state_dict(state, strict=True)
        net = net.to(self.device, self.dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net, dynamic=True) if compile else net
        self._torch = torch
        self._pinned: dict[tuple, object] = {}
        if self.device.type == "cuda":
            from copilot.inference.trt_backend import PerThreadDevice

            self._thread_device = PerThreadDevice(lambda: torch.cuda.set_device(self.device))
            self._stream = torch.cuda.Stream(self.device)

    @classmethod
    def from_name(cls, name_or_path: str | Path, **kwargs) -> "TorchBackend":
        card, folder = load_card(name_or_path)
        return cls(card, folder, **kwargs)

    def _host(self, tag: str, shape: tuple, dtype):
        """A pinned host tensor reused across calls of the same shape (CUDA) or a plain one (CPU)."""
        torch = self._torch
        if self.device.type != "cuda":
            return torch.empty(shape, dtype=dtype)
        key = (tag, shape, dtype)
        t = self._pinned.get(key)
        if t is None:
            if len(self._pinned) > 32:
                self._pinned.clear()
            t = self._pinned[key] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return t

    def _forward(self, x: np.ndarray):
        """Upload ``x`` (through a pinned buffer on CUDA) and run the network; probabilities in float32."""
        torch = self._torch
        t = torch.from_numpy(x)
        if self.device.type == "cuda":
            self._thread_device.ensure()
            staged = self._host("in", tuple(x.shape), torch.float32)
            staged.copy_(t)
            t = staged.to(self.device, non_blocking=True)
        t = t.to(self.dtype)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        logits, emb = self.net(t)
        return torch.softmax(logits.float(), dim=1), emb.float()

    def _download(self, tag: str, t) -> np.ndarray:
        host = self._host(tag, tuple(t.shape), t.dtype)
        host.copy_(t, non_blocking=self.device.type == "cuda")
        return host

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            if self.device.type != "cuda":
                probs, emb = self._forward(x)
                return probs.contiguous().numpy(), emb.numpy()
            with torch.cuda.stream(self._stream):
                probs, emb = self._forward(x)
                p, e = self._download("p", probs.contiguous()), self._download("e", emb)
            self._stream.synchronize()
            return p.numpy().copy(), e.numpy().copy()  # copies out of the reused pinned buffers

    def segment(self, frame: Frame) -> Segmentation:
        """On CUDA, a frame that runs whole is reduced on the device (module docstring); otherwise the shared path."""
        if self.device.type != "cuda":
            return super().segment(frame)
        img, scale = self.prepare(frame)
        if max(img.shape) > self.max_whole_px or wants_native_pass(self.card, frame, scale):
            return super().segment(frame)
        from copilot.inference.tiling import pad_to_multiple

        torch = self._torch
        h, w = img.shape
        padded, _ = pad_to_multiple(img, self.card.tiling.multiple_of)
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            probs, emb = self._forward(np.ascontiguousarray(padded[None, None], dtype=np.float32))
            probs = probs[0, :, :h, :w]
            labels, conf, entropy = reduce_on_device(probs)
            out = [self._download(tag, t.contiguous()) for tag, t in
                   (("p", probs), ("l", labels), ("c", conf), ("h", entropy), ("e", emb))]
        self._stream.synchronize()
        p, labels, conf, entropy, emb = (t.numpy().copy() for t in out)
        card = self.card
        return device_segmentation(
            frame=frame, probabilities=p, embedding=emb.reshape(-1), class_names=tuple(card.class_names),
            model_name=card.name, model_version=card.version, backend=self.name, frame_px_per_px=scale,
            task=card.task, labels=labels, confidence=conf, entropy=entropy)
