"""Particles: instance labels with touching particles split, per-particle shape and size in nm, per-frame PSD.

A particle is a connected region of the model's ``particle`` class; pixels of its ``boundary`` class go to the
nearest particle by a watershed on the particle probability, which is what splits touching particles. Models without
a boundary class fall back to a distance-transform watershed. Geometry: analysis/shape.py (regionprops' definitions,
computed for all particles at once).

Edge policy: particles cut by the frame edge are counted (count, density) but kept out of every size statistic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed

from copilot.analysis.measurements import FrameMeasurements
from copilot.analysis.settings import AnalysisSettings
from copilot.analysis.shape import shape_table
from copilot.analysis.stats import bootstrap_interval, lognormal_fit, psd_histogram, sufficiency
from copilot.inference.preprocess import nearest_resample
from copilot.inference.segmentation import Segmentation
from copilot.document.schema import Measurements, Particle, ParticleSummary

def split_instances(probabilities: np.ndarray, class_names: tuple[str, ...], min_area_px: float = 4,
                    labels: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (int32, 0 = background) from class probabilities (C, h, w); ``labels``: their arg-max, when
    the caller has it (Segmentation.labels)."""
    labels = np.argmax(probabilities, axis=0) if labels is None else labels
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


def frame_intensity_means(seg: Segmentation, instances: np.ndarray, n: int) -> np.ndarray:
    """Mean raw frame pixel value per instance, from the frame pixel at the centre of each grid pixel (when the
    grid is coarser than the frame this samples the particle's pixels evenly instead of reading all of them)."""
    if n == 0:
        return np.zeros(0)
    pixels = seg.frame.pixels
    if instances.shape != pixels.shape:
        pixels = nearest_resample(pixels, instances.shape)
    return np.asarray(ndi.mean(pixels, instances, np.arange(1, n + 1)))


def measure_particles(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Measure every particle. Lengths in nm when the frame is calibrated, otherwise in px (and said so)."""
    cfg = settings or AnalysisSettings()
    nm = seg.nm_per_px
    min_px = max(cfg.min_area_px, cfg.min_area_nm2 / nm**2) if nm is not None else cfg.min_area_px
    instances = split_instances(seg.probabilities, seg.class_names, min_px, seg.labels)
    u = nm if nm is not None else 1.0  # length unit per grid pixel
    s = seg.frame_px_per_px
    frame_nm = seg.frame.nm_per_px
    h, w = instances.shape
    n = int(instances.max(initial=0))
    foreground_p = 1.0 - seg.probabilities[seg.class_names.index("background")]
    confidence = np.asarray(ndi.mean(foreground_p, instances, np.arange(1, n + 1))) if n else np.zeros(0)
    intensity = frame_intensity_means(seg, instances, n)
    t = shape_table(instances)
    xs, ys = (t.centroid_col + 0.5) * s - 0.5, (t.centroid_row + 0.5) * s - 0.5
    ecd, aspect, circ, solid = t.ecd, t.aspect_ratio, t.circularity, t.solidity
    particles = [
        Particle(
            id=int(t.label[i]),
            centroid_x_px=float(xs[i]),
            centroid_y_px=float(ys[i]),
            centroid_x_nm=float(xs[i] * frame_nm) if frame_nm else None,
            centroid_y_nm=float(ys[i] * frame_nm) if frame_nm else None,
            area=float(t.area[i]) * u**2,
            ecd=float(ecd[i]) * u,
            feret_max=float(t.feret_max[i]) * u,
            feret_min=float(t.feret_min[i]) * u,
            aspect_ratio=float(aspect[i]),
            circularity=float(circ[i]),
            solidity=float(solid[i]),
            mean_intensity=float(intensity[i]),
            confidence=float(confidence[i]),
            touches_edge=bool(t.touches_edge[i]),
        )
        for i in range(n)
    ]
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
