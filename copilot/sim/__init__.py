"""The synthetic microscope: simulated HAADF-STEM frames with exact ground truth (training data, demo, tests)."""

from copilot.sim.sintering import SinteringRun, TimedFrame
from copilot.sim.stem import Particle, SimFrame, SimParams, place_particles, random_params, simulate_frame
from copilot.sim.tiff import write_tiff

__all__ = ["Particle", "SimFrame", "SimParams", "SinteringRun", "TimedFrame", "place_particles", "random_params",
           "simulate_frame", "write_tiff"]
