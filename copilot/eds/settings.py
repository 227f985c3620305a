"""[eds] in the config: which lines to measure, k-factors, matrix elements, and the inclusion-class rules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from copilot.eds.lines import LINES, element


class ClassRule(BaseModel):
    """One inclusion class: every ``min`` element at least, every ``max`` element at most (fractions, 0–1)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)


def default_rules() -> list[ClassRule]:
    """ASTM E2142-style classes on atomic fractions of the non-matrix elements; the first rule that holds wins."""
    r = ClassRule
    return [
        r(name="oxysulfide", min={"O": 0.15, "S": 0.10}, max={"N": 0.10}),
        r(name="complex", min={"O": 0.15, "N": 0.10}),
        r(name="oxide", min={"O": 0.25}, max={"S": 0.05, "N": 0.10}),
        r(name="sulfide", min={"S": 0.25}, max={"O": 0.10}),
        r(name="nitride", min={"N": 0.20}, max={"O": 0.10}),
        r(name="carbide", min={"C": 0.20}, max={"O": 0.10, "N": 0.10, "S": 0.05}),
    ]


class EdsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[str] = Field(
        default_factory=lambda: ["C_Ka", "N_Ka", "O_Ka", "Mg_Ka", "Al_Ka", "Si_Ka", "S_Ka", "Ca_Ka", "Ti_Ka",
                                 "Cr_Ka", "Mn_Ka", "Fe_La", "Fe_Ka", "Nb_La"],
        description="lines whose net intensity is measured (copilot.eds.lines.LINES names)")
    k_factors: dict[str, float] = Field(default_factory=dict,
                                        description="Cliff–Lorimer k per line (relative to Fe Kα = 1); missing → 1")
    matrix_elements: list[str] = Field(["Fe"], description="left out of the fractions and the classes (the matrix)")
    quant_lines: dict[str, str] = Field(default_factory=lambda: {"Fe": "Fe_Ka"},
                                        description="element → line used for its fraction when several are measured")
    basis: Literal["atomic", "weight"] = Field("atomic", description="fractions the class rules read")
    fwhm_mn_ev: float = Field(130.0, gt=30, lt=400, description="detector resolution at Mn Kα")
    window_fwhm: float = Field(1.0, gt=0.2, le=3, description="peak window: ± this many FWHM")
    background_channels: int = Field(8, ge=2, description="channels averaged on each side for the linear background")
    detection_sigma: float = Field(3.0, ge=0, description="a line counts only above this many σ of its background")
    min_area_px: int = Field(4, ge=1, description="smaller objects are left out")
    classes: list[ClassRule] = Field(default_factory=default_rules)

    @model_validator(mode="after")
    def _known_lines(self) -> "EdsSettings":
        unknown = [ln for ln in [*self.lines, *self.k_factors, *self.quant_lines.values()] if ln not in LINES]
        if unknown:
            raise ValueError(f"unknown X-ray line(s) {unknown}; known: {sorted(LINES)}")
        missing = [ln for ln in self.quant_lines.values() if ln not in self.lines]
        if missing:
            raise ValueError(f"quant_lines names line(s) not in lines: {missing}")
        return self

    def quantified_lines(self) -> list[str]:
        """One line per element: the configured quant line, else the element's first listed line."""
        chosen: dict[str, str] = {}
        for ln in self.lines:
            chosen.setdefault(element(ln), self.quant_lines.get(element(ln), ln))
        return list(chosen.values())
