"""Analysis settings ([analysis] in the config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AnalysisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_area_nm2: float = Field(2.0, ge=0, description="smaller particles are dropped (calibrated frames)")
    min_area_px: float = Field(4, ge=0, description="smaller particles are dropped (uncalibrated frames)")
    psd_min: float = Field(1.0, gt=0, description="lowest PSD bin edge, in the frame's length unit")
    psd_max: float = Field(100.0, gt=0)
    psd_bins: int = Field(30, ge=2, le=500)
    psd_scale: Literal["log", "linear"] = "log"
    outline_level: float = Field(0.5, gt=0, lt=1, description="particles: the foreground probability a particle's "
                                 "outline is drawn at. 0.5 is the edge of the rounded (spherical) particles the shipped "
                                 "model was trained on; flat-topped, faceted particles (full contrast up to the rim) "
                                 "come out oversized there by ~9 % in ECD with particles-stem 0.6.0 and 0.7.0, and "
                                 "0.8 measures them within 2 % (bench/accuracy/particle_shapes.md)")
    bootstrap_resamples: int = Field(1000, ge=100, le=100000)
    phase_block_px: int = Field(64, ge=8, description="block edge for the block bootstrap of phase fractions")
    point_grid_spacing_px: int = Field(16, ge=2, description="spacing of the ASTM E562 point-count grid")
    morphology: bool = Field(True, description="phases: widths, mean intercept, free path, lamellar spacing")
    intercept_line_spacing_px: int = Field(8, ge=1, description="spacing of the parallel test lines (morphology)")
    intercept_angles: int = Field(18, ge=2, le=180, description="orientations of the test-line families")
    lamellar_anisotropy: float = Field(2.0, gt=1, description="lamellar when intercepts/length vary this much (max/min)")
    foil_thickness_nm: float | None = Field(None, gt=0, description="defects: foil thickness for swelling "
                                            "(else the frame's metadata foil_thickness_nm)")
    defect_min_confidence: float = Field(0.7, ge=0, lt=1, description="defects: a region whose mean class probability "
                                         "is below this is not a defect (noise and bend-contour blobs)")
    grain_boundary_high: float = Field(0.25, gt=0, lt=1, description="grains: boundary probability that seeds a boundary")
    grain_boundary_low: float = Field(0.08, gt=0, lt=1, description="grains: a boundary continues down to this probability")
    grain_close_px: int = Field(2, ge=0, le=8, description="grains: bridge boundary gaps up to this many working px")
    grain_fields: int = Field(3, ge=2, le=10, description="grains: fields per side for E112 95 % intervals")
    grain_ala_gap: float = Field(3.0, gt=0, description="grains: ALA when the largest grain is this many G coarser")
    target_precision_rel: float = Field(0.02, gt=0, lt=1, description="'enough' when the 95 % half-width is within this")

    @model_validator(mode="after")
    def _psd_range(self) -> "AnalysisSettings":
        if self.psd_max <= self.psd_min:
            raise ValueError("psd_max must be greater than psd_min")
        return self


class SeriesSettings(BaseModel):
    """[series]: trends and alerts across the frames of one stream."""

    model_config = ConfigDict(extra="forbid")
    window_frames: int = Field(20, ge=3, description="frames in the rolling window for trends and rolling PSD")
    min_trend_frames: int = Field(6, ge=3, description="no trend is claimed from fewer frames")
    jump_sigma: float = Field(4.0, gt=0, description="a jump: this many residual SDs off the window's trend line…")
    jump_rel: float = Field(0.10, ge=0, description="…and at least this fraction of the predicted value")
    dwell_frames: int = Field(3, ge=1, description="a trend starts or stops only after this many frames in a row agree")
    min_sized_per_frame: int = Field(5, ge=0, description="a frame sizing fewer particles never reads 'enough'")
