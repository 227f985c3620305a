"""The working scale follows the particles: each frame is resampled so its particles land in the sizes the network
sizes best (the card declares the sizes it was trained on, ``trained_particle_px``: equivalent diameters in working
pixels).

Choice per frame, per stream, from a median particle ECD of D nm (``working_nm_per_px``):

* D ≥ ``COARSE_PX`` working px at the card's nm/px → working nm/px = D / ``COARSE_PX`` (a coarser grid: cheaper,
  and a large particle spans enough working pixels that its outline is placed to a small fraction of its size);
* D < ``MIN_PX`` working px → D / ``TARGET_PX`` (a finer grid, at most 2× upsampled: a small particle spans too few
  working pixels to be sized to a few %);
* otherwise the card's nm/px (no extra cost).

D comes from the previous frame of the same stream at the same nm/px (unless that frame's verdict failed: the daemon
calls :meth:`ScalePolicy.forget`, so a noise frame's specks do not set the next frame's scale), else from the
network's first pass at the card's scale (the median ECD of connected foreground components of at least
``MIN_AREA_PX``, read off the probabilities in a few ms); when that pass's particles ask for another scale (by more
than ``RERUN_CHANGE``) the frame runs once more. Never finer than half the frame's pixel, never coarser than a working
grid of ``MIN_GRID_PX`` pixels across. Cost: nothing for a frame at the card's scale; one more network pass for the
first frame of a stream whose particles are out of range, and for a frame where they jumped out of it; a finer grid
(small particles) costs up to 4× the network's time, a coarser one less. Measured with particles-stem 0.2.0 on a
sintering run (0.5 nm/px, bench/accuracy): D50 of 60 nm particles within 5.6 % at 18 working px, 2.3 % at 35; of 3 nm
particles 6.2 % at 6 px, 0.1 % at 12. Models without a declared particle range (phases) keep the card's scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from copilot.frame import Frame
from copilot.inference.card import ModelCard

MAX_UPSAMPLING = 2.0
TARGET_PX = 14.0  # median ECD a finer grid aims at (the trained medians span 7-28 working px)
MIN_PX = 6.5  # median ECDs below this (working px, at the card's scale) ask for a finer grid: below the trained
# medians (7-28 px), so in-domain frames keep one pass
COARSE_PX = 28.0  # median ECDs above this ask for a coarser grid, one where they are this size
RERUN_CHANGE = 0.25  # a first pass is rerun when the scale its particles ask for differs by more than this
MIN_GRID_PX = 96
MIN_OBJECTS = 3
MIN_AREA_PX = 8  # components smaller than this (ECD 3.2 working px) are not counted as particles


def frame_px_per_px(frame: Frame, working_nm_per_px: float) -> float:
    """Frame pixels per working pixel for a working scale, within the upsampling and grid-size limits."""
    if frame.nm_per_px is None:
        return 1.0
    factor = working_nm_per_px / frame.nm_per_px
    edge = max(frame.pixels.shape[:2])
    return float(np.clip(factor, 1.0 / MAX_UPSAMPLING, max(edge / MIN_GRID_PX, 1.0)))


def median_particle_px(probabilities: np.ndarray, class_names: tuple[str, ...]) -> tuple[float | None, int]:
    """Median equivalent diameter (working px) of the foreground's connected components (``MIN_AREA_PX`` or more)
    not cut by the edge, and how many there are; None with fewer than ``MIN_OBJECTS``."""
    fg = probabilities[class_names.index("background")] < 0.5
    lab, n = ndi.label(fg)
    if n == 0:
        return None, 0
    area = np.bincount(lab.ravel())[1:]
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    keep = np.ones(n, bool)
    keep[edge[edge > 0] - 1] = False
    keep &= area >= MIN_AREA_PX  # a low-dose frame's noise specks must not pull it to a finer scale
    if keep.sum() < MIN_OBJECTS:
        return None, int(keep.sum())
    return float(np.median(np.sqrt(4 * area[keep] / np.pi))), int(keep.sum())


@dataclass
class ScaleChoice:
    """What was chosen for one frame (for the document's timings/notes and the verdict)."""

    frame_px_per_px: float
    passes: int
    median_particle_px: float | None
    reason: str


@dataclass
class ScalePolicy:
    """Per-stream memory of the particles' size, and the choice described in the module docstring."""

    card: ModelCard
    # stream → (frame nm/px, median ECD nm, the frame it was measured on)
    last: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    remember: bool = True  # False: every frame starts at the card's scale (same result whatever the frame order)

    @property
    def active(self) -> bool:
        return self.card.trained_particle_px is not None and "background" in self.card.class_names

    def measures(self, frame: Frame) -> bool:
        """Whether the scale follows this frame's particles (``review`` measures them): a particle model and a
        calibrated frame."""
        return self.active and frame.nm_per_px is not None

    def working_nm_per_px(self, d_nm: float) -> float:
        """Working nm/px for particles of median ECD ``d_nm`` (module docstring)."""
        card_nm = self.card.working_nm_per_px
        if d_nm / card_nm > COARSE_PX:
            return d_nm / COARSE_PX
        if d_nm / card_nm < MIN_PX:
            return d_nm / TARGET_PX
        return card_nm

    def first_guess(self, frame: Frame) -> tuple[float, str]:
        """Frame pixels per working pixel for the first pass."""
        default = frame_px_per_px(frame, self.card.working_nm_per_px)
        if not self.measures(frame):
            return default, "card scale"
        prior = self.last.get(frame.stream) if self.remember else None
        if prior is not None and abs(prior[0] - frame.nm_per_px) <= 1e-3 * frame.nm_per_px:
            return frame_px_per_px(frame, self.working_nm_per_px(prior[1])), "previous frame of the stream"
        return default, "card scale (coarse pass)"

    def forget(self, stream: str, frame_id: str) -> None:
        """The stream's next frame does not start from ``frame_id``'s particles (its verdict failed: noise specks,
        a blank frame, a photograph); a later frame's memory stays."""
        if stream in self.last and self.last[stream][2] == frame_id:
            del self.last[stream]

    def review(self, frame: Frame, factor: float, probabilities: np.ndarray) -> tuple[float | None, float | None]:
        """After a pass at ``factor``: a better factor if the particles ask for another scale (else None), and the
        median particle ECD in working px."""
        if not self.measures(frame):
            return None, None
        med, _ = median_particle_px(probabilities, tuple(self.card.class_names))
        if med is None:
            return None, None
        d_nm = med * factor * frame.nm_per_px
        self.last[frame.stream] = (frame.nm_per_px, d_nm, frame.frame_id)
        better = frame_px_per_px(frame, self.working_nm_per_px(d_nm))
        if abs(better - factor) <= RERUN_CHANGE * factor:  # close enough, or clamped to the limits already
            return None, med
        return better, med


def outside_trained_scale(seg, card: ModelCard) -> str | None:
    """Why the network saw this frame at a scale it was not trained on, or None: the resampling factor against the
    trained one (card's working nm/px over its trained frame nm/px range) and, for particles, their median ECD on
    the working grid against ``trained_particle_px``. Judges what the network saw, not the frame's raw nm/px."""
    lo, hi = card.trained_nm_per_px_range
    f_lo, f_hi = card.working_nm_per_px / hi, card.working_nm_per_px / lo
    f = seg.frame_px_per_px
    if card.trained_particle_px is not None and "background" in seg.class_names:
        med = seg.particle_px  # measured by the scale choice on these probabilities
        if med is None:
            med, _ = median_particle_px(seg.probabilities, tuple(seg.class_names))
        elif not np.isfinite(med):
            med = None
        p_lo, p_hi = card.trained_particle_px
        if med is not None and not p_lo <= med <= p_hi:
            return (f"magnification outside the trained range (particles {med:.1f} px on the working grid; trained "
                    f"{p_lo:g}–{p_hi:g} px)")
        if f >= 1 / MAX_UPSAMPLING - 1e-6:  # resampled within limits: the particle scale is what matters
            return None
    if not f_lo * 0.98 <= f <= f_hi * 1.02:
        return (f"magnification outside the trained range (resampled {1 / f:.3g}×; trained "
                f"{1 / f_hi:.3g}–{1 / f_lo:.3g}×)")
    return None
