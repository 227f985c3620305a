"""Analysis: Segmentation → FrameMeasurements (particles or phases), and series across frames."""

from __future__ import annotations

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings
from copilot.inference.segmentation import Segmentation


def measure(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Dispatch on the model's task: particle sizing, phase fractions, grain size or radiation defects."""
    if seg.task == "defects":
        from copilot.analysis.defects import measure_defects

        return measure_defects(seg, settings)
    if seg.task == "grains":
        from copilot.analysis.grain_frame import measure_grain_frame

        return measure_grain_frame(seg, settings)
    if seg.task == "phases":
        from copilot.analysis.phases import measure_phases

        return measure_phases(seg, settings)
    from copilot.analysis.particles import measure_particles

    return measure_particles(seg, settings)
