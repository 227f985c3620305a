"""Verdict from the model's own output: ok | warn | fail with reasons."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from copilot.analysis.measurements import FrameMeasurements
from copilot.publish.schema import Reliability, Verdict


class VerdictThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_objects: int = Field(5, ge=0, description="fewer sized objects than this: 'too few objects to measure'")
    warn_image_confidence: float = Field(0.85, ge=0, le=1)
    fail_image_confidence: float = Field(0.6, ge=0, le=1)


def image_confidence(probabilities: np.ndarray) -> float:
    """Mean over pixels of the max class probability (seed 002's image-level confidence)."""
    return float(probabilities.max(axis=0).mean())


def assess(fm: FrameMeasurements, thresholds: VerdictThresholds) -> tuple[Reliability, Verdict]:
    conf = image_confidence(fm.segmentation.probabilities)
    reasons: list[str] = []
    level = "ok"

    def raise_to(new: str) -> None:
        nonlocal level
        order = ["ok", "warn", "fail"]
        level = max(level, new, key=order.index)

    if conf < thresholds.fail_image_confidence:
        raise_to("fail")
        reasons.append(f"model unsure of this frame (confidence {conf:.2f})")
    elif conf < thresholds.warn_image_confidence:
        raise_to("warn")
        reasons.append(f"model less sure than usual (confidence {conf:.2f})")
    p = fm.summary.particles
    if p is not None and p.count_sized < thresholds.min_objects:
        raise_to("warn")
        reasons.append(f"too few objects to measure ({p.count_sized} sized)")
    if not fm.segmentation.frame.calibrated:
        raise_to("warn")
        reasons.append("no calibration in the file: sizes are in pixels")
    return Reliability(image_confidence=conf), Verdict(level=level, reasons=reasons)
