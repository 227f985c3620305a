"""Particles: instance labels with touching particles split, per-particle shape and size in nm, per-frame PSD.

A particle is a connected region of the model's ``particle`` class; pixels of its ``boundary`` class go to the
nearest particle by a watershed on the particle probability, which is what splits touching particles. Models without
a boundary class fall back to a distance-transform watershed. That labelling, on the working grid, only says which
particle is where: every length, area and shape comes from the outline at the frame's own resolution or finer
(``copilot.analysis.geometry``: the probability field's 0.5 iso-line inside each particle's box), measured with
regionprops' definitions for all particles at once (``copilot.analysis.shape``).

Edge policy: particles cut by the frame edge are counted (count, density) but kept out of every size statistic.
Resolution: particles whose ECD is below ``RESOLVABLE_PX`` frame pixels are counted but not sized; a frame where
every particle is that small says so (``ParticleStats.note``) instead of reporting sizes.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from copilot.analysis.geometry import (LEVEL, RefinedParticles, outline_table, refine_particles, refinement,
                                       split_necks)
from copilot.analysis.measurements import FrameMeasurements, Measures, ParticleStats, ParticleTable
from copilot.analysis.settings import AnalysisSettings
from copilot.analysis.shape import ShapeTable
from copilot.analysis.stats import lognormal_fit, mean_interval, median_interval, psd_histogram, sufficiency
from copilot.analysis.instances import drop_small, find_objects, label, watershed_touching
from copilot.analysis.kernels import kernel
from copilot.inference.preprocess import nearest_indices
from copilot.inference.segmentation import Segmentation

RESOLVABLE_PX = 3.0  # smallest ECD (frame pixels) that is sized: below it a disc is a handful of pixels
CONVEX_SOLIDITY = 0.985  # refined outlines less solid than this are checked for a neck (geometry.split_necks)…
NECK_FERET_RATIO = 1.4  # …when also this elongated (two unequal discs, 2:1, joined at 70 %: 1.4)

TIP_FRAGMENT_PX = 2  # a core piece this small touching another only at a corner belongs to it (a thin tip)


def core_markers(core: np.ndarray) -> np.ndarray:
    """One watershed marker per particle core: the core's 4-connected pieces (``ndi.label``), except that a piece of
    at most ``TIP_FRAGMENT_PX`` pixels touching exactly one larger piece at a corner is part of it (the pointed tip of
    a thin particle, whose boundary ring cuts its core diagonally, would otherwise be split off as a particle). Labels
    joined away are left unused (``drop_small`` numbers the instances 1..k). Only the core's end pixels (at most one
    4-neighbour in the core) are looked at closely, so the cost stays about that of the labelling."""
    markers, n = label(core)
    if n < 2:
        return markers
    w = core.shape[1]
    pad = np.pad(core, 1)
    ends = core & (pad[:-2, 1:-1].astype(np.uint8) + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:] <= 1)

    compiled = kernel("join_tips")
    if compiled is not None:  # the same loop, compiled
        compiled(markers, np.flatnonzero(ends), n, TIP_FRAGMENT_PX)
        return markers

    def window(r: int, c: int, k: int) -> tuple[slice, slice]:
        return slice(max(r - k, 0), r + k + 1), slice(max(c - k, 0), c + k + 1)

    def small(r: int, c: int) -> bool:  # a 4-connected piece of ≥ 3 px has 3 of them within 2 px of any of its own
        return np.count_nonzero(markers[window(r, c, 2)] == markers[r, c]) <= TIP_FRAGMENT_PX

    done: set[int] = set()
    for p in np.flatnonzero(ends):
        r, c = divmod(int(p), w)
        own = int(markers[r, c])
        if own in done or not small(r, c):
            continue
        done.add(own)
        rows, cols = np.nonzero(markers[window(r, c, 1)] == own)
        rows, cols = rows + max(r - 1, 0), cols + max(c - 1, 0)  # the piece: all within a pixel of (r, c)
        larger = set()
        for y, x in zip(rows, cols):
            ys, xs = np.nonzero(markers[window(y, x, 1)])
            for yy, xx in zip(ys + max(y - 1, 0), xs + max(x - 1, 0)):
                if markers[yy, xx] != own and not small(yy, xx):
                    larger.add(int(markers[yy, xx]))
        if len(larger) == 1:
            markers[rows, cols] = larger.pop()
    return markers


def split_instances(probabilities: np.ndarray, class_names: tuple[str, ...], min_area_px: float = 4,
                    labels: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (int32, 0 = background) from class probabilities (C, h, w); ``labels``: their arg-max, when
    the caller has it (Segmentation.labels)."""
    labels = np.argmax(probabilities, axis=0) if labels is None else labels
    pid = class_names.index("particle")
    core = labels == pid
    if "boundary" in class_names:
        foreground = core | (labels == class_names.index("boundary"))
        markers = core_markers(core)
        instances = watershed_touching(-probabilities[pid], markers, foreground)  # = watershed(…, mask=…)
    else:
        foreground = core
        distance = ndi.distance_transform_edt(foreground)
        regions, _ = ndi.label(foreground)
        peaks = peak_local_max(distance, min_distance=3, labels=regions, exclude_border=False)
        markers = np.zeros_like(regions)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        instances = watershed(-distance, markers, mask=foreground)
    return drop_small(instances, min_area_px)  # and renumbered 1..k, as relabel_sequential would


def size_statistics(ecd: np.ndarray) -> dict[str, float | None]:
    """Mean, sd and D10/D50/D90 of equivalent diameters (number-weighted). None for an empty set."""
    if ecd.size == 0:
        return dict(ecd_mean=None, ecd_sd=None, d10=None, d50=None, d90=None)
    d10, d50, d90 = np.percentile(ecd, [10, 50, 90])
    sd = float(np.std(ecd, ddof=1)) if ecd.size > 1 else None
    return dict(ecd_mean=float(ecd.mean()), ecd_sd=sd, d10=float(d10), d50=float(d50), d90=float(d90))


def label_means(labels: np.ndarray, n: int, *values) -> list[np.ndarray]:
    """Mean of each of ``values`` over labels 1..n, 0 for a label without pixels: what ``ndimage.mean`` gives (the
    same sums, in the same order), read at the labelled pixels only. A value is an array shaped like ``labels``, or
    a function giving the values at flat pixel indices (``frame_pixels_on_grid``)."""
    at = np.flatnonzero(labels)
    lab = labels.ravel()[at]
    counts = np.bincount(lab, minlength=n + 1)[1 : n + 1]
    have = counts > 0
    return [np.divide(np.bincount(lab, weights=v(at) if callable(v) else v.ravel()[at], minlength=n + 1)[1 : n + 1],
                      counts, out=np.zeros(n), where=have) for v in values]


def frame_pixels_on_grid(seg: Segmentation, shape: tuple[int, int]):
    """The raw frame pixels on the grid: the frame itself at the grid's size, else a function giving the frame pixel
    at the centre of each of some grid pixels (flat indices; ``nearest_resample``'s pixels, read where asked only —
    when the grid is coarser than the frame this samples a particle's pixels evenly instead of reading all)."""
    pixels = seg.frame.pixels
    if pixels.shape == shape:
        return pixels
    rows, cols = nearest_indices(pixels.shape, shape)
    return lambda at: pixels[rows[at // shape[1]], cols[at % shape[1]]]


def confidence_and_intensity(seg: Segmentation, instances: np.ndarray, n: int, foreground: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's mean foreground probability and mean raw frame pixel (on the grid, ``frame_pixels_on_grid``):
    ``label_means`` of the two, from one compiled pass (``kernels.label_sums``, the same sums) when numba is there."""
    pixels = seg.frame.pixels
    plain = pixels.dtype.kind in "uif" and pixels.dtype.isnative and pixels.dtype != np.float16  # what numba reads
    compiled = kernel("label_sums") if pixels.ndim == instances.ndim == 2 and plain else None
    if compiled is None:
        confidence, intensity = label_means(instances, n, foreground, frame_pixels_on_grid(seg, instances.shape))
        return confidence, intensity
    h, w = instances.shape
    rows, cols = ((np.arange(h), np.arange(w)) if pixels.shape == instances.shape
                  else nearest_indices(pixels.shape, instances.shape))
    count, sums = np.zeros(n + 1, np.int64), np.zeros((2, n + 1))
    compiled(np.ascontiguousarray(instances), np.ascontiguousarray(foreground), pixels, rows, cols, count, sums[0],
             sums[1])
    have = count[1:] > 0
    return (np.divide(sums[0, 1:], count[1:], out=np.zeros(n), where=have),
            np.divide(sums[1, 1:], count[1:], out=np.zeros(n), where=have))


def border_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """Whether each of labels 1..n has a pixel on the image's border (its bounding box touches the edge)."""
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    return edge[1:]


def merge_tables(t: ShapeTable, sub: ShapeTable, rows: np.ndarray, n: int) -> ShapeTable:
    """``t`` (first rows) grown to ``n`` rows, rows ``rows`` replaced by ``sub``'s rows in order."""
    cols = {}
    for f in fields(t):
        a = getattr(t, f.name)
        grown = np.zeros(n, a.dtype)
        grown[:a.size] = a
        grown[rows] = getattr(sub, f.name)
        cols[f.name] = grown
    cols["label"] = np.arange(1, n + 1)
    return ShapeTable(**cols)


def refined_table(seg: Segmentation, instances: np.ndarray, level: float = LEVEL
                  ) -> tuple[ParticleTable, RefinedParticles, np.ndarray]:
    """Per-particle geometry from the refined outlines, drawn at the foreground probability ``level`` (lengths in nm
    when calibrated, else frame px), the outlines, and the grid labels (touching particles joined on the grid split
    at their neck)."""
    n = int(instances.max(initial=0))
    frame_shape = seg.frame.pixels.shape[:2]
    m = refinement(seg.frame_px_per_px)
    foreground = 1.0 - seg.probabilities[seg.class_names.index("background")]
    slices = find_objects(instances, n)
    refined = refine_particles(foreground, instances, frame_shape, m, level=level, slices=slices)
    t, offsets = outline_table(refined.tiles, refined.fields, level, refined.flat)
    tiles_before = refined.tiles
    # a neck makes an outline both less solid and elongated (two discs joined at 70 % of the diameter: solidity
    # 0.92-0.98 as the network draws them, Feret ratio 1.6-1.8); small round particles, most of a frame, are not
    # looked at
    necked = (t.solidity < CONVEX_SOLIDITY) & (t.feret_max > NECK_FERET_RATIO * t.feret_min) & (t.area >= 30)
    particle = seg.probabilities[seg.class_names.index("particle")] if "particle" in seg.class_names else None
    refined, split, n_split = split_necks(refined, instances, necked, particle, slices)
    if n_split:  # touching particles the boundary class left joined: measure the pieces they became
        changed = np.flatnonzero(np.r_[[a is not b for a, b in zip(refined.tiles, tiles_before)],
                                       np.ones(len(refined.tiles) - len(tiles_before), bool)])
        sub, sub_offsets = outline_table([refined.tiles[k] for k in changed], [refined.fields[k] for k in changed],
                                         level)
        t = merge_tables(t, sub, changed, len(refined.tiles))
        offsets = np.concatenate([offsets, np.zeros((len(refined.tiles) - len(offsets), 2), np.intp)])
        offsets[changed] = sub_offsets
        instances = split
        n = len(refined.tiles)  # a piece may own no grid pixel
    frame_nm = seg.frame.nm_per_px
    u = (frame_nm if frame_nm is not None else 1.0) / m  # length per refined pixel
    shift = refined.origins - offsets  # canvas → refined grid
    cy = (t.centroid_row + shift[:, 0] + 0.5) / m - 0.5
    cx = (t.centroid_col + shift[:, 1] + 0.5) / m - 0.5
    edge = border_labels(instances, n)
    confidence, intensity = confidence_and_intensity(seg, instances, n, foreground)
    ecd = t.ecd * u
    table = ParticleTable(
        id=np.arange(1, n + 1), centroid_x_px=cx, centroid_y_px=cy, area=t.area * u**2, ecd=ecd,
        feret_max=t.feret_max * u, feret_min=t.feret_min * u, aspect_ratio=t.aspect_ratio,
        circularity=t.circularity, solidity=t.solidity,
        mean_intensity=intensity, confidence=confidence, touches_edge=edge,
        resolved=t.ecd / m >= RESOLVABLE_PX, nm_per_px=frame_nm)
    return table, refined, instances


def measure_particles(seg: Segmentation, settings: AnalysisSettings | None = None) -> FrameMeasurements:
    """Measure every particle. Lengths in nm when the frame is calibrated, otherwise in frame px (and said so)."""
    cfg = settings or AnalysisSettings()
    nm = seg.nm_per_px
    min_px = max(cfg.min_area_px, cfg.min_area_nm2 / nm**2) if nm is not None else cfg.min_area_px
    instances = split_instances(seg.probabilities, seg.class_names, min_px, seg.labels)
    table, refined, instances = refined_table(seg, instances, cfg.outline_level)
    frame_nm = seg.frame.nm_per_px
    H, W = seg.frame.pixels.shape[:2]
    sized = table.ecd[table.sized]
    n = len(table)
    unresolved = int(np.sum(~table.resolved))
    resolvable = RESOLVABLE_PX * (frame_nm if frame_nm is not None else 1.0)
    unit = "nm" if frame_nm is not None else "px"
    note = None
    if n and not table.resolved.any():
        note = (f"all {n} particles are below the resolvable size (ECD < {resolvable:.3g} {unit}, "
                f"{RESOLVABLE_PX:g} frame pixels): counted, sizes not reported")
    area_um2 = H * W * frame_nm**2 / 1e6 if frame_nm is not None else None
    stats = ParticleStats(
        table=table,
        count=n,
        count_edge=int(table.touches_edge.sum()),
        count_sized=int(sized.size),
        count_unresolved=unresolved,
        analysed_area_um2=area_um2,
        density_per_um2=n / area_um2 if area_um2 else None,
        ecd_mean_ci=mean_interval(sized),
        d50_ci=median_interval(sized),
        lognormal=lognormal_fit(sized),
        psd=psd_histogram(sized, cfg.psd_min, cfg.psd_max, cfg.psd_bins, cfg.psd_scale),
        resolvable_ecd=resolvable,
        note=note,
        **size_statistics(sized),
    )
    enough = sufficiency("d50", stats.d50, stats.d50_ci, stats.count_sized, cfg.target_precision_rel,
                         stats.count_sized, scope="frame")
    return FrameMeasurements(seg, instances, Measures(task="particles", length_unit=unit, particles=stats,
                                                      sufficiency=[enough]), refined=refined)
