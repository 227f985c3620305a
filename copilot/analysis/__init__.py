"""Analysis: Segmentation → Measurements (particles, phases, series across frames)."""
