"""Model card: engines/<name>/card.json, validated on load."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from copilot.errors import ModelError
from copilot.inference.locate import find_model


class Normalization(BaseModel):
    """How raw pixels become network input: per-frame percentile stretch to [0, 1], then (x - mean) / std."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["percentile"] = "percentile"
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    mean: float = 0.5
    std: float = 0.25


class Tiling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tile_px: int = Field(512, ge=64, description="tile edge in working-scale pixels")
    overlap_px: int = Field(32, ge=0)
    multiple_of: int = Field(8, ge=1, description="input height/width must be a multiple of this")

    @model_validator(mode="after")
    def _overlap_fits(self) -> "Tiling":
        if 2 * self.overlap_px >= self.tile_px:
            raise ValueError("tiling.overlap_px must be less than half of tiling.tile_px")
        return self


class Outputs(BaseModel):
    """Names of the ONNX graph's input and outputs."""

    model_config = ConfigDict(extra="forbid")
    input: str = "image"
    probabilities: str = "probabilities"
    embedding: str = "embedding"
    embedding_dim: int = Field(..., ge=1)


class EmbeddingReference(BaseModel):
    """Statistics of the training set's pooled embeddings, for domain-shift scoring."""

    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    std: list[float]
    samples: list[list[float]] = Field(default_factory=list, description="a subsample for KID/MMD")


class Lineage(BaseModel):
    """Where an adapted or fine-tuned model came from."""

    model_config = ConfigDict(extra="forbid")
    parent: str = Field(..., description="name version (sha256 prefix) of the model it started from")
    method: str
    # label-free adaptation (copilot.adapt); additive, absent on trained models
    parent_version: str | None = Field(None, description="the parent's version (rollback returns to it)")
    frames: int | None = Field(None, ge=0, description="unlabeled target frames the adaptation learnt from")
    frames_source: str | None = Field(None, description="where they came from: a stream or a folder")
    adapted_at: str | None = Field(None, description="when (UTC, ISO 8601)")


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str
    version: str
    task: Literal["particles", "phases", "grains", "defects"]
    class_names: list[str] = Field(..., min_length=2)
    description: str = ""
    working_nm_per_px: float = Field(..., gt=0, description="the scale the network sees; frames are resampled to it")
    trained_nm_per_px_range: tuple[float, float]
    trained_particle_px: tuple[float, float] | None = Field(
        None, description="particles: equivalent diameters (working px) the network was trained on; the per-frame "
                          "scale choice puts a frame's particles inside this range")
    average_native_scale: bool = Field(
        False, description="a frame coarser than the working scale (so upsampled to it) but inside the trained range "
                           "is segmented a second time at its own pixel size, and the two probability maps are "
                           "averaged: on a noisy frame the upsampled grid alone draws boundaries through the noise")
    lineage: Lineage | None = None
    normalization: Normalization = Normalization()
    tiling: Tiling = Tiling()
    outputs: Outputs
    embedding_reference: EmbeddingReference | None = None
    reliability_regressor: str | None = Field(None, description="ONNX file beside model.onnx, if any")
    metrics: dict[str, float | dict[str, float]] = Field(default_factory=dict)
    model_sha256: str
    training_command: str

    def model_path(self, engine_dir: Path) -> Path:
        return engine_dir / "model.onnx"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_card(card: ModelCard, folder: Path) -> None:
    """Write ``folder``/card.json atomically (a reader never sees half a card)."""
    tmp = Path(folder) / ".card.json.partial"
    tmp.write_text(card.model_dump_json(indent=2) + "\n")
    tmp.replace(Path(folder) / "card.json")


def load_card(name_or_path: str | Path, verify_sha256: bool = True) -> tuple[ModelCard, Path]:
    """Load and validate a card; return it with its folder. Refuses a model.onnx whose sha256 differs from the card."""
    folder = find_model(name_or_path)
    try:
        card = ModelCard.model_validate_json((folder / "card.json").read_text())
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ModelError(f"{folder}/card.json is not a valid model card: {fields}") from exc
    if verify_sha256:
        actual = sha256_of(folder / "model.onnx")
        if actual != card.model_sha256:
            raise ModelError(f"{folder}/model.onnx sha256 {actual} does not match card.json ({card.model_sha256}): "
                             "reinstall the model, or retrain it")
    return card, folder
