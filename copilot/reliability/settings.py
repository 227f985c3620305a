"""The [verdict] section of the config, importable without the scoring code (and without onnxruntime)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VerdictThresholds(BaseModel):
    """[verdict] in the config."""

    model_config = ConfigDict(extra="forbid")
    min_objects: int = Field(5, ge=0, description="fewer sized objects than this: 'too few objects to measure'")
    warn_f1: float = Field(0.8, ge=0, le=1, description="predicted F1 below this: warn")
    fail_f1: float = Field(0.5, ge=0, le=1, description="predicted F1 below this: fail")
    explain_f1: float = Field(0.9, ge=0, le=1, description="predicted F1 below this: image-quality reasons (focus, "
                              "dose) are given from the training's 5 %/95 % tails, not only beyond its 1 %/99 %")
    warn_image_confidence: float = Field(0.85, ge=0, le=1)
    fail_image_confidence: float = Field(0.6, ge=0, le=1)
    shift_warn_factor: float = Field(1.0, gt=0, description="shift score above this × training p99: warn")
    shift_fail_factor: float = Field(2.0, gt=0, description="shift score above this × training p99: fail")
    saturated_fraction: float = Field(0.01, ge=0, le=1)
    blank_dynamic_range: float = Field(1e-3, ge=0, description="below this fraction of the detector range: blank")
    fail_snr: float = Field(1.0, ge=0, description="signal-to-noise below this: fail (no structure above the noise; "
                                                   "every simulated frame below 1 had object F1 < 0.5)")
    shift_window: int = Field(10, ge=3, description="frames in the rolling window for the shift MMD²")
    min_grains: int = Field(50, ge=0, description="grains: fewer counted than this (E112: 50 per field): warn")
    grain_max_boundary_fraction: float = Field(0.7, gt=0, le=1, description="grains: boundaries cover more: fail")
    min_grain_px: float = Field(10.0, ge=0, description="grains: mean ECD under this many grid px: warn")
    grain_g_ci_half: float = Field(0.5, gt=0, description="grains: planimetric G's 95 % half-width above this: warn")
    grain_predicted_g_error: float = Field(0.5, gt=0, description="grains: the reliability regressor's predicted "
                                           "|ΔG| above this (E112 shift target ±0.5): warn")
    grain_method_gap: float = Field(1.0, gt=0, description="grains: planimetric and intercept G further apart: warn")
    eds_min_counts_per_px: float = Field(25.0, ge=0, description="EDS: fewer counts per map pixel: warn")
    eds_min_confidence: float = Field(0.7, ge=0, le=1, description="EDS: mean inclusion class confidence below: warn")
    eds_max_unclassified: float = Field(0.2, ge=0, le=1, description="EDS: more inclusions matching no rule: warn")
    min_width_samples: int = Field(50, ge=0, description="phases: fewer medial-axis samples of a phase: warn")
    phase_predicted_fraction_error: float = Field(5.0, gt=0, description="phases: the reliability regressor's "
                                                  "predicted largest phase-fraction error above this (pp): warn")
