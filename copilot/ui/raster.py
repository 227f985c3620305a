"""Pixels the views draw: colours by particle size or phase, and outline images of a label mask (no Qt).

>>> size_colour(0.0).tolist(), size_colour(1.0).tolist()
([48, 123, 255], [215, 48, 31])
"""

from __future__ import annotations

import math

import numpy as np

from copilot.document.schema import ResultDocument

EDGE_RGB = (224, 64, 251)  # particles cut by the frame edge (counted, not sized): magenta, off the size scale
# Colour by size: the bright part of "turbo" (blue → cyan → green → yellow → red), visible on a gray EM image.
_SIZE_ANCHORS = np.array([
    [48, 123, 255], [26, 214, 229], [70, 247, 131], [164, 252, 60], [237, 208, 58], [251, 128, 34], [215, 48, 31],
], float)
# Phases coloured by class (class 0, the matrix/background, is left unfilled); Okabe–Ito, colour-blind safe.
PHASE_RGB = [(0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
             (204, 121, 167)]
PHASE_FILL_ALPHA = 90
# Radiation defects by class (copilot.analysis.defects): cavities orange, loops sky blue (Okabe–Ito).
DEFECT_RGB = {"cavity": (230, 159, 0), "loop": (86, 180, 233)}


def size_colour(t: np.ndarray | float) -> np.ndarray:
    """RGB (uint8) for positions 0..1 on the size scale (small → blue, large → red)."""
    t = np.clip(np.asarray(t, float), 0, 1) * (len(_SIZE_ANCHORS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(_SIZE_ANCHORS) - 2)
    f = (t - i)[..., None]
    return np.round(_SIZE_ANCHORS[i] * (1 - f) + _SIZE_ANCHORS[i + 1] * f).astype(np.uint8)


def size_range(doc: ResultDocument) -> tuple[float, float] | None:
    """The ECD range the colour scale spans: 5th–95th percentile of the sized particles (grains: of the grains
    inside the frame, µm) of this frame."""
    p, g = doc.measurements.particles, doc.measurements.grains
    if g is not None:
        ecd = np.array([q.ecd_um for q in g.grains if math.isfinite(q.ecd_um)])
    elif p is None:
        return None
    else:
        ecd = np.array([q.ecd for q in p.particles if not q.touches_edge and math.isfinite(q.ecd)])
    if ecd.size == 0:
        return None
    lo, hi = (float(x) for x in np.percentile(ecd, [5, 95]))
    if hi - lo < 1e-9 * max(1.0, hi):
        lo, hi = lo * 0.9, hi * 1.1 + 1e-9
    return lo, hi


def label_colours(doc: ResultDocument, n_labels: int) -> np.ndarray:
    """RGBA lookup table (n_labels + 1, 4): label id → colour. 0 is transparent.

    Particles: coloured by ECD on :func:`size_colour` over :func:`size_range`; edge-cut ones ``EDGE_RGB``.
    Grains: by ECD the same way (the view fills them); grains cut by the edge ``EDGE_RGB``.
    Phases: label = class index; class 0 transparent, others from ``PHASE_RGB``. Defects: by class, ``DEFECT_RGB``.
    """
    lut = np.zeros((n_labels + 1, 4), np.uint8)
    d = doc.measurements.defects
    if d is not None:
        names = ["background", *(c.name for c in d.classes)]
        for k, c in enumerate(d.labels_class[:n_labels], start=1):
            name = names[c] if c < len(names) else ""
            lut[k, :3] = DEFECT_RGB.get(name, EDGE_RGB)
            lut[k, 3] = 255
        return lut
    p = doc.measurements.particles
    if p is not None:
        rng = size_range(doc)
        lut[1:, :3] = EDGE_RGB
        lut[1:, 3] = 255
        for q in p.particles:
            if 1 <= q.id <= n_labels and not q.touches_edge and rng is not None:
                lut[q.id, :3] = size_colour((q.ecd - rng[0]) / (rng[1] - rng[0]))
        return lut
    g = doc.measurements.grains
    if g is not None:  # grains filled by size (ECD); grains cut by the edge are not sized
        rng = size_range(doc)
        lut[1:, :3] = EDGE_RGB
        lut[1:, 3] = 255
        for q in g.grains:
            if 1 <= q.id <= n_labels and rng is not None:
                lut[q.id, :3] = size_colour((q.ecd_um - rng[0]) / (rng[1] - rng[0]))
        return lut
    for k in range(1, n_labels + 1):
        lut[k, :3] = PHASE_RGB[1 + (k - 1) % (len(PHASE_RGB) - 1)]
        lut[k, 3] = 255
    return lut


def outline_shape(frame_shape: tuple[int, int], target_px: int, max_px: int = 2048) -> tuple[tuple[int, int], float]:
    """Resolution to draw outlines at so one drawn pixel is about one screen pixel: (shape, frame px per pixel)."""
    h, w = frame_shape
    target = int(min(max(target_px, 16), max_px))
    s = max(h, w) / target
    return (max(1, int(math.ceil(h / s))), max(1, int(math.ceil(w / s)))), s


def resample_labels(labels: np.ndarray, grid_frame_px: float, out_shape: tuple[int, int],
                    out_frame_px: float) -> np.ndarray:
    """Nearest-neighbour resample of a grid label mask to ``out_shape`` (each output pixel spans ``out_frame_px``)."""
    gh, gw = labels.shape
    rows = np.minimum(((np.arange(out_shape[0]) + 0.5) * out_frame_px / grid_frame_px).astype(np.int64), gh - 1)
    cols = np.minimum(((np.arange(out_shape[1]) + 0.5) * out_frame_px / grid_frame_px).astype(np.int64), gw - 1)
    return labels[np.ix_(rows, cols)]


def render_outlines(labels: np.ndarray, lut: np.ndarray, grid_frame_px: float, frame_shape: tuple[int, int],
                    target_px: int = 800, fill_alpha: int = 0) -> tuple[np.ndarray, float]:
    """RGBA image (uint8) of the label outlines, about ``target_px`` on the long edge, and its frame px per pixel.

    Outlines are two pixels wide (the label's own border pixel plus the background pixel next to it), coloured by
    ``lut``; with ``fill_alpha`` > 0 the regions are also filled translucently (phases).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    shape, out_frame_px = outline_shape(frame_shape, target_px)
    up = resample_labels(np.asarray(labels), grid_frame_px, shape, out_frame_px)
    up = np.minimum(up, len(lut) - 1).astype(np.int64)
    rgba = np.zeros((*shape, 4), np.uint8)
    if fill_alpha:
        rgba[...] = lut[up]
        rgba[..., 3] = np.where(lut[up][..., 3] > 0, fill_alpha, 0)
    inner = find_boundaries(up, mode="inner") & (up > 0)
    outer = find_boundaries(up, mode="outer") & (up == 0) & ~inner
    rgba[inner] = lut[up[inner]]
    if outer.any():
        near = ndi.maximum_filter(np.where(inner, up, 0), size=3)
        rgba[outer] = lut[near[outer]]
    return rgba, out_frame_px
