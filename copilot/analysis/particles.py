"""Particles: instance labels with touching particles split, sizes in nm (or px when uncalibrated).

A particle is a connected region of the model's ``particle`` class; pixels of its ``boundary`` class are given to the
nearest particle by a watershed on the particle probability, which is what splits touching particles. Models without
a boundary class fall back to a distance-transform watershed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential, watershed

from copilot.analysis.measurements import FrameMeasurements
from copilot.inference.segmentation import Segmentation
from copilot.publish.schema import Measurements, Particle, ParticleSummary


def split_instances(probabilities: np.ndarray, class_names: tuple[str, ...], min_area_px: float = 4) -> np.ndarray:
    """Instance labels (int32, 0 = background) from class probabilities (C, h, w)."""
    labels = np.argmax(probabilities, axis=0)
    pid = class_names.index("particle")
    core = labels == pid
    if "boundary" in class_names:
        foreground = core | (labels == class_names.index("boundary"))
        markers, _ = ndi.label(core)
        instances = watershed(-probabilities[pid], markers, mask=foreground)
    else:
        foreground = core
        distance = ndi.distance_transform_edt(foreground)
        regions, _ = ndi.label(foreground)
        peaks = peak_local_max(distance, min_distance=3, labels=regions, exclude_border=False)
        markers = np.zeros_like(regions)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        instances = watershed(-distance, markers, mask=foreground)
    sizes = np.bincount(instances.ravel())
    small = sizes < min_area_px
    small[0] = False
    instances[small[instances]] = 0
    return relabel_sequential(instances)[0].astype(np.int32)


def size_statistics(ecd: np.ndarray) -> dict[str, float | None]:
    """Mean, sd and D10/D50/D90 of equivalent diameters (number-weighted). None for an empty set."""
    if ecd.size == 0:
        return dict(ecd_mean=None, ecd_sd=None, d10=None, d50=None, d90=None)
    d10, d50, d90 = np.percentile(ecd, [10, 50, 90])
    sd = float(np.std(ecd, ddof=1)) if ecd.size > 1 else None
    return dict(ecd_mean=float(ecd.mean()), ecd_sd=sd, d10=float(d10), d50=float(d50), d90=float(d90))


def measure_particles(seg: Segmentation, min_area_nm2: float = 2.0, min_area_px: float = 4) -> FrameMeasurements:
    """Measure every particle. Lengths in nm when the frame is calibrated, otherwise in px (and said so).

    Particles touching the frame edge are counted but excluded from size statistics.
    """
    nm = seg.nm_per_px
    min_px = max(min_area_px, min_area_nm2 / nm**2) if nm is not None else min_area_px
    instances = split_instances(seg.probabilities, seg.class_names, min_px)
    unit_per_px = nm if nm is not None else 1.0
    s = seg.frame_px_per_px
    h, w = instances.shape
    particles = []
    for region in regionprops(instances):
        r0, c0, r1, c1 = region.bbox
        cy, cx = region.centroid
        particles.append(
            Particle(
                id=int(region.label),
                centroid_x_px=float((cx + 0.5) * s - 0.5),
                centroid_y_px=float((cy + 0.5) * s - 0.5),
                area=float(region.area) * unit_per_px**2,
                ecd=float(region.equivalent_diameter_area) * unit_per_px,
                touches_edge=bool(r0 == 0 or c0 == 0 or r1 == h or c1 == w),
            )
        )
    sized = np.array([p.ecd for p in particles if not p.touches_edge])
    n_edge = sum(p.touches_edge for p in particles)
    summary = ParticleSummary(
        count=len(particles), count_edge=n_edge, count_sized=int(sized.size), particles=particles, **size_statistics(sized)
    )
    unit = "nm" if nm is not None else "px"
    return FrameMeasurements(seg, instances, Measurements(task="particles", length_unit=unit, particles=summary))
