"""What every backend shares: Frame → working grid → network (whole or tiled) → Segmentation.

A backend only implements :meth:`NetworkBackend.run_batch` (a batch of normalized images in, class probabilities and
embeddings out). Resampling to the card's working nm/px, normalization, padding to the network's multiple, tiling
with blended overlaps and the Segmentation it returns are identical for ONNX Runtime, TensorRT and torch, so two
backends given the same frame differ only by their arithmetic — which is what verification compares.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from skimage.transform import resize

from copilot.frame import Frame
from copilot.inference.card import ModelCard
from copilot.inference.preprocess import bounded_scale, enlarged, normalize, resample, working_scale
from copilot.readers.limits import DEFAULT_LIMITS
from copilot.inference.scale import ScalePolicy
from copilot.inference.segmentation import Segmentation
from copilot.inference.tiling import blend_window, pad_to_multiple, tile_grid


def wants_native_pass(card: ModelCard, frame: Frame, frame_px_per_px: float) -> bool:
    """Whether a frame gets the second, native-size pass: the card asks for it, and the frame is coarser than the
    working scale (``enlarged`` onto it) but inside the trained range."""
    return (card.average_native_scale and frame.nm_per_px is not None and enlarged(frame_px_per_px)
            and frame.nm_per_px <= card.trained_nm_per_px_range[1])


def balanced_tile_px(h: int, w: int, max_px: int, overlap: int, multiple: int) -> int:
    """The smallest tile edge (a multiple of ``multiple``, at most about ``max_px``) that covers an h × w image with
    as few tiles as ``max_px`` tiles would: 1638² with max 1536 → 4 tiles of 840² (2.8 Mpx) instead of 16 tiles of
    512² (4.2 Mpx), which on a CPU is the difference between 0.7 s and 1.3 s.

    >>> balanced_tile_px(1638, 1638, 1536, 32, 8), balanced_tile_px(3000, 1000, 1536, 32, 8)
    (840, 1520)
    """
    n = max(h, w)
    if n <= max_px:
        return -(-n // multiple) * multiple
    k = -(-(n - overlap) // (max_px - overlap))
    t = -(-(n + (k - 1) * overlap) // k)
    return -(-t // multiple) * multiple


@lru_cache(maxsize=16)
def _window(h: int, w: int, overlap_px: int) -> np.ndarray:
    win = blend_window(h, w, overlap_px)
    win.flags.writeable = False
    return win


class NetworkBackend:
    """Base class. Subclasses set ``name`` and implement ``run_batch``.

    ``max_whole_px``: working-grid images up to this edge run in one pass; larger ones run as overlapping tiles of
    ``tile_px``, ``tile_batch`` per call (1 on a CPU, more on a GPU). ``tile_px=None`` (the CPU default): tiles as
    large as ``max_whole_px`` allows, balanced so the overlap costs as little as possible (``balanced_tile_px``) —
    the network is fully convolutional, so a tile's size changes nothing but the overlap's cost.
    """

    name = "network"
    #: input bounds (``[limits]``; the daemon sets them from its config): largest enlargement, largest working grid
    max_upsample: float = DEFAULT_LIMITS.max_upsample
    max_working_px: float = DEFAULT_LIMITS.max_working_mpx * 1e6
    # the scale choice starts from the previous frame of the stream (live); False: from the card's scale on every
    # frame, so a batch gives the same result in any order and on any worker (copilot analyze, --dask)
    scale_memory: bool = True

    def __init__(self, card: ModelCard, folder: Path | None = None, *, max_whole_px: int = 1536,
                 tile_px: int | None = None, tile_batch: int = 1):
        self.card = card
        self.folder = folder
        self.max_whole_px = max_whole_px
        self.tile_px = tile_px
        self.tile_batch = max(1, tile_batch)
        self.selection: list[tuple[str, str]] = []  # set by inference.select: why this backend was chosen

    # -- what a backend implements ----------------------------------------------------------------------------
    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1, h, w) float32, h and w multiples of the card's ``multiple_of`` → probabilities (n, C, h, w) float32
        and embeddings (n, D) float32."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------------
    def run_network(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass on a normalized (h, w) image; returns probabilities (C, h, w) and the embedding (D,)."""
        padded, (h, w) = pad_to_multiple(img, self.card.tiling.multiple_of)
        probs, emb = self.run_batch(np.ascontiguousarray(padded[None, None], dtype=np.float32))
        return probs[0, :, :h, :w], np.asarray(emb, np.float32).reshape(-1)

    def prepare(self, frame: Frame, factor: float | None = None) -> tuple[np.ndarray, float]:
        """Frame → normalized image on the working grid (``factor`` frame pixels per working pixel; default: the
        card's scale), and the frame pixels per working pixel achieved; the factor is bounded by the input limits
        (``max_upsample``, ``max_working_px``)."""
        scale = bounded_scale(frame, working_scale(frame, self.card) if factor is None else factor,
                              max_upsample=self.max_upsample, max_working_px=self.max_working_px)
        img, scale = resample(frame.pixels, scale)
        return normalize(img, self.card.normalization), scale

    def infer(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized working-grid image → probabilities (C, h, w) and embedding (D,), whole or tiled."""
        h, w = img.shape
        if max(h, w) <= self.max_whole_px:
            return self.run_network(img)
        t = self.card.tiling
        tile = self.tile_px or balanced_tile_px(h, w, self.max_whole_px, t.overlap_px, t.multiple_of)
        return self.run_tiled(img, tile, self.tile_batch)

    def segment(self, frame: Frame) -> Segmentation:
        """The frame at the scale its particles need (``copilot.inference.scale``), one pass or two."""
        policy = self.__dict__.setdefault("scale_policy", ScalePolicy(self.card, remember=self.scale_memory))
        factor, _ = policy.first_guess(frame)
        img, scale = self.prepare(frame, factor)
        probs, emb = self.infer(img)
        better, med = policy.review(frame, scale, probs)
        if better is not None:
            img, scale = self.prepare(frame, better)
            probs, emb = self.infer(img)
            _, med = policy.review(frame, scale, probs)
        if wants_native_pass(self.card, frame, scale):
            probs = self.average_native(frame, probs)
        return Segmentation(
            frame=frame,
            probabilities=probs,
            embedding=emb,
            class_names=tuple(self.card.class_names),
            model_name=self.card.name,
            model_version=self.card.version,
            backend=self.name,
            frame_px_per_px=scale,
            task=self.card.task,
            network_input=img,
            particle_px=(float("nan") if med is None else med) if policy.measures(frame) else None,
        )

    def forget_scale(self, stream: str, frame_id: str) -> None:
        """A frame whose verdict failed: the stream's scale choice does not start from its particles
        (:meth:`copilot.inference.scale.ScalePolicy.forget`)."""
        policy = self.__dict__.get("scale_policy")
        if policy is not None:
            policy.forget(stream, frame_id)

    def average_native(self, frame: Frame, probs: np.ndarray) -> np.ndarray:
        """The mean of ``probs`` (an upsampled working grid) and the network's probabilities at the frame's own
        pixel size, interpolated onto that grid (``ModelCard.average_native_scale``)."""
        img, _ = self.prepare(frame, 1.0)
        native, _ = self.infer(img)
        h, w = probs.shape[1:]
        up = np.stack([resize(c, (h, w), order=1, mode="edge", anti_aliasing=False) for c in native])
        return ((probs + up) * 0.5).astype(np.float32)

    def run_tiled(self, img: np.ndarray, tile_px: int, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Overlapping tiles (``batch`` per network call), blended with linear ramps; embedding = area-weighted mean."""
        overlap = self.card.tiling.overlap_px
        m = self.card.tiling.multiple_of
        h, w = img.shape
        acc = np.zeros((len(self.card.class_names), h, w), np.float32)
        weight = np.zeros((h, w), np.float32)
        tiles = tile_grid(h, w, tile_px, overlap)
        embs, areas = [], []
        for start in range(0, len(tiles), batch):
            group = tiles[start:start + batch]
            th, tw = group[0].h, group[0].w  # every tile of one grid has the same shape
            x = np.stack([pad_to_multiple(img[t.y:t.y + t.h, t.x:t.x + t.w], m)[0] for t in group])[:, None]
            probs, emb = self.run_batch(np.ascontiguousarray(x, dtype=np.float32))
            win = _window(th, tw, overlap)
            for i, t in enumerate(group):
                acc[:, t.y:t.y + t.h, t.x:t.x + t.w] += probs[i, :, :th, :tw] * win
                weight[t.y:t.y + t.h, t.x:t.x + t.w] += win
                embs.append(np.asarray(emb[i], np.float32).reshape(-1))
                areas.append(t.h * t.w)
        acc /= weight
        return acc, np.average(np.stack(embs), axis=0, weights=areas).astype(np.float32)

    def close(self) -> None:
        """Release device memory, streams, sessions (no-op by default)."""

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.card.name, "version": self.card.version,
                "max_whole_px": self.max_whole_px, "tile_px": self.tile_px, "tile_batch": self.tile_batch}


def for_batch(backend):
    """The backend set for a batch (``copilot analyze``, ``--dask``): every frame's scale choice starts from the card,
    so results do not depend on the order files are processed in or on which worker runs them."""
    for e in (backend, getattr(backend, "primary", None)):
        if isinstance(e, NetworkBackend):
            e.scale_memory = False
    return backend
