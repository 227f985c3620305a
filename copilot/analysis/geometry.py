"""Particle outlines at the frame's own resolution (or finer), from the model's probability field.

The network's grid is coarse (a 4 nm particle is 8 working pixels at 0.5 nm/px); its foreground probability
P(particle) + P(boundary) is trained on area-coverage targets, so its 0.5 iso-line is the true edge to a fraction of
a working pixel. For each particle, inside its bounding box only (cost grows with particle area, not frame area),
that field is interpolated bilinearly onto a *refined grid* — the frame's pixels, each split into ``m × m`` when the
working grid is finer than the frame — and thresholded at 0.5. Which particle a refined pixel belongs to is the
working-grid instance nearest to it (the watershed split of touching particles). The tiles are packed side by side
into one canvas, and every shape quantity comes, for all particles at once, from the sub-pixel iso-line: where it
crosses each row and column at the ends of the particle's runs (``runs``, ``crossings``) — area and moments
integrated run by run, Feret diameters and convex area from the support function of those crossings, the perimeter
of the polygon through them. Work is per run and per crossing, not per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from copilot.analysis.outline import longest_outline, pockets
from copilot.analysis.kernels import kernel
from copilot.analysis.shape import ShapeTable


LEVEL = 0.5  # the outline's probability: where a coverage-trained field puts the true edge (a model whose outline
# sits elsewhere would declare its own level; particles-stem 0.3.0 measured on the standards: ~0.65-0.7)


def refinement(frame_px_per_px: float) -> int:
    """Refined pixels per frame pixel (per axis): 1 when a working pixel spans at least one frame pixel, else enough
    that rows of refined pixels are at most one working pixel apart (the outline's ends on each row are sub-pixel,
    from the probability field, so row spacing is all the refinement buys).

    >>> refinement(2.5), refinement(1.0), refinement(0.5)
    (1, 1, 2)
    """
    return max(1, int(np.ceil(1.0 / frame_px_per_px - 1e-9)))


@dataclass
class RefinedParticles:
    """Particle ``k`` (label k + 1) is ``tiles[k]``, a boolean mask on the refined grid whose top-left refined pixel
    is ``origins[k]`` (row, col). Refined pixel (u, v) covers frame pixel (u // m, v // m). ``fields[k]`` is the
    interpolated foreground probability on the same pixels, 0 where another particle owns them: its 0.5 iso-line is
    the sub-pixel outline (``tiles[k]`` = field ≥ 0.5, or the grid pixels where the probability never reaches 0.5)."""

    m: int
    frame_shape: tuple[int, int]
    tiles: list[np.ndarray]
    origins: np.ndarray
    fields: list[np.ndarray] = field(default_factory=list)
    # the buffers the tiles and fields are views of, when they were made in one piece (the compiled refinement):
    # masks, fields, and where tile k starts in them (tile after tile, in label order); None once any was replaced
    flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)


@dataclass
class PackedOutlines:
    """A RefinedParticles' masks in one flat array, for handing to another process: hundreds of small arrays cost
    more to describe and rebuild than to copy. The fields stay behind (after the analysis only ``paint`` reads the
    outlines, and it needs the masks alone)."""

    m: int
    frame_shape: tuple[int, int]
    origins: np.ndarray
    shapes: np.ndarray  # (n, 2): each mask's rows and columns
    masks: np.ndarray  # bool: the masks raveled one after another

    @classmethod
    def of(cls, refined: RefinedParticles) -> "PackedOutlines":
        shapes = np.array([t.shape for t in refined.tiles], np.intp).reshape(-1, 2)
        if refined.flat is not None:  # the tiles one after another already
            masks = refined.flat[0]
        else:
            masks = np.concatenate([t.ravel() for t in refined.tiles]) if refined.tiles else np.zeros(0, bool)
        return cls(refined.m, tuple(refined.frame_shape), np.asarray(refined.origins), shapes, masks)

    def unpacked(self) -> RefinedParticles:
        """The RefinedParticles (its masks: views into ``masks``; no fields)."""
        ends = np.cumsum(self.shapes.prod(axis=1))
        tiles = [self.masks[e - r * c:e].reshape(r, c) for (r, c), e in zip(self.shapes.tolist(), ends.tolist())]
        return RefinedParticles(self.m, tuple(self.frame_shape), tiles, self.origins)


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


def dilate3(labels: np.ndarray) -> np.ndarray:
    """``ndimage.grey_dilation(labels, size=3)`` (3 × 3 maximum, the edge repeating itself) in four in-place
    maxima of shifted views."""
    rows = labels.copy()
    np.maximum(rows[1:], labels[:-1], out=rows[1:])
    np.maximum(rows[:-1], labels[1:], out=rows[:-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def _boxes(slices: list, grid: tuple[int, int], scale: tuple[float, float], frame: tuple[int, int], m: int):
    """Labels present, and each one's box on the refined grid (rows u0..u1, columns v0..v1): its grid box grown by
    one grid pixel (the iso-line may pass just outside the particle)."""
    (h, w), (sy, sx), (H, W) = grid, scale, frame
    ext = np.array([(k + 1, sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) for k, sl in enumerate(slices)
                    if sl is not None], np.intp).reshape(-1, 5)
    a, b = np.maximum(ext[:, 1] - 1, 0), np.minimum(ext[:, 2] + 1, h)
    c, d = np.maximum(ext[:, 3] - 1, 0), np.minimum(ext[:, 4] + 1, w)
    u0, u1 = np.floor(a * sy * m).astype(np.intp), np.minimum(np.ceil(b * sy * m).astype(np.intp), H * m)
    v0, v1 = np.floor(c * sx * m).astype(np.intp), np.minimum(np.ceil(d * sx * m).astype(np.intp), W * m)
    return ext[:, 0], u0, u1, v0, v1


def refine_particles(foreground: np.ndarray, instances: np.ndarray, frame_shape: tuple[int, int],
                     m: int, level: float = LEVEL, slices: list | None = None) -> RefinedParticles:
    """Outlines (the ``level`` iso-line) of labels 1..n of ``instances`` (working grid) on the refined grid of a
    ``frame_shape`` frame; ``slices``: the labels' ``find_objects``, when the caller has them. The boxes go through
    the compiled kernel (``kernels.refine_boxes``) when numba is there, else through the numpy loop; same arrays."""
    h, w = instances.shape
    H, W = frame_shape
    n = int(instances.max(initial=0))
    ry0, ry1, fy, ny, sy = _axis(H, h, m)
    rx0, rx1, fx, nx, sx = _axis(W, w, m)
    slices = ndi.find_objects(instances, max_label=n) if slices is None else slices
    # ownership: each working pixel's instance, grown by one pixel so that the iso-line may pass just outside it
    grow = kernel("owners")
    if grow is not None:
        owner = np.empty_like(instances)
        grow(np.ascontiguousarray(instances), owner)
    else:
        owner = np.where(instances > 0, instances, dilate3(instances))
    labels, u0, u1, v0, v1 = _boxes(slices, (h, w), (sy, sx), (H, W), m)
    gx = (1 - fx).astype(np.float32)
    tiles = [np.zeros((0, 0), bool)] * n
    fields = [np.zeros((0, 0), np.float32)] * n
    origins = np.zeros((n, 2), np.intp)
    origins[labels - 1] = np.stack([u0, v0], axis=1)
    compiled = kernel("refine_boxes") if labels.size else None
    if compiled is not None:
        sizes = (u1 - u0) * (v1 - v0)
        starts = np.cumsum(sizes) - sizes
        own = np.empty(int(sizes.sum()), np.float32)
        mask = np.empty(own.size, bool)
        compiled(np.ascontiguousarray(foreground), np.ascontiguousarray(instances), owner, ry0, ry1, fy, (1 - fy).astype(np.float32), ny,
                 rx0, rx1, fx, gx, nx, labels, u0, u1, v0, v1, starts, np.float32(level), own, mask)
        for j, k in enumerate(labels - 1):
            shape, box = (u1[j] - u0[j], v1[j] - v0[j]), slice(starts[j], starts[j] + sizes[j])
            tiles[k], fields[k] = mask[box].reshape(shape), own[box].reshape(shape)
        at = np.zeros(n, np.intp)  # labels ascend, so the buffers hold tile after tile (absent labels: empty)
        at[labels - 1] = starts
        return RefinedParticles(m, (H, W), tiles, origins, fields, flat=(mask, own, at))
    # rows of the refined grid that hold particles, interpolated once (working columns): each box then only needs
    # its columns interpolated
    used = np.zeros(H * m + 1, np.int32)
    np.add.at(used, u0, 1)
    np.add.at(used, u1, -1)
    rows = np.flatnonzero(np.cumsum(used[:-1]) > 0)
    at = np.zeros(H * m, np.intp)
    at[rows] = np.arange(rows.size)
    wy = fy[rows, None]
    interp = (foreground[ry0[rows]] * (1 - wy) + foreground[ry1[rows]] * wy).astype(np.float32)
    own_rows = owner[ny[rows]]
    for lab, a, b, c, d in zip(labels.tolist(), u0.tolist(), u1.tolist(), v0.tolist(), v1.tolist()):
        r0, r1 = at[a], at[b - 1] + 1
        box = interp[r0:r1]
        own = box[:, rx0[c:d]] * gx[c:d] + box[:, rx1[c:d]] * fx[c:d]
        own *= own_rows[r0:r1][:, nx[c:d]] == lab
        mask = own >= level
        if not mask.any():  # an object whose probability never reaches 0.5 between grid points: its grid pixels
            mask = instances[np.ix_(ny[a:b], nx[c:d])] == lab
        tiles[lab - 1], fields[lab - 1] = mask, own
    return RefinedParticles(m, (H, W), tiles, origins, fields)


def pack(tiles: list[np.ndarray], width: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """All tiles side by side (shelves, one empty pixel between tiles) in one label canvas (tile k → label k + 1);
    returns the canvas and each tile's (row, col) offset in it. The canvas's first and last rows and first column
    stay empty."""
    shape, offsets = shelves([t.shape for t in tiles], width)
    canvas = np.zeros(shape, np.int32)
    for k, t in enumerate(tiles):
        oy, ox = offsets[k]
        view = canvas[oy:oy + t.shape[0], ox:ox + t.shape[1]]
        view[t] = k + 1
    return canvas, offsets


def shelves(shapes: list[tuple[int, int]], width: int = 2048) -> tuple[tuple[int, int], np.ndarray]:
    """``pack``'s layout: the canvas shape and each tile's (row, col) offset."""
    width = max(width, max((w for _, w in shapes), default=0) + 2)
    offsets = np.zeros((len(shapes), 2), np.intp)
    order = np.argsort([-h for h, _ in shapes], kind="stable")  # tallest first: shelves waste little
    compiled = kernel("shelf_offsets") if len(shapes) else None
    if compiled is not None:  # the same loop, compiled
        sizes = np.array(shapes, np.intp).reshape(-1, 2)
        return (int(compiled(sizes, order, width, offsets)), width), offsets
    y = x = shelf = 0
    for k in order:
        th, tw = shapes[k]
        if x + tw + 1 > width:
            y, x, shelf = y + shelf + 1, 0, 0
        offsets[k] = (y + 1, x + 1)
        x += tw + 1
        shelf = max(shelf, th)
    return (y + shelf + 2, width), offsets


def runs(labels: np.ndarray, field: np.ndarray, level: float = LEVEL
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every run of a label along the rows of a ``pack`` canvas, its ends where the 0.5 iso-line crosses the row
    (linear between the end pixel and its outer neighbour, as marching squares places it; the pixel edge where that
    neighbour belongs to another particle): label, row, sub-pixel start and end column of each run."""
    flat = labels.ravel()
    f = field.ravel()
    change = flat[1:] != flat[:-1]
    first = np.flatnonzero(change & (flat[1:] > 0)) + 1
    last = np.flatnonzero(change & (flat[:-1] > 0))
    if flat.size and flat[0] > 0:
        first = np.r_[0, first]
    if flat.size and flat[-1] > 0:
        last = np.r_[last, flat.size - 1]
    row, col = np.divmod(first, labels.shape[1])
    return (flat[first], row.astype(np.float64), col - _inset(f[first], f[first - 1], level),
            last % labels.shape[1] + _inset(f[last], f[np.minimum(last + 1, f.size - 1)], level))


def column_runs(labels: np.ndarray, field: np.ndarray, level: float = LEVEL
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``runs(labels.T, field.T)`` — the runs down the columns, column by column — without transposing the canvas
    (for a ``pack`` canvas: its first and last rows are empty, so no run wraps from one column to the next)."""
    height, width = labels.shape
    flat, f = labels.ravel(), field.ravel()
    above, below = flat[:-width], flat[width:]
    change = above != below
    start = np.flatnonzero(change & (below > 0)) + width  # a run starts at this pixel …
    end = np.flatnonzero(change & (above > 0))  # … and ends at this one
    sr, sc = np.divmod(start, width)
    er, ec = np.divmod(end, width)
    o = np.argsort(sc * height + sr, kind="stable")  # column by column, as in the transposed canvas
    e = np.argsort(ec * height + er, kind="stable")
    start, sr, sc, end, er = start[o], sr[o], sc[o], end[e], er[e]
    return (flat[start], sc.astype(np.float64), sr - _inset(f[start], f[start - width], level),
            er + _inset(f[end], f[end + width], level))


def _inset(inside: np.ndarray, outside: np.ndarray, level: float) -> np.ndarray:
    """How far inside a run's end pixel the iso-line crosses towards its outer neighbour (half a pixel when that
    neighbour is still above ``level``: another particle's pixel)."""
    crossed = (inside >= level) & (outside < level)
    return np.where(crossed, (inside - level) / np.maximum(inside - outside, 1e-6), 0.5)


def run_moments(lab: np.ndarray, row: np.ndarray, x0: np.ndarray, x1: np.ndarray, n: int):
    """Area, centroid (row, col) and the two ellipse axis lengths (4·√λ of the inertia tensor, as regionprops) of
    labels 1..n, integrated over their runs (each a strip one row high from x0 to x1)."""
    length = x1 - x0
    sx = (x1 * x1 - x0 * x0) / 2
    sxx = (x1 ** 3 - x0 ** 3) / 3

    def total(w):
        return np.bincount(lab, weights=w, minlength=n + 1)[1:]

    area = total(length)
    safe = np.maximum(area, 1e-12)
    cc, cr = total(sx) / safe, total(row * length) / safe
    mcc = total(sxx) / safe - cc * cc
    mrr = total((row * row + 1 / 12) * length) / safe - cr * cr
    mrc = total(row * sx) / safe - cr * cc
    half_trace, root = (mrr + mcc) / 2, np.sqrt(((mrr - mcc) / 2) ** 2 + mrc**2)
    major = 4 * np.sqrt(np.maximum(half_trace + root, 0))
    minor = 4 * np.sqrt(np.maximum(half_trace - root, 0))
    return area, cr, cc, major, minor


def crossings(row_runs: tuple, col_runs: tuple, centre: np.ndarray):
    """The sub-pixel iso-line's crossings at the ends of each row run and each column run (``runs`` of a canvas and
    of its transpose), the points its hull can pass through: label (sorted), row and column relative to ``centre``
    ((n, 2), a point inside each particle), and where each label's points start."""
    la, ya, xa0, xa1 = row_runs
    lb, xb, yb0, yb1 = col_runs
    compiled = kernel("group_points") if la.size + lb.size else None
    if compiled is not None:  # grouped by a counting sort (the same order as the stable sort below)
        count = 2 * (np.bincount(la, minlength=len(centre) + 1) + np.bincount(lb, minlength=len(centre) + 1))
        first = np.cumsum(count) - count  # where each label's points start
        lab = np.empty(2 * (la.size + lb.size), np.int32)
        ys, xs = np.empty(lab.size), np.empty(lab.size)
        compiled(la, ya, xa0, xa1, lb, xb, yb0, yb1, np.ascontiguousarray(centre, np.float64), first.copy(), lab,
                 ys, xs)  # the kernel advances its copy of ``first`` as it places the points
        return lab, ys, xs, first[count > 0]
    lab = np.concatenate([la, la, lb, lb])
    small = lab.size and lab.max() < 2**16  # 16-bit keys: numpy's stable sort is a radix sort (same order)
    order = np.argsort(lab.astype(np.uint16) if small else lab, kind="stable")
    lab = lab[order]
    ys = np.concatenate([ya, ya, yb0, yb1])[order] - centre[lab - 1, 0]
    xs = np.concatenate([xa0, xa1, xb, xb])[order] - centre[lab - 1, 1]
    return lab, ys, xs, np.flatnonzero(np.concatenate([[lab.size > 0], lab[1:] != lab[:-1]]))


def _ends(starts: np.ndarray, size: int) -> np.ndarray:
    """Where each group ending at the next group's start (the last at ``size``) ends."""
    return np.append(starts[1:], size)


def perimeter(lab: np.ndarray, ys: np.ndarray, xs: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Length of the polygon through each particle's crossings in the order of their angle around its centre: the
    sub-pixel iso-line's length for a star-shaped outline (longer, as it zigzags, for one that is not)."""
    out = np.zeros(n)
    if lab.size == 0:
        return out
    angle = np.arctan2(ys, xs)
    compiled = kernel("order_within")
    if compiled is not None:  # each particle's points by angle (stable): what the lexsort gives
        o = np.empty(lab.size, np.intp)
        compiled(angle, starts, _ends(starts, lab.size), o)
    else:
        o = np.lexsort((angle, lab))
    lengths = kernel("polygon_lengths")
    if lengths is not None:  # the same steps and sums, particle by particle
        total = np.empty(starts.size)
        lengths(ys, xs, o, starts, _ends(starts, lab.size), total)
        out[lab[starts] - 1] = total
        return out
    y, x = ys[o], xs[o]
    ends = _ends(starts, lab.size) - 1
    step = np.hypot(np.diff(y), np.diff(x))
    step[ends[:-1]] = 0.0  # no segment from one particle to the next …
    closing = np.hypot(y[ends] - y[starts], x[ends] - x[starts])  # … but each closes on its first point
    out[lab[starts] - 1] = np.add.reduceat(np.append(step, 0.0), starts) + closing
    return out


def support(lab: np.ndarray, ys: np.ndarray, xs: np.ndarray, starts: np.ndarray, n: int, n_dir: int = 36,
            fine: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feret max, Feret min and convex area of each particle's hull through its ``crossings``, from their extent on
    ``n_dir`` directions, then on ``fine`` directions within one step of each particle's narrowest (a polygon's
    width has a cusp there). The convex area is that of the polygon the 2·``n_dir`` supporting lines enclose (a
    circle's +0.06 %)."""
    fmax, fmin, hull = np.zeros(n), np.zeros(n), np.zeros(n)
    if lab.size == 0:
        return fmax, fmin, hull
    present = lab[starts] - 1
    compiled = kernel("extents")
    counts = np.diff(np.append(starts, lab.size))

    def extent(c: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Largest and smallest projection of each particle's points, (k, directions): ``c``, ``s`` (directions,)
        for all particles or (directions, k) for each."""
        if compiled is not None:  # the same products, sums and extremes, per particle (kernels.extents)
            per = [np.ascontiguousarray(a if a.ndim == 2 else np.repeat(a[:, None], starts.size, axis=1))
                   for a in (c, s)]
            # (k, directions) views of (directions, k) arrays, the layout numpy's reduceat(...).T has: the hull's
            # sums below then add in the same order
            hi, lo = np.empty((len(c), starts.size)).T, np.empty((len(c), starts.size)).T
            compiled(xs, ys, starts, _ends(starts, lab.size), *per, hi, lo)
            return hi, lo
        if c.ndim == 2:  # one direction per particle → per point
            c, s = np.repeat(c, counts, axis=1), np.repeat(s, counts, axis=1)
            proj = c * xs + s * ys
        else:
            proj = np.outer(c, xs) + np.outer(s, ys)
        return np.maximum.reduceat(proj, starts, axis=1).T, np.minimum.reduceat(proj, starts, axis=1).T

    step = np.pi / n_dir
    theta = np.arange(n_dir) * step
    hi, lo = extent(np.cos(theta), np.sin(theta))
    coarse = hi - lo
    best = theta[np.argmin(coarse, axis=1)]
    off = np.linspace(-step, step, fine)[:, None]  # cos/sin of best + off without a trig call per point
    cb, sb = np.cos(best), np.sin(best)
    fhi, flo = extent(cb * np.cos(off) - sb * np.sin(off), sb * np.cos(off) + cb * np.sin(off))
    fmax[present] = np.maximum(coarse.max(axis=1), (fhi - flo).max(axis=1))
    fmin[present] = np.minimum(coarse.min(axis=1), (fhi - flo).min(axis=1))
    h = np.concatenate([hi, -lo], axis=1)  # support in directions k·step, k = 0 … 2·n_dir − 1
    side = (np.roll(h, 1, axis=1) + np.roll(h, -1, axis=1) - 2 * h * np.cos(step)) / np.sin(step)
    hull[present] = 0.5 * (h * side).sum(axis=1)
    return fmax, fmin, hull


def _tile_runs(compiled, tiles: list[np.ndarray], fields: list[np.ndarray], offsets: np.ndarray, level: float,
               flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
    """``runs`` and ``column_runs`` of the tiles' ``pack`` canvas from the compiled ``kernels.tile_runs``; ``flat``:
    the buffers the tiles and fields are views of (``RefinedParticles.flat``), read in place."""
    heights = np.array([t.shape[0] for t in tiles], np.intp)
    widths = np.array([t.shape[1] for t in tiles], np.intp)
    if flat is not None:
        mask, field, starts = flat
    else:
        sizes = heights * widths
        starts = (np.cumsum(sizes) - sizes).astype(np.intp)
        mask = np.concatenate([t.ravel() for t in tiles]).astype(bool, copy=False)
        field = np.concatenate([f.ravel() if f.size else np.zeros(t.size, np.float32)
                                for t, f in zip(tiles, fields)], dtype=np.float32)  # the canvas's values (a field
        # is ≥ 0: the canvas's maximum with 0)
    runs_at_most = int(np.count_nonzero(mask))  # a run has a pixel at least
    out_row, out_col = np.empty((4, runs_at_most)), np.empty((4, runs_at_most))
    nr, nc = compiled(mask, field, starts, heights, widths, offsets[:, 0].astype(np.intp),
                      offsets[:, 1].astype(np.intp), float(level), out_row, out_col)
    return ((out_row[0, :nr].astype(np.int32), *out_row[1:, :nr]),
            (out_col[0, :nc].astype(np.int32), *out_col[1:, :nc]))


def outline_table(tiles: list[np.ndarray], fields: list[np.ndarray], level: float = LEVEL,
                  flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[ShapeTable, np.ndarray]:
    """Shape of every tile at once (refined px), packed on one canvas (``pack``; returns each tile's offset in it):
    area, centroid and ellipse axes of the sub-pixel iso-line integrated run by run (``run_moments``; the mean of
    the row and the column integrals, whose sampling errors partly cancel), Feret
    diameters and convex area of its hull (``support``) and its length (``perimeter``), all from its ``crossings``.
    ``flat``: the buffers the tiles and fields are views of (``RefinedParticles.flat``), read in place."""
    n = len(tiles)
    shape, offsets = shelves([t.shape for t in tiles])
    compiled = kernel("tile_runs") if n else None
    if compiled is not None:  # the same runs, tile by tile, without drawing the canvas
        row_runs, col_runs = _tile_runs(compiled, tiles, fields, offsets, level, flat)
    else:
        canvas, fcanvas = np.zeros(shape, np.int32), np.zeros(shape, np.float32)
        for k, (t, f, (oy, ox)) in enumerate(zip(tiles, fields, offsets)):
            box = (slice(oy, oy + t.shape[0]), slice(ox, ox + t.shape[1]))
            canvas[box][t] = k + 1
            if f.size:
                np.maximum(fcanvas[box], f, out=fcanvas[box])
        row_runs = runs(canvas, fcanvas, level)
        col_runs = column_runs(canvas, fcanvas, level)
    by_rows = run_moments(*row_runs, n)
    a_c, cc_c, cr_c, major_c, minor_c = run_moments(*col_runs, n)  # the same integrals column by column
    area, cr, cc, major, minor = (np.add(x, y) / 2 for x, y in zip(by_rows, (a_c, cr_c, cc_c, major_c, minor_c)))
    points = crossings(row_runs, col_runs, np.stack([cr, cc], axis=1))
    fmax, fmin, hull = support(*points, n)
    perim = perimeter(*points, n)
    return ShapeTable(np.arange(1, n + 1), area, cr, cc, major, minor, perim, fmax, fmin, hull,
                      np.zeros(n, bool)), offsets


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
MAX_NECK = 1.05  # the cut is at most this × the smaller piece's ECD (a 70 % neck: ~0.8 drawn, up to ~0.96 as
# the network rounds it)
MIN_PIECE = 0.2  # the smaller piece has at least this fraction of the larger one's area (discs of 2:1 diameter: 0.25)
NECK_DEPTH_PX = 0.7  # both concavities at least this deep (working px): the iso-line's own waviness stays < 0.5,
# a hard-edged ellipse's pixel staircase makes 0.66 px (0.6 let such an ellipse be cut across its middle; 0.7 costs
# the held-out F1 at most 0.0013, defocus, and splits every touching pair of the sizing bench still)
NECK_DEPTH = 0.05  # … and this deep relative to the cut between them (a 70 % neck of equal discs: ~0.2, rounded
# by the network ~0.08-0.15; a convex particle's largest pockets: < 0.04)
SMOOTH_PX = 2.0  # the outline is smoothed over this arc (working px) before its pockets are measured
PAIR_STANDS_OUT = 0.8  # a neck's two pockets stand out: the next is shallower than this × the shallower of them
# (the pixel staircase of a rasterized ellipse has many pockets of one depth, 0.66 px, which passed the depths)
VALLEY = 0.03  # a filled neck: P(particle) dips this much below both sides (4 nm discs at 70 %: 0.04-0.10;
# ellipses and discs of the standards: < 0.02)
VALLEY_SPAN = 0.4  # … within the middle 40 % of the particle's length


def _elongation(mask: np.ndarray) -> float:
    """Major / minor axis of a mask's inertia ellipse."""
    y, x = np.nonzero(mask)
    ev = np.linalg.eigvalsh(np.cov(np.stack([y, x]).astype(float))) if y.size > 2 else np.ones(2)
    return float(np.sqrt(max(ev[1], 1e-9) / max(ev[0], 1e-9)))


def smooth_closed(points: np.ndarray, k: int) -> np.ndarray:
    """A closed outline's points averaged over ``k`` neighbours (circularly)."""
    if k < 2 or len(points) <= 2 * k:
        return points
    ker = np.ones(k) / k
    wrapped = np.concatenate([points[-k:], points, points[:k]])
    return np.stack([np.convolve(wrapped[:, j], ker, "same")[k:-k] for j in (0, 1)], axis=1)


def neck_cut(tile: np.ndarray, field: np.ndarray, px_per_work: float) -> np.ndarray | None:
    """The tile's pixels labelled with the side of its neck they lie on (1, 2; 0 outside the particle's outline,
    whose field values the pieces share), or None when it has none.

    The neck is where the two deepest pockets of the smoothed sub-pixel outline face each other: both at least
    ``NECK_DEPTH_PX`` working px and ``NECK_DEPTH`` × their distance deep, and deeper than any other pocket by
    ``PAIR_STANDS_OUT``. The tile is cut along the line through
    them; the cut must be at most ``MAX_NECK`` × the smaller piece's ECD, that piece at least ``MIN_PIECE`` of the
    larger, and no piece elongated beyond ``MAX_PIECE_ELONGATION`` (a convex particle has no such pockets at all)."""
    outline = smooth_closed(longest_outline(field), int(round(SMOOTH_PX * px_per_work)))
    found = pockets(outline)
    if len(found) < 2:
        return None
    (_, i), (depth, j) = found[:2]
    if len(found) > 2 and found[2][0] >= PAIR_STANDS_OUT * depth:
        return None
    p, q = outline[i], outline[j]
    cut = float(np.hypot(*(q - p)))
    if depth < max(NECK_DEPTH_PX * px_per_work, NECK_DEPTH * cut):
        return None
    return _halves(tile, p, q, cut)


def _halves(tile: np.ndarray, p: np.ndarray, q: np.ndarray, cut: float | None = None) -> np.ndarray | None:
    """The tile's pixels on either side (1, 2) of the line through p and q, if they make two particles: the smaller
    at least ``MIN_PIECE`` of the larger, the cut (``cut``, else the tile's chord along the line) at most
    ``MAX_NECK`` × its ECD, neither elongated beyond ``MAX_PIECE_ELONGATION``; else None."""
    rows, cols = np.ogrid[:tile.shape[0], :tile.shape[1]]
    d = q - p
    across = (d[0] * (cols - p[1]) - d[1] * (rows - p[0])) / np.hypot(*d)
    side = across > 0
    pieces = np.where(tile, 1 + side, 0)
    sizes = np.bincount(pieces.ravel(), minlength=3)[1:]
    if cut is None:
        cut = _chord(tile, p, q)
    if sizes.min() < MIN_PIECE * sizes.max() or cut > MAX_NECK * np.sqrt(4 * sizes.min() / np.pi):
        return None
    # a neck is narrower than the widest part of each piece beside it (measured parallel to the cut, a pixel or
    # more away from it); a convex particle is widest where it would be cut, so it is never split
    along = np.broadcast_to(((rows - p[0]) * d[0] + (cols - p[1]) * d[1]) / np.hypot(*d), tile.shape)
    off = np.broadcast_to(np.rint(across), tile.shape)
    for piece in (1, 2):
        sel = (pieces == piece) & (np.abs(off) >= 1)
        if not sel.any():
            return None
        o, a = off[sel].astype(int), along[sel]
        o -= o.min()
        lo, hi = np.full(o.max() + 1, np.inf), np.full(o.max() + 1, -np.inf)
        np.minimum.at(lo, o, a)
        np.maximum.at(hi, o, a)
        width = hi - lo + 1
        if cut >= width.max():
            return None
    if max(_elongation(pieces == 1), _elongation(pieces == 2)) > MAX_PIECE_ELONGATION:
        return None
    return 1 + side


def _chord(tile: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """The tile's extent along the line through p and q (its pixels within half a pixel of the line)."""
    rows, cols = np.ogrid[:tile.shape[0], :tile.shape[1]]
    d = q - p
    across = (d[0] * (cols - p[1]) - d[1] * (rows - p[0])) / np.hypot(*d)
    on = tile & (np.abs(across) <= 0.5)
    along = ((rows - p[0]) * d[0] + (cols - p[1]) * d[1]) / np.hypot(*d)
    return float(np.ptp(np.broadcast_to(along, tile.shape)[on]) + 1) if on.any() else 0.0


def valley_cut(tile: np.ndarray, origin: tuple[int, int], grid_rows: np.ndarray, grid_cols: np.ndarray,
               particle: np.ndarray, scale: tuple[float, float]) -> np.ndarray | None:
    """Like ``neck_cut``, for a neck the network filled in (no pockets in the outline) but where its particle
    probability still dips: along the particle's long axis (its grid pixels, ``particle`` probability, 1-px bins),
    a valley ``VALLEY`` below the lower of the two peaks beside it, in the middle ``VALLEY_SPAN`` of the length; the
    tile is cut across the axis there (same checks on the pieces)."""
    if grid_rows.size < 6:
        return None
    yx = np.stack([grid_rows, grid_cols], axis=1).astype(float)
    centre = yx.mean(axis=0)
    axis = np.linalg.eigh(np.cov((yx - centre).T))[1][:, 1]
    t = (yx - centre) @ axis
    bins = np.floor(t - t.min()).astype(int)
    profile = np.full(bins.max() + 1, -1.0)
    np.maximum.at(profile, bins, particle[grid_rows, grid_cols])
    if profile.size < 5:
        return None
    left = np.maximum.accumulate(profile)[:-2]
    right = np.maximum.accumulate(profile[::-1])[::-1][2:]
    depth = np.minimum(left, right) - profile[1:-1]
    i = int(np.argmax(depth))
    where = (i + 1) / (profile.size - 1)
    if depth[i] < VALLEY or abs(where - 0.5) > VALLEY_SPAN / 2:
        return None
    sy, sx = scale
    across = np.array([-axis[1] * sy, axis[0] * sx])

    def at(b: float) -> np.ndarray:  # bin centre → tile coordinates
        return (centre + axis * (t.min() + b + 0.5) + 0.5) * (sy, sx) - 0.5 - np.asarray(origin, float)

    p = at(i + 1)
    return _halves(tile, p, p + across)


def split_necks(refined: RefinedParticles, instances: np.ndarray, candidates: np.ndarray,
                particle: np.ndarray | None = None, slices: list | None = None
                ) -> tuple[RefinedParticles, np.ndarray, int]:
    """Split touching particles the network's boundary class left joined, at their neck (``neck_cut``, else
    ``valley_cut`` on the ``particle`` class probability of the working grid), for each candidate (not convex
    enough: solidity below what a convex outline reaches). The grid labels follow: each grid pixel takes the piece
    at its centre, or the nearest piece. Returns the new outlines, the new grid labels and how many particles were
    split. ``slices``: ``find_objects`` of ``instances``, when the caller has them."""
    H, W = refined.frame_shape
    h, w = instances.shape
    m = refined.m
    sy, sx = H * m / h, W * m / w  # refined pixels per grid pixel
    tiles = fields = origins = out = None  # copies, made at the first split (most frames have none)
    n_split = 0
    todo = np.flatnonzero(candidates)
    slices = ndi.find_objects(instances) if slices is None and todo.size else slices
    for k in todo:
        tile, origin = refined.tiles[k], tuple(refined.origins[k])  # as they were: a split changes only its own
        if tile.sum() < 16:
            continue
        sides = neck_cut(tile, refined.fields[k], min(sy, sx))
        sl = slices[k]
        if sides is None and particle is not None:
            r, c = np.nonzero(instances[sl] == k + 1)
            sides = valley_cut(tile, origin, r + sl[0].start, c + sl[1].start, particle, (sy, sx))
        if sides is None:
            continue
        pieces = np.where(tile, sides, 0)
        u0, v0 = origin
        # grid pixels of this particle take the piece at (or nearest to) their centre
        rows, cols = np.nonzero(instances[sl] == k + 1)
        rows, cols = rows + sl[0].start, cols + sl[1].start
        ru = np.clip(np.floor((rows + 0.5) * sy).astype(int) - u0, 0, tile.shape[0] - 1)
        rv = np.clip(np.floor((cols + 0.5) * sx).astype(int) - v0, 0, tile.shape[1] - 1)
        _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
        piece = pieces[iy[ru, rv], ix[ru, rv]]
        if np.unique(piece).size < 2:  # a piece too small to own a grid pixel: keep the particle whole
            continue
        if out is None:
            tiles, fields = list(refined.tiles), list(refined.fields)
            origins, out = [tuple(o) for o in refined.origins], instances.copy()
        n_split += 1
        field = fields[k]
        tiles[k], fields[k] = pieces == 1, np.where(sides == 1, field, 0)
        tiles.append(pieces == 2)
        fields.append(np.where(sides == 2, field, 0))
        origins.append((u0, v0))
        out[rows, cols] = np.where(piece == 1, k + 1, len(tiles))
    if not n_split:
        return refined, instances, 0
    return RefinedParticles(m, refined.frame_shape, tiles, np.asarray(origins, np.intp), fields), out, n_split
