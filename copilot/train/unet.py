"""A compact U-Net with two heads: per-pixel class probabilities (softmax) and a pooled bottleneck embedding."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, n: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class TinyUNet(nn.Module):
    """U-Net with ``len(channels) - 1`` downsamplings.

    ``forward`` returns logits (N, C, H, W) and the embedding (N, channels[-1]); ``ExportWrapper`` turns logits into
    probabilities for ONNX. Input height/width must be multiples of ``2 ** (len(channels) - 1)``.

    The full-resolution level uses a single convolution on the way down and on the way up: that level dominates the
    cost on CPU and one 3×3 layer there is enough to place edges.

    ``space_to_depth`` = r > 1: the image's r × r pixel blocks become r² input channels (``PixelUnshuffle``) and the
    head's n_classes · r² outputs go back to full resolution (``PixelShuffle``): the whole U-Net runs on 1/r² of the
    pixels, with a receptive field r times wider in image pixels. Input edges must then be multiples of
    ``r · 2 ** (len(channels) - 1)``.
    """

    def __init__(self, n_classes: int = 3, channels: tuple[int, ...] = (8, 16, 32, 64), in_channels: int = 1,
                 space_to_depth: int = 1) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.n_classes = n_classes
        self.space_to_depth = int(space_to_depth)
        r2 = self.space_to_depth ** 2
        self.unshuffle = nn.PixelUnshuffle(self.space_to_depth) if self.space_to_depth > 1 else nn.Identity()
        self.shuffle = nn.PixelShuffle(self.space_to_depth) if self.space_to_depth > 1 else nn.Identity()
        self.downs = nn.ModuleList()
        cin = in_channels * r2
        for i, c in enumerate(channels):
            self.downs.append(_block(cin, c, 1 if i == 0 else 2))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            # project to the skip's width at low resolution, upsample, add the skip (no Concat: keeps ORT in its
            # blocked NCHWc layout and costs a quarter of the multiply-adds of a concat + conv)
            self.lateral.append(nn.Conv2d(channels[i], channels[i - 1], 1))
            self.ups.append(_block(channels[i - 1], channels[i - 1], 1 if i == 1 else 2))
        self.head = nn.Conv2d(channels[0], n_classes * r2, 1)

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    @property
    def multiple_of(self) -> int:
        return self.space_to_depth * 2 ** (len(self.channels) - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.unshuffle(x)
        skips = []
        for i, down in enumerate(self.downs):
            if i > 0:
                x = self.pool(x)
            x = down(x)
            skips.append(x)
        emb = x.mean(dim=(2, 3))
        for lat, up, skip in zip(self.lateral, self.ups, reversed(skips[:-1])):
            x = up(self.up(lat(x)) + skip)
        return self.shuffle(self.head(x)), emb


class ExportWrapper(nn.Module):
    """What goes into model.onnx: image (N,1,H,W) → probabilities (N,C,H,W), embedding (N,D)."""

    def __init__(self, net: TinyUNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, emb = self.net(image)
        # explicit softmax over the class axis: ORT's Softmax on a non-last axis transposes the whole tensor
        e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        return e / e.sum(dim=1, keepdim=True), emb
