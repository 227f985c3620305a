"""Particles: instance labels with touching particles split, per-particle shape and size in nm, per-frame PSD.

A particle is a connected region of the model's ``particle`` class; pixels of its ``boundary`` class go to the
nearest particle by a watershed on the particle probability, which is what splits touching particles. Models without
a boundary class fall back to a distance-transform watershed. Geometry comes from scikit-image's regionprops; the
minimum Feret diameter (which regionprops lacks) from rotating calipers over the convex hull of pixel corners.

Edge policy: particles cut by the frame edge are counted (count, density) but kept out of every size statistic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.feature import peak_local_max
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential, watershed

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings
from copilot.analysis.stats import bootstrap_interval, lognormal_fit, psd_histogram, sufficiency
from copilot.inference.segmentation import Segmentation
from copilot.publish.schema import Measurements, Particle, ParticleSummary

_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


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


def feret_min(coords: np.ndarray) -> float:
    """Minimum caliper width (px) of a pixel set, measured on the outer corners of its pixels.

    >>> feret_min(np.argwhere(np.ones((3, 7))))
    3.0
    """
    pts = (coords[:, None, :] + _CORNERS[None]).reshape(-1, 2)
    try:
        hull = pts[ConvexHull(pts).vertices]
    except QhullError:
        return 1.0
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    proj = hull @ normals.T
    return float((proj.max(axis=0) - proj.min(axis=0)).min())


def size_statistics(ecd: np.ndarray) -> dict[str, float | None]:
    """Mean, sd and D10/D50/D90 of equivalent diameters (number-weighted). None for an empty set."""
    if ecd.size == 0:
        return dict(ecd_mean=None, ecd_sd=None, d10=None, d50=None, d90=None)
    d10, d50, d90 = np.percentile(ecd, [10, 50, 90])
    sd = float(np.std(ecd, ddof=1)) if ecd.size > 1 else None
    return dict(ecd_mean=float(ecd.mean()), ecd_sd=sd, d10=float(d10), d50=float(d50), d90=float(d90))


def frame_intensity_means(seg: Segmentation, instances: np.ndarray, n: int) -> np.ndarray:
    """Mean raw frame pixel value per instance (labels taken to the frame grid by nearest neighbour)."""
    if n == 0:
        return np.zeros(0)
    pixels = seg.frame.pixels
    if instances.shape != pixels.shape:
        rows = np.minimum(((np.arange(pixels.shape[0]) + 0.5) / seg.frame_px_per_px).astype(int), instances.shape[0] - 1)
        cols = np.minimum(((np.arange(pixels.shape[1]) + 0.5) / seg.frame_px_per_px).astype(int), instances.shape[1] - 1)
        instances = instances[np.ix_(rows, cols)]
    return np.asarray(ndi.mean(pixels.astype(np.float64), instances, np.arange(1, n + 1)))


def measure_particles(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Measure every particle. Lengths in nm when the frame is calibrated, otherwise in px (and said so)."""
    cfg = settings or AnalysisSettings()
    nm = seg.nm_per_px
    min_px = max(cfg.min_area_px, cfg.min_area_nm2 / nm**2) if nm is not None else cfg.min_area_px
    instances = split_instances(seg.probabilities, seg.class_names, min_px)
    u = nm if nm is not None else 1.0  # length unit per grid pixel
    s = seg.frame_px_per_px
    frame_nm = seg.frame.nm_per_px
    h, w = instances.shape
    n = int(instances.max(initial=0))
    foreground_p = 1.0 - seg.probabilities[seg.class_names.index("background")]
    confidence = np.asarray(ndi.mean(foreground_p, instances, np.arange(1, n + 1))) if n else np.zeros(0)
    intensity = frame_intensity_means(seg, instances, n)
    particles = []
    for region in regionprops(instances):
        r0, c0, r1, c1 = region.bbox
        cy, cx = region.centroid
        x_px, y_px = (cx + 0.5) * s - 0.5, (cy + 0.5) * s - 0.5
        minor = region.axis_minor_length
        perimeter = region.perimeter
        i = region.label - 1
        particles.append(Particle(
            id=int(region.label),
            centroid_x_px=float(x_px),
            centroid_y_px=float(y_px),
            centroid_x_nm=float(x_px * frame_nm) if frame_nm else None,
            centroid_y_nm=float(y_px * frame_nm) if frame_nm else None,
            area=float(region.area) * u**2,
            ecd=float(region.equivalent_diameter_area) * u,
            feret_max=float(region.feret_diameter_max) * u,
            feret_min=feret_min(region.coords) * u,
            aspect_ratio=float(region.axis_major_length / minor) if minor > 0 else float("inf"),
            circularity=float(min(1.0, 4 * np.pi * region.area / perimeter**2)) if perimeter > 0 else 1.0,
            solidity=float(region.solidity),
            mean_intensity=float(intensity[i]),
            confidence=float(confidence[i]),
            touches_edge=bool(r0 == 0 or c0 == 0 or r1 == h or c1 == w),
        ))
    sized = np.array([p.ecd for p in particles if not p.touches_edge])
    area_um2 = h * w * nm**2 / 1e6 if nm is not None else None
    stats = size_statistics(sized)
    summary = ParticleSummary(
        count=len(particles),
        count_edge=sum(p.touches_edge for p in particles),
        count_sized=int(sized.size),
        analysed_area_um2=area_um2,
        density_per_um2=len(particles) / area_um2 if area_um2 else None,
        ecd_mean_ci=bootstrap_interval(sized, "mean", cfg.bootstrap_resamples),
        d50_ci=bootstrap_interval(sized, "median", cfg.bootstrap_resamples),
        lognormal=lognormal_fit(sized),
        psd=psd_histogram(sized, cfg.psd_min, cfg.psd_max, cfg.psd_bins, cfg.psd_scale),
        particles=particles,
        **stats,
    )
    enough = sufficiency("d50", summary.d50, summary.d50_ci, summary.count_sized, cfg.target_precision_rel,
                         summary.count_sized, scope="frame")
    unit = "nm" if nm is not None else "px"
    return FrameMeasurements(seg, instances, Measurements(task="particles", length_unit=unit, particles=summary,
                                                          sufficiency=[enough]))
