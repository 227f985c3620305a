"""Overlapping tiles and blending, so frames of any size run through a fixed-memory network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    h: int
    w: int


def tile_grid(height: int, width: int, tile_px: int, overlap_px: int) -> list[Tile]:
    """Tiles of at most ``tile_px`` that cover the image, neighbours overlapping by at least ``overlap_px``.

    >>> [(t.y, t.x) for t in tile_grid(100, 100, 64, 8)]
    [(0, 0), (0, 36), (36, 0), (36, 36)]
    """

    def starts(n: int) -> list[int]:
        if n <= tile_px:
            return [0]
        stride = tile_px - overlap_px
        count = int(np.ceil((n - tile_px) / stride)) + 1
        return [round(i * (n - tile_px) / (count - 1)) for i in range(count)]

    return [
        Tile(y, x, min(tile_px, height), min(tile_px, width)) for y in starts(height) for x in starts(width)
    ]


def blend_window(h: int, w: int, overlap_px: int) -> np.ndarray:
    """A weight map that ramps linearly over ``overlap_px`` at each edge (never zero), for seamless blending."""

    def ramp(n: int) -> np.ndarray:
        r = np.ones(n, np.float32)
        k = min(overlap_px, n // 2)
        if k > 0:
            edge = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
            r[:k] = edge
            r[n - k :] = edge[::-1]
        return r

    return np.outer(ramp(h), ramp(w))


def pad_to_multiple(img: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the bottom/right so both sides are multiples of ``multiple``; returns the original size."""
    h, w = img.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        pad = [(0, 0)] * (img.ndim - 2) + [(0, ph), (0, pw)]
        img = np.pad(img, pad, mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    return img, (h, w)
