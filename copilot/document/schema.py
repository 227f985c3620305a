"""The result document ``copilot.result/1``: what leaves the daemon for every frame.

Binary parts (label mask, uncertainty map, preview) are *not* in the JSON: they travel as extra frames of the same
ZeroMQ multipart message, described by ``parts`` in the order they follow the JSON frame.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_ID = "copilot.result/1"
SCHEMA_FILE = Path(__file__).with_name("copilot.result.1.schema.json")


class _Doc(BaseModel):
    # NaN/inf would become JSON null and make subscribers reject the document: refuse them where they are made.
    # from_attributes: copilot.result validates analysis' own (dataclass) measurements into documents directly
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False, from_attributes=True)


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


def _backend_or_engine(schema: dict) -> None:
    """JSON schema of ModelRef: ``backend`` or ``engine`` (documents stored before the rename have only ``engine``)."""
    for key in ("backend", "engine"):
        schema["properties"][key].pop("default", None)
    schema["anyOf"] = [{"required": ["backend"]}, {"required": ["engine"]}]


class ModelRef(_Doc):
    model_config = ConfigDict(json_schema_extra=_backend_or_engine)

    name: str
    version: str
    backend: str = Field(None, description="what ran the model: onnxruntime-cpu, tensorrt, torch-cuda, triton, ...")
    engine: str = Field(None, description="deprecated: same as backend (kept for subscribers of copilot.result/1 that "
                                          "read it)")

    @model_validator(mode="before")
    @classmethod
    def _fill_backend_and_engine(cls, data):
        """Either name fills the other: new documents carry both, stored ones from before the rename ``engine`` only."""
        if isinstance(data, dict):
            backend, engine = data.get("backend"), data.get("engine")
            if backend is not None and engine is not None and backend != engine:
                raise ValueError(f"model.backend {backend!r} and model.engine {engine!r} differ; engine is the "
                                 "deprecated name of backend and must be the same")
            if backend is None and engine is None:
                raise ValueError("model.backend is missing")
            data = {**data, "backend": backend or engine, "engine": backend or engine}
        return data


class Particle(_Doc):
    id: int
    centroid_x_px: float = Field(..., description="in frame pixels, pixel centres at whole numbers (scikit-image)")
    centroid_y_px: float = Field(..., description="in frame pixels, pixel centres at whole numbers (scikit-image)")
    centroid_x_nm: float | None = Field(None, description="nm from the frame's top-left corner: (centroid_x_px + 0.5) "
                                        "× nm/px, as Fiji's calibrated centroid; None when uncalibrated")
    centroid_y_nm: float | None = Field(None, description="nm from the frame's top-left corner: (centroid_y_px + 0.5) "
                                        "× nm/px; None when uncalibrated")
    area: float = Field(..., description="in length_unit²")
    ecd: float = Field(..., description="equivalent circular diameter, in length_unit")
    feret_max: float = Field(..., description="maximum caliper diameter, in length_unit")
    feret_min: float = Field(..., description="minimum caliper diameter, in length_unit")
    aspect_ratio: float = Field(..., description="major / minor axis of the fitted ellipse (Fiji's AR)")
    circularity: float = Field(..., description="4π·area / perimeter², 1 for a disc")
    solidity: float = Field(..., description="area / convex area")
    mean_intensity: float = Field(..., description="mean raw pixel value in the frame")
    confidence: float = Field(..., description="mean model probability of the particle's own class")
    touches_edge: bool
    resolved: bool = Field(True, description="ECD at or above the resolvable size (sized); false: counted only")


class Interval(_Doc):
    low: float
    high: float
    level: float = 0.95
    method: str = "bootstrap"


class Histogram(_Doc):
    edges: list[float] = Field(..., description="bin edges, in length_unit")
    counts: list[int]
    scale: Literal["log", "linear"]


class LogNormalFit(_Doc):
    geometric_mean: float = Field(..., description="exp(mean(ln ECD)), in length_unit")
    sigma_g: float = Field(..., description="geometric standard deviation exp(sd(ln ECD)), dimensionless")


class Sufficiency(_Doc):
    """How precisely the headline number (D50, or a phase fraction) is known, and what it would take to know it."""

    quantity: str
    estimate: float | None
    half_width_rel: float | None = Field(None, description="95 % half-width relative to the estimate")
    target_rel: float
    enough: bool
    more_objects_needed: int | None = Field(None, description="about how many more particles (or points) are needed")
    more_frames_needed: int | None = Field(None, description="at the current objects per frame")
    scope: str = Field(..., description="'frame' or 'series' (pooled over the stream's recent frames)")


class ParticleSummary(_Doc):
    count: int = Field(..., description="all particles, edge-cut ones included")
    count_edge: int = Field(..., description="particles cut by the frame edge (counted, not sized)")
    count_sized: int = Field(..., description="particles in the size statistics")
    count_unresolved: int = Field(0, description="particles below the resolvable size (counted, not sized)")
    resolvable_ecd: float | None = Field(None, description="smallest ECD that is sized, in length_unit")
    note: str | None = Field(None, description="e.g. every particle below the resolvable size: no sizes reported")
    edge_policy: str = "particles touching the frame edge are counted but excluded from size statistics"
    analysed_area_um2: float | None = Field(None, description="frame area analysed (data bar excluded), µm²")
    density_per_um2: float | None = Field(None, description="count / analysed area")
    ecd_mean: float | None = None
    ecd_sd: float | None = None
    d10: float | None = None
    d50: float | None = None
    d90: float | None = None
    ecd_mean_ci: Interval | None = None
    d50_ci: Interval | None = None
    lognormal: LogNormalFit | None = None
    psd: Histogram | None = None
    particles: list[Particle] = Field(default_factory=list)


class PhaseFraction(_Doc):
    name: str
    area_fraction: float = Field(..., description="area fraction of the analysed area (phase boundaries sub-pixel)")
    ci: Interval | None = Field(None, description="block bootstrap over tiles: respects spatial correlation")
    point_count: float = Field(..., description="ASTM E562 point-count estimate on a regular grid")
    point_count_ci: Interval | None = None


class PhaseMorphology(_Doc):
    """One phase's shape statistics, lengths in length_unit (copilot.analysis.morphology says how)."""

    name: str
    width_samples: int = Field(..., description="medial-axis pixels measured (branch and end points left out)")
    width_median: float | None = Field(None, description="median inscribed-circle diameter on the medial axis")
    width_median_ci: Interval | None = Field(None, description="block bootstrap of the median")
    width_mean: float | None = None
    width_p10: float | None = None
    width_p90: float | None = None
    mean_intercept: float | None = Field(None, description="mean chord length on test lines, V_V / N_L")
    mean_intercept_ci: Interval | None = None
    mean_free_path: float | None = Field(None, description="mean edge-to-edge distance through the other phases, (1 − V_V) / N_L")
    mean_free_path_ci: Interval | None = None
    lamellar_spacing: float | None = Field(None, description="lamellar structures only: mean spacing on test lines across the lamellae")
    lamellar_spacing_ci: Interval | None = None


class MorphologySummary(_Doc):
    phases: list[PhaseMorphology]
    anisotropy: float | None = Field(None, description="max / min intercepts per length over test-line orientations")
    orientation_deg: float | None = Field(None, description="test lines with the most intercepts (across lamellae), degrees from +x towards +y")
    line_spacing_px: int = Field(..., description="spacing of the parallel test lines, grid pixels")
    n_angles: int = Field(..., description="test-line orientations over 180°")


class PhaseSummary(_Doc):
    phases: list[PhaseFraction]
    grid_points: int = Field(..., description="points of the E562 grid")
    block_px: int = Field(..., description="edge of the bootstrap blocks, grid pixels")
    morphology: MorphologySummary | None = Field(None, description="widths, intercepts, free path, lamellar spacing")
    subpixel_boundary_px: int = Field(0, description="grid pixels on phase boundaries, measured sub-pixel")


class DefectClass(_Doc):
    """One radiation-defect class (cavity or loop) in one frame (copilot.analysis.defects)."""

    name: str
    count: int = Field(..., description="all defects of the class, edge-cut ones included")
    count_edge: int = Field(..., description="cut by the frame edge: counted, not in the size distribution; "
                                             "densities weight the inner ones instead (Miles-Lantuejoul); the "
                                             "cavity volume takes a cut cavity whose centre is in the frame at the "
                                             "size of the disc its visible part shows (associated point)")
    density_per_um2: float | None = Field(None, description="edge-corrected areal density, per µm²")
    density_ci: Interval | None = None
    diameter_mean: float | None = Field(None, description="in length_unit: ECD (cavity) or ellipse major axis (loop)")
    diameter_mean_ci: Interval | None = None
    diameter_median: float | None = None
    size_histogram: Histogram | None = None
    diameters: list[float] = Field(default_factory=list, description="each inner defect's diameter, length_unit")
    size_measure: str = Field("ecd", description="'ecd' or 'ellipse major axis'")


class DefectSummary(_Doc):
    classes: list[DefectClass]
    analysed_area_um2: float | None = None
    foil_thickness_nm: float | None = Field(None, description="t in the swelling; None: no swelling")
    thickness_source: str | None = Field(None, description="'config' or 'metadata'")
    volume_fraction: float | None = Field(None, description="cavity volume / (A t), spheres of the measured ECD")
    volume_fraction_ci: Interval | None = None
    swelling: float | None = Field(None, description="ΔV/V = Σ(π d³/6) / (A t − Σ(π d³/6)), edge-corrected")
    swelling_ci: Interval | None = Field(None, description="counting and sampling only; t taken as exact")
    dose: float | None = Field(None, description="dose read from the frame's metadata (dose_dpa, dpa, fluence, dose)")
    note: str | None = None
    labels_class: list[int] = Field(default_factory=list,
                                    description="class index (into the model's class names) of label i + 1 of the "
                                                "labels part, at entry i")


class Grain(_Doc):
    id: int = Field(..., description="the grain's id in the label mask")
    centroid_x_px: float = Field(..., description="in frame pixels")
    centroid_y_px: float = Field(..., description="in frame pixels")
    area_um2: float
    ecd_um: float = Field(..., description="equivalent circular diameter, µm")
    g: float = Field(..., description="the grain's own E112 G from its area (E1382-style)")


class GrainSummary(_Doc):
    """ASTM E112 grain size of one frame from the model's boundary map (copilot.analysis.grains says how). Sizes
    in µm (named so), of the grains inside the frame; None where the frame is uncalibrated."""

    count: int = Field(..., description="grains inside the frame")
    count_edge: int = Field(..., description="grains cut by the frame edge (half in the planimetric count, not sized)")
    analysed_area_mm2: float | None = None
    grains_per_mm2: float | None = Field(None, description="E112 planimetric N_A = (inside + ½ edge + 1) / area")
    g_planimetric: float | None = Field(None, description="E112 grain size number, planimetric (Jeffries)")
    g_planimetric_ci: Interval | None = Field(None, description="95 %, t over fields of the frame (E112 §15)")
    g_intercept: float | None = Field(None, description="E112 grain size number, intercept (Abrams three circles)")
    g_intercept_ci: Interval | None = None
    mean_intercept_um: float | None = Field(None, description="mean lineal intercept, µm")
    ecd_mean_um: float | None = None
    ecd_sd_um: float | None = None
    ecd_d10_um: float | None = None
    ecd_d50_um: float | None = None
    ecd_d90_um: float | None = None
    area_mean_um2: float | None = None
    ala_g: float | None = Field(None, description="G of the largest grain (ASTM E930)")
    ala: bool = Field(False, description="ALA condition: the largest grain is 3 G or more coarser than the frame's G")
    g_histogram: Histogram | None = Field(None, description="E1382-style: each inside grain's G from its area, "
                                                            "half-G classes (edges in G)")
    boundary_fraction: float | None = Field(None, description="share of the analysis grid on boundaries")
    note: str | None = None
    edge_policy: str = "grains cut by the frame edge count half in N_A (E112) and stay out of the sizes"
    grains: list[Grain] = Field(default_factory=list, description="the grains inside the frame")


class InclusionClassCount(_Doc):
    name: str
    count: int
    area_px: int = Field(..., description="EDS map pixels of the class's inclusions")
    count_per_mm2: float | None = Field(None, description="None when the EDS map is uncalibrated")
    area_fraction: float = Field(..., description="of the EDS map's field")


class Inclusion(_Doc):
    id: int
    inclusion_class: str = Field(..., description="first matching rule of [[eds.classes]], or 'unclassified'")
    confidence: float = Field(..., description="probability that the class's rule holds, given the counting noise")
    area_px: int = Field(..., description="EDS map pixels")
    centroid_x_px: float = Field(..., description="on the EDS map's grid")
    centroid_y_px: float
    counts: int = Field(..., description="all counts of the summed spectrum")
    fractions: dict[str, float] = Field(default_factory=dict, description="element fractions (basis), non-matrix, detected")
    fraction_sigma: dict[str, float] = Field(default_factory=dict)


class InclusionSummary(_Doc):
    """Inclusions from the frame file's EDS spectrum image (copilot.eds): classes, counts and areas per mm²."""

    basis: str = Field(..., description="atomic | weight: the basis of the fractions")
    note: str = Field(..., description="semi-quantitative: what the fractions are and are not")
    eds_shape: list[int] | None = Field(None, description="height, width of the EDS map (pixels)")
    counts_per_px: float | None = Field(None, description="mean counts per EDS pixel (all channels)")
    field_area_mm2: float | None = None
    classes: list[InclusionClassCount] = Field(default_factory=list)
    inclusions: list[Inclusion] = Field(default_factory=list)
    unavailable: str | None = Field(None, description="why the file's EDS could not be analysed")


class Measurements(_Doc):
    task: Literal["particles", "phases", "grains", "defects"]
    length_unit: Literal["nm", "px"]
    particles: ParticleSummary | None = None
    phases: PhaseSummary | None = None
    grains: GrainSummary | None = None
    defects: DefectSummary | None = None
    inclusions: InclusionSummary | None = Field(None, description="EDS frames of a config with an [eds] section")
    sufficiency: list[Sufficiency] = Field(default_factory=list)


class Trend(_Doc):
    """Least-squares slope of one quantity against acquisition time over the rolling window."""

    quantity: str = Field(..., description="d50 | ecd_mean | density | fraction:<phase>")
    unit: str = Field(..., description="unit of the slope, e.g. nm/min")
    slope: float | None
    slope_ci: Interval | None = None
    n_frames: int
    last_value: float | None = None
    trending: bool = Field(False, description="declared: the slope's 95 % interval excludes zero (held for the dwell, "
                                              "released when a 68 % interval includes zero)")
    name: str | None = Field(None, description="what a person calls it: 'mean particle size'")


class Alert(_Doc):
    kind: Literal["trend-start", "trend-stop", "jump"]
    quantity: str
    message: str
    value: float | None = None
    severity: Literal["warning", "info"] = Field("warning", description="'no longer changing' is information")
    frame_id: str | None = Field(None, description="the frame that raised it")
    acquired_at: datetime | None = Field(None, description="that frame's acquisition time")


class SeriesSummary(_Doc):
    """The stream so far: trends over a rolling window, rolling and cumulative PSD, pooled sufficiency."""

    frames: int
    frames_excluded: int = Field(0, description="FAIL frames of this session, left out of trends, PSDs and sufficiency")
    window_frames: int
    span_min: float = Field(..., description="acquisition time covered by the window, minutes")
    trends: list[Trend] = Field(default_factory=list)
    rolling_psd: Histogram | None = None
    cumulative_psd: Histogram | None = None
    sufficiency: Sufficiency | None = None
    alerts: list[Alert] = Field(default_factory=list, description="raised by this frame (also on alert.<stream>)")


class Reliability(_Doc):
    predicted_f1: float | None = Field(None, description="regressor's estimate of the frame's object F1 (seed 002)")
    predicted_precision: float | None = None
    predicted_recall: float | None = None
    predicted_per_class: dict[str, float] = Field(
        default_factory=dict, description="defects: per class, e.g. cavity_f1, cavity_precision, loop_recall")
    image_confidence: float | None = Field(None, description="mean max-probability over the frame")
    shift_score: float | None = Field(None, description="RMS z-score of the embedding vs the training embeddings")
    shift_window_mmd2: float | None = Field(None, description="MMD² of the recent frames vs the training embeddings")
    quality: dict[str, float] = Field(default_factory=dict, description="focus, noise, saturation, dynamic range")
    features: dict[str, float] = Field(default_factory=dict, description="the regressor's inputs")
    embedding: list[float] | None = Field(
        None, description="the frame's pooled embedding (what the rolling shift window holds; rebuilt from the store)"
    )


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
    session_epoch: str | None = Field(None, description="the daemon run that journaled this document (new at every start)")
    seq: int | None = Field(
        None, description="per-stream sequence number, 1, 2, 3 … without gaps, monotonic across restarts (from the store)"
    )
    frame_id: str
    origin: str
    acquired_at: datetime
    processed_at: datetime
    calibration: Calibration
    image: ImageInfo
    model: ModelRef
    timings_ms: dict[str, float] = Field(..., description="per stage: read, infer, measure, ..., and total")
    measurements: Measurements
    series: SeriesSummary | None = None
    reliability: Reliability
    verdict: Verdict
    parts: list[BinaryPart] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False)

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
