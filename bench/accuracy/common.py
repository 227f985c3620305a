"""What the accuracy bench's modules share: where outputs go, the targets, the console, number formatting."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = Path(__file__).resolve().parent
RESULTS = OUT / "results.json"
REPORT = OUT / "report.md"
DIAGNOSIS = OUT / "diagnosis.md"
MIN_D50_PARTICLES = 5

# targets from the issues (#5 detection and fractions, #10 sizes against a standard)
TARGETS = {
    "particles_in_domain_f1": 0.95,
    "particles_in_domain_d50_rel_error": 0.02,
    "particles_in_domain_ecd_rel_error_median": 0.03,
    "particles_shifted_f1": 0.85,
    "phases_fraction_error_pp": 1.5,
    "known_shapes_median_ecd_rel_error": 0.02,
    "known_shapes_max_ecd_rel_error_ge_3nm": 0.05,
    "known_shapes_feret_rel_error": 0.03,
    "sintering_d50_rel_error": 0.03,
}

console = Console(log_path=False, width=120)


def _fmt(v, pct=False, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}f}"
