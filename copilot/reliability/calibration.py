"""reliability.json: what the reliability regressor expects and what "normal" looked like in training.

Stored beside ``reliability.onnx`` in engines/<name>/ (the card names it); written by the training recipe.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class FeatureStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: float
    std: float
    p01: float
    p05: float
    p95: float
    p99: float


class ReliabilityCalibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] = Field(..., description="regressor input order")
    targets: list[str] = Field(..., description="regressor output order, e.g. f1, precision, recall")
    input_name: str = "features"
    output_name: str = "variable"
    quality_reference: dict[str, FeatureStats] = Field(..., description="quality features on in-domain frames")
    shift_distance_p99: float = Field(..., description="99th percentile of the per-frame shift score in training")
    shift_mmd2_p99: float | None = None
    metrics: dict[str, float | dict[str, float]] = Field(default_factory=dict)
    training_command: str = ""

    @classmethod
    def load(cls, path: Path) -> "ReliabilityCalibration":
        return cls.model_validate_json(Path(path).read_text())
