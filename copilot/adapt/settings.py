"""``[adapt]``: hot swap of promoted models, and the automatic mode (off by default)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AdaptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hot_swap: bool = Field(True, description="load a newly promoted or rolled-back model between frames")
    hot_swap_interval_s: float = Field(2.0, gt=0, description="how often the model's folder is looked at")
    auto: bool = Field(False, description="adapt in the background when the stream drifts (needs the train extra)")
    after_frames: int = Field(20, ge=1, description="consecutive frames with the rolling shift window past the warn "
                                                    "threshold before an automatic adaptation starts")
    method: Literal["selftrain", "appearance"] = "selftrain"
    frames: int = Field(50, ge=2, description="the stream's most recent frames it learns from")
    steps: int | None = Field(None, ge=1, description="optimizer steps (default: the method's)")
    threads: int = Field(1, ge=1, description="CPU threads for it (the daemon keeps the rest)")
    cooldown_min: float = Field(60.0, ge=0, description="at most one automatic adaptation per this many minutes")
