"""The synthetic microscope: simulated HAADF-STEM / BF-TEM nanoparticle frames (``stem``) and SEM microstructures
(``sem``) with exact ground truth, in-situ runs (``sintering``), named domain shifts (``domains``)."""

from copilot.sim.sem import SemParams, random_sem_params, simulate_sem
from copilot.sim.sintering import SinteringRun, TimedFrame
from copilot.sim.stem import Particle, SimFrame, SimParams, place_particles, random_params, simulate_frame
from copilot.sim.tiff import write_tiff

__all__ = ["Particle", "SemParams", "SimFrame", "SimParams", "SinteringRun", "TimedFrame", "place_particles",
           "random_params", "random_sem_params", "simulate_frame", "simulate_sem", "write_tiff"]
