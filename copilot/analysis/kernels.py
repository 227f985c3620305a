"""Optional compiled kernels for the particle geometry (``geometry.refine_particles``, ``support``, ``perimeter``):
loops over every particle's pixels or points in one call, without a numpy call per particle or a
(directions × points) temporary; and for the grains of a boundary map (``grain_frame.boundary_map``,
``grains.fill_boundaries``, ``grains.measure_grains``, ``grain_frame.grain_table``): one pass over the pixels
where numpy needs a full-frame labelling, gathers or weighted counts; and for phases (``phases.subpixel_fractions``,
``morphology``): the boundary pixels' sub-point fractions, the exact distance transform and the test-line intercepts,
each in one pass without full-frame temporaries.

numba compiles them on first use (``copilot.compiled``); without numba, or with ``COPILOT_NUMBA=0`` in the
environment, ``kernel(name)`` is None and the caller runs its numpy code, which gives the same arrays bit for bit
(the same float operations in the same order; tests hold the two to equality).
"""

from __future__ import annotations

import numpy as np

from copilot.compiled import compiled


def refine_boxes(fg, instances, owner, ry0, ry1, fy, gy, ny, rx0, rx1, fx, gx, nx, labels, u0, u1, v0, v1, starts,
                 level, own_out, mask_out):  # pragma: no cover - compiled by numba; its output is tested
    """Box j (label ``labels[j]``, refined rows u0..u1, columns v0..v1) written row by row from ``starts[j]``
    into ``own_out`` (its field: bilinear foreground, 0 where ``owner`` gives the nearest grid pixel to another
    instance) and
    ``mask_out`` (field ≥ ``level``, or the label's own grid pixels where the field never reaches it)."""
    zero = np.float32(0.0)
    vert = np.empty(fg.shape[1], np.float32)  # a refined row's vertical interpolation, per grid column of the box
    for j in range(labels.size):
        lab = labels[j]
        width = v1[j] - v0[j]
        c0, c1 = rx0[v0[j]], rx1[v1[j] - 1] + 1  # the grid columns the box reads (rx0, rx1 never decrease)
        found = False
        for i in range(u1[j] - u0[j]):
            u = u0[j] + i
            a0, a1, wy, gyu, nyu = ry0[u], ry1[u], fy[u], gy[u], ny[u]
            base = starts[j] + i * width
            for c in range(c0, c1):
                vert[c] = np.float32(fg[a0, c] * gyu + fg[a1, c] * wy)
            for t in range(width):
                v = v0[j] + t
                val = vert[rx0[v]] * gx[v] + vert[rx1[v]] * fx[v]
                if owner[nyu, nx[v]] != lab:
                    val = val * zero
                own_out[base + t] = val
                hit = val >= level
                mask_out[base + t] = hit
                found = found or hit
        if not found:
            for i in range(u1[j] - u0[j]):
                u = u0[j] + i
                base = starts[j] + i * width
                for t in range(width):
                    mask_out[base + t] = instances[ny[u], nx[v0[j] + t]] == lab


def extents(xs, ys, starts, ends, c, s, hi, lo):  # pragma: no cover - compiled by numba; its output is tested
    """For each particle j (points ``starts[j]``..``ends[j]``) and direction d (``c[d, j]``, ``s[d, j]``): the
    largest and smallest projection c·x + s·y of its points, into ``hi[j, d]`` and ``lo[j, d]`` (point by point, all
    directions at once: the inner loop runs over directions, without a reduction to order)."""
    nd = c.shape[0]
    top, bottom = np.empty(nd), np.empty(nd)
    cj, sj = np.empty(nd), np.empty(nd)
    for j in range(starts.size):
        for d in range(nd):
            cj[d], sj[d] = c[d, j], s[d, j]
        x, y = xs[starts[j]], ys[starts[j]]
        for d in range(nd):
            v = cj[d] * x + sj[d] * y
            top[d], bottom[d] = v, v
        for p in range(starts[j] + 1, ends[j]):
            x, y = xs[p], ys[p]
            for d in range(nd):
                v = cj[d] * x + sj[d] * y
                top[d] = max(top[d], v)
                bottom[d] = min(bottom[d], v)
        for d in range(nd):
            hi[j, d], lo[j, d] = top[d], bottom[d]


def tile_runs(mask, field, starts, heights, widths, rows0, cols0, level, out_row, out_col):
    # pragma: no cover - compiled by numba; its output is tested
    """The runs of every tile (``geometry.runs`` / ``column_runs`` of their ``pack`` canvas, without the canvas):
    tile k is ``mask`` / ``field`` from ``starts[k]``, ``heights[k]`` × ``widths[k]``, at (``rows0[k]``,
    ``cols0[k]``) of the canvas, whose pixels around it are empty. Row runs into ``out_row`` (label, row, sub-pixel
    start and end column), column runs into ``out_col`` (label, column, start and end row), tile by tile — each
    label's runs in the canvas's order — with the same float32 insets. Returns how many of each."""
    lv, tiny, half, zero = np.float32(level), np.float32(1e-6), np.float32(0.5), np.float32(0.0)
    count = np.zeros(2, np.int64)  # row runs, column runs
    for k in range(starts.size):
        h, w, base = heights[k], widths[k], starts[k]
        for axis in range(2):  # along the rows (lines = rows), then down the columns (lines = columns)
            if axis == 0:
                lines, length, line_step, step, out = h, w, w, 1, out_row
                line0, along0 = rows0[k], cols0[k]
            else:
                lines, length, line_step, step, out = w, h, 1, w, out_col
                line0, along0 = cols0[k], rows0[k]
            for line in range(lines):
                at = base + line * line_step
                t = 0
                while t < length:
                    if not mask[at + t * step]:
                        t += 1
                        continue
                    first = t
                    while t < length and mask[at + t * step]:
                        t += 1
                    last = t - 1
                    inside = field[at + first * step]
                    outside = field[at + (first - 1) * step] if first > 0 else zero
                    inset0 = (inside - lv) / max(inside - outside, tiny) if inside >= lv and outside < lv else half
                    inside = field[at + last * step]
                    outside = field[at + (last + 1) * step] if last < length - 1 else zero
                    inset1 = (inside - lv) / max(inside - outside, tiny) if inside >= lv and outside < lv else half
                    r = count[axis]
                    out[0, r] = k + 1
                    out[1, r] = line0 + line
                    out[2, r] = np.float64(along0 + first) - np.float64(inset0)
                    out[3, r] = np.float64(along0 + last) + np.float64(inset1)
                    count[axis] = r + 1
    return count[0], count[1]


def shelf_offsets(sizes, order, width, offsets):  # pragma: no cover - compiled by numba; its output is tested
    """``geometry.shelves``' loop: tiles (``sizes``: rows, columns) in ``order`` on shelves of ``width``, one empty
    pixel around each; their (row, col) offsets into ``offsets``; returns the canvas's height."""
    y = x = shelf = 0
    for i in range(order.size):
        k = order[i]
        th, tw = sizes[k, 0], sizes[k, 1]
        if x + tw + 1 > width:
            y, x, shelf = y + shelf + 1, 0, 0
        offsets[k, 0], offsets[k, 1] = y + 1, x + 1
        x += tw + 1
        shelf = max(shelf, th)
    return y + shelf + 2


def order_within(values, starts, ends, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out``: the indices that sort ``values`` within each group ``starts[j]``..``ends[j]`` (stable), groups in
    place — ``np.lexsort((values, group))`` for groups already in order. A natural merge sort (stable, so the same
    order as numpy's): the group's non-decreasing runs and its strictly decreasing ones reversed (an outline's
    crossings by angle come in a few such runs), then merged pairwise, values moved with their indices."""
    longest = 1
    for j in range(starts.size):
        longest = max(longest, ends[j] - starts[j])
    val, idx = np.empty(longest, values.dtype), np.empty(longest, np.int64)
    val2, idx2 = np.empty(longest, values.dtype), np.empty(longest, np.int64)
    bounds, bounds2 = np.empty(longest + 1, np.int64), np.empty(longest + 1, np.int64)
    for j in range(starts.size):
        a, m = starts[j], ends[j] - starts[j]
        if m <= 0:
            continue
        for i in range(m):
            val[i], idx[i] = values[a + i], a + i
        runs, i = 0, 0
        while i < m:  # runs: [bounds[r], bounds[r + 1])
            bounds[runs] = i
            runs += 1
            k = i + 1
            if k < m and val[k] < val[i]:  # strictly decreasing: reversed, it is a stable ascending run
                while k + 1 < m and val[k + 1] < val[k]:
                    k += 1
                lo, hi = i, k
                while lo < hi:
                    val[lo], val[hi] = val[hi], val[lo]
                    idx[lo], idx[hi] = idx[hi], idx[lo]
                    lo += 1
                    hi -= 1
                i = k + 1
            else:
                while k < m and not val[k] < val[k - 1]:
                    k += 1
                i = k
        bounds[runs] = m
        src_v, src_i, dst_v, dst_i = val, idx, val2, idx2
        src_b, dst_b = bounds, bounds2
        while runs > 1:
            merged = 0
            for r in range(0, runs, 2):
                lo, mid = src_b[r], src_b[r + 1]
                hi = src_b[r + 2] if r + 2 <= runs else mid
                dst_b[merged] = lo
                merged += 1
                p, q = lo, mid
                for t in range(lo, hi):
                    if q < hi and (p >= mid or src_v[q] < src_v[p]):
                        dst_v[t], dst_i[t] = src_v[q], src_i[q]
                        q += 1
                    else:
                        dst_v[t], dst_i[t] = src_v[p], src_i[p]
                        p += 1
            dst_b[merged] = m
            runs = merged
            src_v, dst_v, src_i, dst_i, src_b, dst_b = dst_v, src_v, dst_i, src_i, dst_b, src_b
        for i in range(m):
            out[a + i] = src_i[i]


def group_points(la, ya, xa0, xa1, lb, xb, yb0, yb1, centre, at, lab, ys, xs):
    # pragma: no cover - compiled by numba; its output is tested
    """``geometry.crossings``' points without its sort: the row runs' starts, the row runs' ends, the column runs'
    starts, the column runs' ends, each label's in that order from ``at[label]`` on (a counting sort by label: the
    order numpy's stable sort of the four concatenated parts gives), relative to the label's ``centre``."""
    for part in range(4):
        labels = la if part < 2 else lb
        for i in range(labels.size):
            k = labels[i]
            p = at[k]
            at[k] = p + 1
            lab[p] = k
            if part == 0:
                y, x = ya[i], xa0[i]
            elif part == 1:
                y, x = ya[i], xa1[i]
            elif part == 2:
                y, x = yb0[i], xb[i]
            else:
                y, x = yb1[i], xb[i]
            ys[p] = y - centre[k - 1, 0]
            xs[p] = x - centre[k - 1, 1]


def polygon_lengths(ys, xs, order, starts, ends, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out[j]``: the length of the closed polygon through points ``order[starts[j]:ends[j]]`` of (``ys``,
    ``xs``) — ``geometry.perimeter``'s numpy, bit for bit: its steps summed as ``np.add.reduceat`` sums them (the
    first, then numpy's pairwise sum of the rest and a trailing zero: 8 accumulators in blocks of at most 128,
    halves above that), then the closing step added."""
    longest = 1
    for j in range(starts.size):
        longest = max(longest, ends[j] - starts[j])
    step = np.empty(longest)
    node_lo, node_n, node_stage = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64)
    partial = np.empty(64)
    acc = np.empty(8)
    for j in range(starts.size):
        s, e = starts[j], ends[j]
        count = e - s  # points; steps between them, then a zero where the next particle's first step would be
        for i in range(count - 1):
            a, b = order[s + i], order[s + i + 1]
            step[i] = np.hypot(ys[b] - ys[a], xs[b] - xs[a])
        step[count - 1] = 0.0
        # step[0] + pairwise(step[1:count]), numpy's reduction of one reduceat segment
        top, vals = 0, 0
        node_lo[0], node_n[0], node_stage[0] = 1, count - 1, 0
        while top >= 0:
            lo, n, stage = node_lo[top], node_n[top], node_stage[top]
            if n <= 128:
                if n < 8:
                    res = 0.0
                    for i in range(n):
                        res += step[lo + i]
                else:
                    for t in range(8):
                        acc[t] = step[lo + t]
                    i = 8
                    while i < n - (n % 8):
                        for t in range(8):
                            acc[t] += step[lo + i + t]
                        i += 8
                    res = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
                    while i < n:
                        res += step[lo + i]
                        i += 1
                partial[vals] = res
                vals += 1
                top -= 1
                continue
            half = n // 2
            half -= half % 8
            if stage == 0:
                node_stage[top] = 1
                top += 1
                node_lo[top], node_n[top], node_stage[top] = lo, half, 0
            elif stage == 1:
                node_stage[top] = 2
                top += 1
                node_lo[top], node_n[top], node_stage[top] = lo + half, n - half, 0
            else:
                partial[vals - 2] = partial[vals - 2] + partial[vals - 1]
                vals -= 1
                top -= 1
        first, last = order[s], order[e - 1]
        out[j] = (step[0] + partial[0]) + np.hypot(ys[last] - ys[first], xs[last] - xs[first])


def hysteresis(p, low, high, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out``: the pixels above ``low`` 4-connected through pixels above ``low`` to a pixel above ``high``
    (flood fill from every strong pixel; the same set as labelling the weak pixels and keeping seeded labels)."""
    h, w = p.shape
    stack = np.empty(h * w, np.int64)
    top = 0
    for y in range(h):
        for x in range(w):
            if p[y, x] > high and not out[y, x]:
                out[y, x] = True
                stack[top] = y * w + x
                top += 1
                while top:
                    top -= 1
                    cy, cx = stack[top] // w, stack[top] % w
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and not out[ny, nx] and p[ny, nx] > low:
                            out[ny, nx] = True
                            stack[top] = ny * w + nx
                            top += 1


def grow_rings(padded, ys, xs, steps):  # pragma: no cover - compiled by numba; its output is tested
    """Up to ``steps`` rings: every listed empty pixel of ``padded`` takes the largest id among its 8 neighbours
    as they were before the ring; pixels still empty stay listed. Returns how many are left (first in ys, xs)."""
    n = ys.size
    best = np.empty(n, padded.dtype)
    for _ in range(steps):
        if n == 0:
            break
        for i in range(n):
            y, x = ys[i], xs[i]
            m = padded[y - 1, x - 1]
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    v = padded[y + dy, x + dx]
                    if v > m:
                        m = v
            best[i] = m
        k = 0
        for i in range(n):
            padded[ys[i], xs[i]] = best[i]
            if best[i] == 0:
                ys[k], xs[k] = ys[i], xs[i]
                k += 1
        n = k
    return n


def label_moments(labels, n, area, sum_y, sum_x):  # pragma: no cover - compiled by numba; its output is tested
    """Pixel count and row / column sums per label (labels < ``n``), accumulated in pixel order like ``bincount``."""
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            area[k] += 1
            sum_y[k] += y
            sum_x[k] += x


def distinct_labels(labels, n):  # pragma: no cover - compiled by numba; its output is tested
    """How many different values (< ``n``) a 2-d label array holds."""
    seen = np.zeros(n, np.bool_)
    count = 0
    for y in range(labels.shape[0]):
        for x in range(labels.shape[1]):
            k = labels[y, x]
            if not seen[k]:
                seen[k] = True
                count += 1
    return count


def owners(labels, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out``: each pixel's label, or where it has none the largest in its 3 × 3 neighbourhood (the edge repeating
    itself) — ``np.where(labels > 0, labels, geometry.dilate3(labels))``: the maximum over the three rows first,
    then over three columns of it."""
    h, w = labels.shape
    column = np.empty(w + 2, labels.dtype)
    for y in range(h):
        up, mid, down = labels[max(y - 1, 0)], labels[y], labels[min(y + 1, h - 1)]
        for x in range(w):
            column[x + 1] = max(max(up[x], mid[x]), down[x])
        column[0], column[w + 1] = column[1], column[w]
        row = out[y]
        for x in range(w):
            grown = max(max(column[x], column[x + 1]), column[x + 2])
            row[x] = mid[x] if mid[x] > 0 else grown


def relabel_large(labels, min_area, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out``: labels with at least ``min_area`` pixels numbered 1..k in their order, the others 0 (``drop_small``)."""
    flat, dest = labels.ravel(), out.ravel()
    top = 0
    for i in range(flat.size):
        if flat[i] > top:
            top = flat[i]
    count = np.zeros(top + 1, np.int64)
    for i in range(flat.size):  # background pixels (most) skipped: no chain of increments of one counter
        if flat[i]:
            count[flat[i]] += 1
    lut = np.zeros(top + 1, np.int32)
    k = 0
    for lab in range(1, top + 1):
        if count[lab] > 0 and count[lab] >= min_area:
            k += 1
            lut[lab] = k
    for i in range(flat.size):
        dest[i] = lut[flat[i]] if flat[i] else 0


def marker_regions(markers, regions, region_of):  # pragma: no cover - compiled by numba; its output is tested
    """``region_of[m]``: the region (``regions``' label) under marker ``m``'s pixels (the last one's, in pixel order,
    as the numpy assignment gives)."""
    flat_m, flat_r = markers.ravel(), regions.ravel()
    for i in range(flat_m.size):
        if flat_m[i]:
            region_of[flat_m[i]] = flat_r[i]


def label_boxes(labels, boxes):  # pragma: no cover - compiled by numba; its output is tested
    """``boxes[k]``: (first row, last row + 1, first column, last column + 1) of label k + 1's pixels (labels up to
    ``len(boxes)``; larger ones are ignored), rows 0 for a label without pixels."""
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            if 0 < k <= boxes.shape[0]:
                b = boxes[k - 1]
                if b[1] == 0:
                    b[0], b[1], b[2], b[3] = y, y + 1, x, x + 1
                else:
                    b[1] = y + 1
                    b[2] = min(b[2], x)
                    b[3] = max(b[3], x + 1)


def take_labels(lut, labels, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out = lut[labels]``."""
    flat, dest = labels.ravel(), out.ravel()
    for i in range(flat.size):
        dest[i] = lut[flat[i]]


def take_and_boxes(lut, labels, out, wanted, boxes):  # pragma: no cover - compiled by numba; its output is tested
    """``out = lut[labels]``, and in the same pass ``label_boxes``' box of each label ``k`` with ``wanted[k]`` into
    ``boxes[k - 1]`` (the others stay zero)."""
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            out[y, x] = lut[k]
            if wanted[k]:
                if boxes[k - 1, 1] == 0:
                    boxes[k - 1, 0], boxes[k - 1, 1], boxes[k - 1, 2], boxes[k - 1, 3] = y, y + 1, x, x + 1
                else:
                    boxes[k - 1, 1] = y + 1
                    boxes[k - 1, 2] = min(boxes[k - 1, 2], x)
                    boxes[k - 1, 3] = max(boxes[k - 1, 3], x + 1)


def join_tips(markers, ends, n, tip_px):  # pragma: no cover - compiled by numba; its output is tested
    """``particles.core_markers``' loop over the core's end pixels (``ends``, in raster order), in place on
    ``markers``: a piece of at most ``tip_px`` pixels (counted within 2 px of its end) whose pixels' 8-neighbours
    belong to exactly one other, larger piece is relabelled as that piece; each piece is looked at once."""
    h, w = markers.shape
    done = np.zeros(n + 1, np.bool_)
    rows, cols = np.empty(9, np.int64), np.empty(9, np.int64)
    for p in range(ends.size):
        r, c = ends[p] // w, ends[p] % w
        own = markers[r, c]
        if done[own]:
            continue
        count = 0  # small(r, c): pixels of its own label within 2 px
        for y in range(max(r - 2, 0), min(r + 3, h)):
            for x in range(max(c - 2, 0), min(c + 3, w)):
                count += markers[y, x] == own
        if count > tip_px:
            continue
        done[own] = True
        k = 0  # the piece: its pixels within 1 px of the end, in raster order
        for y in range(max(r - 1, 0), min(r + 2, h)):
            for x in range(max(c - 1, 0), min(c + 2, w)):
                if markers[y, x] == own:
                    rows[k], cols[k] = y, x
                    k += 1
        first, other = 0, False  # the larger pieces next to it: none, one (first), or more (other)
        for i in range(k):
            for yy in range(max(rows[i] - 1, 0), min(rows[i] + 2, h)):
                for xx in range(max(cols[i] - 1, 0), min(cols[i] + 2, w)):
                    lab = markers[yy, xx]
                    if lab == 0 or lab == own:
                        continue
                    near = 0
                    for y in range(max(yy - 2, 0), min(yy + 3, h)):
                        for x in range(max(xx - 2, 0), min(xx + 3, w)):
                            near += markers[y, x] == lab
                    if near <= tip_px:
                        continue
                    if first == 0:
                        first = lab
                    elif lab != first:
                        other = True
        if first != 0 and not other:
            for i in range(k):
                markers[rows[i], cols[i]] = first


def label_sums(labels, values, pixels, rows, cols, count, sum_values, sum_pixels):
    # pragma: no cover - compiled by numba; its output is tested
    """Per label: pixel count, sum of ``values`` (shaped like ``labels``) and of ``pixels[rows[y], cols[x]]``, in
    float64, accumulated in pixel order (``bincount``'s sums)."""
    h, w = labels.shape
    for y in range(h):
        r = rows[y]
        for x in range(w):
            k = labels[y, x]
            if k > 0:
                count[k] += 1
                sum_values[k] += np.float64(values[y, x])
                sum_pixels[k] += np.float64(pixels[r, cols[x]])


def label_runs(mask, pixels, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out`` (zeros on entry): the 4-connected components of ``mask`` (``pixels`` of it set) numbered 1..n in the
    raster order of their first pixel, as ``ndimage.label`` numbers them; returns n. Each row's runs are joined
    (union-find) to the runs of the row above that share a column with them, then written with their component's
    number."""
    h, w = mask.shape
    bound = pixels + 1  # a run has a pixel at least
    row, start, end = np.empty(bound, np.int64), np.empty(bound, np.int64), np.empty(bound, np.int64)
    parent = np.empty(bound, np.int64)
    nr = 0
    above0 = above1 = 0
    for y in range(h):
        first = nr
        x = 0
        while x < w:
            if not mask[y, x]:
                x += 1
                continue
            row[nr], start[nr] = y, x
            while x < w and mask[y, x]:
                x += 1
            end[nr], parent[nr] = x, nr
            nr += 1
        i, j = above0, first
        while i < above1 and j < nr:
            if start[i] < end[j] and start[j] < end[i]:
                a, b = i, j
                while parent[a] != a:  # path halving: no long chains, whatever the mask's shape
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                while parent[b] != b:
                    parent[b] = parent[parent[b]]
                    b = parent[b]
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
            if end[i] < end[j]:
                i += 1
            elif end[j] < end[i]:
                j += 1
            else:
                i += 1
                j += 1
        above0, above1 = first, nr
    number = np.zeros(nr, np.int64)
    n = 0
    for r in range(nr):
        a = r
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        parent[r] = a
        if number[a] == 0:
            n += 1
            number[a] = n
        k = number[a]
        for x in range(start[r], end[r]):
            out[row[r], x] = k
    return n


def subpixel_counts(p, labels, k, counts):  # pragma: no cover - compiled by numba; its output is tested
    """``phases.subpixel_fractions`` in one pass: every pixel whose 4-neighbours share its class adds 1 to its
    class in ``counts`` (float64, per class); a boundary pixel adds 1 / k² for each of its k × k points, by the
    arg-max of the bilinearly interpolated float32 probabilities ``p`` (classes, h, w) there (edges clamped, as the
    numpy code's edge padding). Returns the number of boundary pixels."""
    n_classes, h, w = p.shape
    one = np.float32(1.0)
    fl = np.empty(k, np.int64)
    fr = np.empty(k, np.float32)
    for i in range(k):
        d = (i + 0.5) / k - 0.5
        f = np.floor(d)
        fl[i] = np.int64(f)
        fr[i] = np.float32(d - f)
    sub = np.zeros(n_classes)
    band = 0
    for y in range(h):
        for x in range(w):
            c = labels[y, x]
            if ((y > 0 and labels[y - 1, x] != c) or (y + 1 < h and labels[y + 1, x] != c)
                    or (x > 0 and labels[y, x - 1] != c) or (x + 1 < w and labels[y, x + 1] != c)):
                band += 1
                for i in range(k):
                    ya = min(max(y + fl[i], 0), h - 1)
                    yb = min(max(y + fl[i] + 1, 0), h - 1)
                    fy = fr[i]
                    for j in range(k):
                        xa = min(max(x + fl[j], 0), w - 1)
                        xb = min(max(x + fl[j] + 1, 0), w - 1)
                        fx = fr[j]
                        best, arg = np.float32(0.0), 0
                        for q in range(n_classes):
                            v = ((one - fy) * ((one - fx) * p[q, ya, xa] + fx * p[q, ya, xb])
                                 + fy * ((one - fx) * p[q, yb, xa] + fx * p[q, yb, xb]))
                            if q == 0 or v > best or (v != v and best == best):  # numpy's arg-max: first max,
                                best, arg = v, q  # a NaN wins at once
                        sub[arg] += 1.0
            else:
                counts[c] += 1.0
    for q in range(n_classes):
        counts[q] += sub[q] / (k * k)
    return band


def squared_distances(mask, out):  # pragma: no cover - compiled by numba; its output is tested
    """``out`` (int64): each pixel's squared Euclidean distance to the nearest pixel where ``mask`` is False (0 there),
    exact: nearest False pixel of each column, then the lower envelope of the columns' parabolas along each row
    (Felzenszwalb & Huttenlocher). Needs at least one False pixel."""
    h, w = mask.shape
    big = np.int64(1) << 60
    last = np.full(w, -1, np.int64)  # each column's nearest False pixel above, then below (rows in memory order)
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                last[x] = y
            out[y, x] = big if last[x] < 0 else (y - last[x]) * (y - last[x])
    last[:] = -1
    for y in range(h - 1, -1, -1):
        for x in range(w):
            if not mask[y, x]:
                last[x] = y
            if last[x] >= 0 and (last[x] - y) * (last[x] - y) < out[y, x]:
                out[y, x] = (last[x] - y) * (last[x] - y)
    f = np.empty(w, np.int64)
    v = np.empty(w, np.int64)
    z = np.empty(w + 1)
    for y in range(h):
        for x in range(w):
            f[x] = out[y, x]
        k = -1
        for q in range(w):
            if f[q] >= big:
                continue
            while k >= 0:
                s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
                if s <= z[k]:
                    k -= 1
                else:
                    break
            k += 1
            v[k] = q
            if k == 0:
                z[k] = -np.inf
            else:
                p = v[k - 1]
                z[k] = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
            z[k + 1] = np.inf
        j = 0
        for x in range(w):
            while z[j + 1] < x:
                j += 1
            out[y, x] = (x - v[j]) * (x - v[j]) + f[v[j]]


def intercepts(labels, dy, dx, off, t, length, in_class, cross):  # pragma: no cover - compiled by numba; tested
    """``morphology.intercept_counts`` without the (lines × steps) profiles: for each angle k (direction ``dy[k]``,
    ``dx[k]``) and test line at offset ``off[i]``, the class at each step ``t[j]`` (the pixel nearest to it, the
    same float operations as ``line_profiles``): steps inside the frame in ``length``, per class in ``in_class``,
    and each change of class between two consecutive steps inside the frame as a crossing of both classes in
    ``cross``. Lines that never enter the frame are skipped, so each angle's lines are numbered from 0 as the
    numpy code's are."""
    h, w = labels.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for k in range(dy.size):
        line = 0
        for i in range(off.size):
            seen = False
            prev = -1
            for j in range(t.size):
                yy = np.int64(np.rint(cy + off[i] * dx[k] + t[j] * dy[k]))
                xx = np.int64(np.rint(cx - off[i] * dy[k] + t[j] * dx[k]))
                if 0 <= yy < h and 0 <= xx < w:
                    c = labels[yy, xx]
                    seen = True
                    length[k, line] += 1.0
                    in_class[k, line, c] += 1.0
                    if prev >= 0 and prev != c:
                        cross[k, line, prev] += 1.0
                        cross[k, line, c] += 1.0
                    prev = c
                else:
                    prev = -1
            if seen:
                line += 1


def kernel(name: str):
    """The compiled ``refine_boxes``, ``extents``, ``tile_runs``, ``order_within``, ``group_points``,
    ``polygon_lengths``, ``shelf_offsets``, ``hysteresis``, ``grow_rings``,
    ``label_moments``, ``distinct_labels``, ``relabel_large``, ``marker_regions``, ``label_boxes``, ``take_labels``,
    ``take_and_boxes``, ``join_tips``, ``label_sums``, ``owners``, ``label_runs``, ``subpixel_counts``,
    ``squared_distances`` or ``intercepts``, or None (``copilot.compiled``: numba missing,
    or ``COPILOT_NUMBA=0``)."""
    return compiled(name, globals())
