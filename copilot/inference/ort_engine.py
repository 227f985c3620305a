"""The embedded default engine: ONNX Runtime on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from copilot.frame import Frame
from copilot.inference.card import ModelCard, load_card
from copilot.inference.preprocess import normalize, resample, working_scale
from copilot.inference.segmentation import Segmentation
from copilot.inference.tiling import blend_window, pad_to_multiple, tile_grid

log = logging.getLogger(__name__)


class OrtEngine:
    """Segments a Frame with the card's ONNX model.

    The frame is resampled to the card's working nm/px, normalized, and run whole when it fits in ``max_whole_px``
    (fastest on a CPU), otherwise as overlapping tiles blended with linear ramps.
    """

    name = "onnxruntime-cpu"

    def __init__(
        self,
        card: ModelCard,
        folder: Path,
        *,
        threads: int = 2,
        max_whole_px: int = 1536,
        providers: list[str] | None = None,
    ):
        self.card = card
        self.folder = Path(folder)
        self.max_whole_px = max_whole_px
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(card.model_path(folder)), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
        )
        self._outputs = [card.outputs.probabilities, card.outputs.embedding]

    @classmethod
    def from_name(cls, name_or_path: str | Path, **kwargs) -> "OrtEngine":
        card, folder = load_card(name_or_path)
        return cls(card, folder, **kwargs)

    def run_network(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass on a normalized (h, w) image; returns probabilities (C, h, w) and the embedding."""
        padded, (h, w) = pad_to_multiple(img, self.card.tiling.multiple_of)
        probs, emb = self.session.run(self._outputs, {self.card.outputs.input: padded[None, None]})
        return probs[0, :, :h, :w], emb.reshape(-1)

    def segment(self, frame: Frame) -> Segmentation:
        img, scale = resample(frame.pixels, working_scale(frame, self.card))
        img = normalize(img, self.card.normalization)
        h, w = img.shape
        if max(h, w) <= self.max_whole_px:
            probs, emb = self.run_network(img)
        else:
            probs, emb = self._run_tiled(img)
        return Segmentation(
            frame=frame,
            probabilities=probs,
            embedding=emb,
            class_names=tuple(self.card.class_names),
            model_name=self.card.name,
            model_version=self.card.version,
            engine=self.name,
            frame_px_per_px=scale,
            task=self.card.task,
            network_input=img,
        )

    def _run_tiled(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.card.tiling
        h, w = img.shape
        acc = np.zeros((len(self.card.class_names), h, w), np.float32)
        weight = np.zeros((h, w), np.float32)
        embs, areas = [], []
        for tile in tile_grid(h, w, t.tile_px, t.overlap_px):
            probs, emb = self.run_network(img[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w])
            win = blend_window(tile.h, tile.w, t.overlap_px)
            acc[:, tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] += probs * win
            weight[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] += win
            embs.append(emb)
            areas.append(tile.h * tile.w)
        acc /= weight
        return acc, np.average(np.stack(embs), axis=0, weights=areas).astype(np.float32)
