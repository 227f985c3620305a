"""Pick an engine for a model by name; "auto" prefers the fastest backend this machine has."""

from __future__ import annotations

import logging

from copilot.inference.ort_engine import OrtEngine
from copilot.inference.segmentation import Engine

log = logging.getLogger(__name__)


def load_engine(model: str, engine: str = "auto", threads: int = 2, max_whole_px: int = 1536) -> Engine:
    if engine not in ("auto", "onnxruntime"):
        raise ValueError(f"unknown engine {engine!r}")
    chosen = OrtEngine.from_name(model, threads=threads, max_whole_px=max_whole_px)
    log.info("engine: %s for %s %s (%s)", chosen.name, chosen.card.name, chosen.card.version,
             "requested" if engine == "onnxruntime" else "auto: ONNX Runtime CPU is the embedded default")
    return chosen
