"""The result document ``copilot.result/1``: what leaves the daemon for every frame.

Binary parts (label mask, uncertainty map, preview) are *not* in the JSON: they travel as extra frames of the same
ZeroMQ multipart message, described by ``parts`` in the order they follow the JSON frame.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID = "copilot.result/1"
SCHEMA_FILE = Path(__file__).with_name("copilot.result.1.schema.json")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Calibration(_Doc):
    nm_per_px: float | None = Field(..., description="None: the frame carried no calibration")
    calibrated: bool
    source: str = Field(..., description="where nm/px came from: tiff-resolution, imagej, fei, zeiss, socket, ... or none")
    length_unit: Literal["nm", "px"] = Field(..., description="unit of every length in this document")


class ImageInfo(_Doc):
    height_px: int
    width_px: int
    dtype: str
    data_bar_rows: int = Field(0, description="rows of a burned-in data bar cropped before analysis")
    signal: str | None = Field(None, description="for multi-signal files, which signal was taken")
    grid_frame_px: float = Field(
        1.0, description="the analysis grid (and label mask) is the frame resampled so one grid pixel spans this many frame pixels"
    )


class ModelRef(_Doc):
    name: str
    version: str
    engine: str


class Particle(_Doc):
    id: int
    centroid_x_px: float
    centroid_y_px: float
    area: float = Field(..., description="in length_unit²")
    ecd: float = Field(..., description="equivalent circular diameter, in length_unit")
    touches_edge: bool


class ParticleSummary(_Doc):
    count: int = Field(..., description="all particles, edge-cut ones included")
    count_edge: int = Field(..., description="particles cut by the frame edge (counted, not sized)")
    count_sized: int = Field(..., description="particles in the size statistics")
    edge_policy: str = "particles touching the frame edge are counted but excluded from size statistics"
    ecd_mean: float | None = None
    ecd_sd: float | None = None
    d10: float | None = None
    d50: float | None = None
    d90: float | None = None
    particles: list[Particle] = Field(default_factory=list)


class PhaseSummary(_Doc):
    fractions: dict[str, float]


class Measurements(_Doc):
    task: Literal["particles", "phases"]
    length_unit: Literal["nm", "px"]
    particles: ParticleSummary | None = None
    phases: PhaseSummary | None = None


class Reliability(_Doc):
    predicted_f1: float | None = None
    image_confidence: float | None = Field(None, description="mean max-probability over the frame")
    shift_score: float | None = None
    quality: dict[str, float] = Field(default_factory=dict)


class Verdict(_Doc):
    level: Literal["ok", "warn", "fail"]
    reasons: list[str] = Field(default_factory=list)


class BinaryPart(_Doc):
    """Describes one extra frame of the multipart message that follows the JSON."""

    name: str = Field(..., description="labels | uncertainty | preview")
    dtype: str = Field(..., description="numpy dtype string, or 'png'/'jpeg' for compressed parts")
    shape: list[int]


class ResultDocument(_Doc):
    schema_: Literal["copilot.result/1"] = Field(SCHEMA_ID, alias="schema")
    stream: str
    frame_id: str
    origin: str
    acquired_at: datetime
    processed_at: datetime
    calibration: Calibration
    image: ImageInfo
    model: ModelRef
    timings_ms: dict[str, float] = Field(..., description="per stage: read, infer, measure, ..., and total")
    measurements: Measurements
    reliability: Reliability
    verdict: Verdict
    parts: list[BinaryPart] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ResultDocument":
        return cls.model_validate_json(text)


def json_schema() -> dict:
    schema = ResultDocument.model_json_schema(by_alias=True)
    schema["$id"] = SCHEMA_ID
    return schema


def write_json_schema(path: Path = SCHEMA_FILE) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path
