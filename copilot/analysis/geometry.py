"""Particle outlines at the frame's own resolution (or finer), from the model's probability field.

The network's grid is coarse (a 4 nm particle is 8 working pixels at 0.5 nm/px); its foreground probability
P(particle) + P(boundary) is trained on area-coverage targets, so its 0.5 iso-line is the true edge to a fraction of
a working pixel. For each particle, inside its bounding box only (cost grows with particle area, not frame area),
that field is interpolated bilinearly onto a *refined grid* — the frame's pixels, each split into ``m × m`` when the
frame is not at least twice finer than the working grid — and thresholded at 0.5. Which particle a refined pixel
belongs to is the working-grid instance nearest to it (the watershed split of touching particles); the outline itself
is the iso-line. The tiles are packed side by side into one small canvas so that every shape quantity is computed for
all particles at once (``copilot.analysis.shape``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


def refinement(frame_px_per_px: float) -> int:
    """Refined pixels per frame pixel (per axis): 1 when a working pixel spans at least 2 frame pixels, else enough
    that a refined pixel is at most half a working pixel.

    >>> refinement(2.5), refinement(1.0), refinement(0.5)
    (1, 2, 4)
    """
    return max(1, int(np.ceil(2.0 / frame_px_per_px - 1e-9)))


@dataclass
class RefinedParticles:
    """Particle ``k`` (label k + 1) is ``tiles[k]``, a boolean mask on the refined grid whose top-left refined pixel
    is ``origins[k]`` (row, col). Refined pixel (u, v) covers frame pixel (u // m, v // m)."""

    m: int
    frame_shape: tuple[int, int]
    tiles: list[np.ndarray]
    origins: np.ndarray


def _axis(n_frame: int, n_work: int, m: int):
    """For each refined pixel along one axis: the two working pixels to interpolate between, the weight of the
    second, and the nearest working pixel."""
    s = n_frame / n_work
    w = (np.arange(n_frame * m) + 0.5) / (m * s) - 0.5
    i0 = np.floor(w).astype(np.intp)
    f = (w - i0).astype(np.float32)
    i1 = np.clip(i0 + 1, 0, n_work - 1)
    i0 = np.clip(i0, 0, n_work - 1)
    near = np.clip(np.floor(w + 0.5).astype(np.intp), 0, n_work - 1)
    return i0, i1, f, near, s


def refine_particles(foreground: np.ndarray, instances: np.ndarray, frame_shape: tuple[int, int],
                     m: int) -> RefinedParticles:
    """Outlines of labels 1..n of ``instances`` (working grid) on the refined grid of a ``frame_shape`` frame."""
    h, w = instances.shape
    H, W = frame_shape
    n = int(instances.max(initial=0))
    ry0, ry1, fy, ny, sy = _axis(H, h, m)
    rx0, rx1, fx, nx, sx = _axis(W, w, m)
    # ownership: each working pixel's instance, grown by one pixel so that the iso-line may pass just outside it
    grown = ndi.grey_dilation(instances, size=3)
    owner = np.where(instances > 0, instances, grown)
    tiles, origins = [], np.zeros((n, 2), np.intp)
    for k, sl in enumerate(ndi.find_objects(instances, max_label=n)):
        if sl is None:
            tiles.append(np.zeros((0, 0), bool))
            continue
        a, b = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
        c, d = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
        u0, u1 = int(np.floor(a * sy * m)), min(int(np.ceil(b * sy * m)), H * m)
        v0, v1 = int(np.floor(c * sx * m)), min(int(np.ceil(d * sx * m)), W * m)
        j0, j1 = ry0[u0], ry1[u1 - 1] + 1
        q0, q1 = rx0[v0], rx1[v1 - 1] + 1
        fg = foreground[j0:j1, q0:q1]
        wy, wx = fy[u0:u1, None], fx[None, v0:v1]
        rows = fg[ry0[u0:u1] - j0] * (1 - wy) + fg[ry1[u0:u1] - j0] * wy
        up = rows[:, rx0[v0:v1] - q0] * (1 - wx) + rows[:, rx1[v0:v1] - q0] * wx
        near = np.ix_(ny[u0:u1], nx[v0:v1])
        mine = owner[near] == k + 1
        mask = (up >= 0.5) & mine
        if not mask.any():  # an object whose probability never reaches 0.5 between grid points: its grid pixels
            mask = instances[near] == k + 1
        tiles.append(mask)
        origins[k] = (u0, v0)
    return RefinedParticles(m, (H, W), tiles, origins)


def pack(tiles: list[np.ndarray], width: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """All tiles side by side (shelves, one empty pixel between tiles) in one label canvas (tile k → label k + 1);
    returns the canvas and each tile's (row, col) offset in it."""
    width = max(width, max((t.shape[1] for t in tiles), default=0) + 2)
    offsets = np.zeros((len(tiles), 2), np.intp)
    y = x = shelf = 0
    for k in np.argsort([-t.shape[0] for t in tiles], kind="stable"):  # tallest first: shelves waste little
        t = tiles[k]
        th, tw = t.shape
        if x + tw + 1 > width:
            y, x, shelf = y + shelf + 1, 0, 0
        offsets[k] = (y + 1, x + 1)
        x += tw + 1
        shelf = max(shelf, th)
    canvas = np.zeros((y + shelf + 2, width), np.int32)
    for k, t in enumerate(tiles):
        oy, ox = offsets[k]
        view = canvas[oy:oy + t.shape[0], ox:ox + t.shape[1]]
        view[t] = k + 1
    return canvas, offsets


def paint(refined: RefinedParticles) -> np.ndarray:
    """The particles as a label image on the frame's pixels (what --save-masks writes): a frame pixel takes the
    label covering most of its refined pixels, if they cover at least half of it."""
    H, W = refined.frame_shape
    m = refined.m
    out = np.zeros((H * m, W * m), np.int32)
    for k, (t, (u0, v0)) in enumerate(zip(refined.tiles, refined.origins)):
        if t.size:
            view = out[u0:u0 + t.shape[0], v0:v0 + t.shape[1]]
            view[t] = k + 1
    if m == 1:
        return out
    blocks = out.reshape(H, m, W, m).transpose(0, 2, 1, 3).reshape(H, W, m * m)
    lab = np.sort(blocks, axis=2)[:, :, (m * m) // 2]  # the median label: covers ≥ half of the frame pixel
    return lab.astype(np.int32)


MAX_PIECE_ELONGATION = 1.6  # pieces of a necked pair are round-ish; halves of a long convex particle are not
NOTCH = 0.03  # the notches a split removes cover at least this fraction of the outline's area (70 % neck: ~4 %)
MAX_NECK = 0.8  # the cut is at most this × the smaller piece's ECD (a 70 % neck cuts ~0.75 of it)
MIN_PIECE = 0.2  # the smaller piece has at least this fraction of the larger one's area (discs of 2:1 diameter: 0.25)
NECK_DEPTH = 0.15  # a saddle of the distance map this deep (fraction of the particle's largest inscribed radius)


def _notch_area(tile: np.ndarray, pieces: np.ndarray, n: int) -> float:
    """Convex deficiency of the whole outline minus that of its pieces: large for two particles joined at a neck
    (the two notches), about zero for a convex particle however ragged its outline (the pieces keep the texture)."""
    from skimage.morphology import convex_hull_image

    def deficiency(mask):
        return float(convex_hull_image(mask).sum() - mask.sum())

    return deficiency(tile) - sum(deficiency(pieces == j) for j in range(1, n + 1))


def _elongation(mask: np.ndarray) -> float:
    """Major / minor axis of a mask's inertia ellipse."""
    y, x = np.nonzero(mask)
    ev = np.linalg.eigvalsh(np.cov(np.stack([y, x]).astype(float))) if y.size > 2 else np.ones(2)
    return float(np.sqrt(max(ev[1], 1e-9) / max(ev[0], 1e-9)))


def _cut_length(pieces: np.ndarray) -> float:
    """Length (pixels) of the lines between differently labelled pieces."""
    a, b = pieces[1:], pieces[:-1]
    c, d = pieces[:, 1:], pieces[:, :-1]
    return float(np.hypot(np.sum((a != b) & (a > 0) & (b > 0)), np.sum((c != d) & (c > 0) & (d > 0))))


def split_necks(refined: RefinedParticles, instances: np.ndarray, candidates: np.ndarray
                ) -> tuple[RefinedParticles, np.ndarray, int]:
    """Split touching particles the network's boundary class left joined, at their neck.

    For each candidate (not convex enough: solidity below what a convex outline reaches), the distance map of its
    refined outline is searched for more than one maximum standing ``NECK_DEPTH`` × the largest inscribed radius
    (and at least 1.5 working pixels, beyond the outline's own uncertainty) above the saddle between them, cut by a
    line at most ``MAX_NECK`` × the smaller piece's ECD long; two discs joined by a neck up to ~80 % of
    the smaller diameter have such a saddle, a convex particle has a single maximum. The outline is then cut by a
    watershed of the distance map, and the grid labels follow (each grid pixel takes the piece at its centre, or the
    nearest piece). Returns the new outlines, the new grid labels and how many particles were split.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    H, W = refined.frame_shape
    h, w = instances.shape
    m = refined.m
    sy, sx = H * m / h, W * m / w  # refined pixels per grid pixel
    tiles, origins = list(refined.tiles), [tuple(o) for o in refined.origins]
    out = instances.copy()
    n_split = 0
    slices = ndi.find_objects(instances)
    for k in np.flatnonzero(candidates):
        tile = tiles[k]
        if tile.sum() < 16:
            continue
        dt = ndi.distance_transform_edt(np.pad(tile, 1))[1:-1, 1:-1]
        depth = max(1.5 * min(sy, sx), NECK_DEPTH * float(dt.max()))  # ≥ 1.5 working px: the outline's own noise
        markers, n = ndi.label(h_maxima(dt, depth))
        if n < 2:
            continue
        pieces = watershed(-dt, markers, mask=tile)
        sizes = np.bincount(pieces.ravel())[1:]
        if sizes.min() < MIN_PIECE * sizes.max():  # a sliver (a ragged or streaked edge), not a second particle
            continue
        if _cut_length(pieces) > MAX_NECK * np.sqrt(4 * sizes.min() / np.pi):  # cut as wide as a piece: no neck
            continue
        if _notch_area(tile, pieces, n) < NOTCH * tile.sum():  # the concavity is the outline's texture, not a neck
            continue
        if max(_elongation(pieces == j) for j in range(1, n + 1)) > MAX_PIECE_ELONGATION:  # halves of a long shape
            continue
        u0, v0 = origins[k]
        # grid pixels of this particle take the piece at (or nearest to) their centre
        sl = slices[k]
        rows, cols = np.nonzero(instances[sl] == k + 1)
        rows, cols = rows + sl[0].start, cols + sl[1].start
        ru = np.clip(np.floor((rows + 0.5) * sy).astype(int) - u0, 0, tile.shape[0] - 1)
        rv = np.clip(np.floor((cols + 0.5) * sx).astype(int) - v0, 0, tile.shape[1] - 1)
        _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
        piece = pieces[iy[ru, rv], ix[ru, rv]]
        if np.unique(piece).size < n:  # a piece too small to own a grid pixel: keep the particle whole
            continue
        n_split += 1
        tiles[k] = pieces == 1
        new_labels = [k + 1]
        for j in range(2, n + 1):
            tiles.append(pieces == j)
            origins.append((u0, v0))
            new_labels.append(len(tiles))
        out[rows, cols] = np.asarray(new_labels)[piece - 1]
    if not n_split:
        return refined, instances, 0
    return RefinedParticles(m, refined.frame_shape, tiles, np.asarray(origins, np.intp)), out, n_split
