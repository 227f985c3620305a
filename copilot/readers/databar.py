"""Find the burned-in SEM data bar (Zeiss, FEI/Thermo, JEOL style) at the bottom of a frame.

A data bar is drawn, not imaged: each of its rows is a flat background plus text and rules in one or two other
levels, so nearly every pixel of a bar row takes one of that row's two most frequent values. An imaged row has
noise and a spread of values. The detector walks up from the bottom while rows look drawn (tolerating gaps of up to
``max_gap`` imaged rows, e.g. the stray last scan line under a Zeiss bar), then accepts the block only if all of these
hold (so a plain image is never cropped):

- the block is between ``min_rows`` and ``max_fraction`` of the height (bars are ~5–15 %);
- the image above it looks imaged (median "drawn" score of the rows above < ``image_score_max``), right up to the
  bar's top edge (the three rows above it too: a drawn bar starts on a straight line, a clipped region does not);
- the block carries marks (text/rules): at least ``min_text_fraction`` of its rows have pixels off their background;
- the bar's background is at an extreme of the frame's range (white or black), as every vendor draws it.

Vendor metadata (FEI ``[Image] ResolutionY``) is used before this and wins when present.

>>> rng = np.random.default_rng(0)
>>> img = rng.normal(120, 20, (200, 256)).clip(0, 255).astype(np.uint8)
>>> detect_data_bar(img)
0
>>> img[180:] = 255; img[185:190, 20:60] = 0   # white bar with a black "word"
>>> detect_data_bar(img)
20
"""

from __future__ import annotations

import numpy as np

#: a row is "drawn" when this fraction of its pixels sits on its two most frequent values
DRAWN_SCORE_MIN = 0.8


def row_drawn_score(row: np.ndarray) -> float:
    """Fraction of the row's pixels equal to one of its two most frequent values (1.0 = flat or two-level)."""
    _, counts = np.unique(row, return_counts=True)
    if counts.size <= 2:
        return 1.0
    return float(np.partition(counts, counts.size - 2)[-2:].sum()) / row.size


def row_drawn_scores(pixels: np.ndarray) -> np.ndarray:
    """:func:`row_drawn_score` of every row."""
    return np.array([row_drawn_score(row) for row in pixels], dtype=np.float64)


def detect_data_bar(
    pixels: np.ndarray,
    *,
    min_rows: int = 4,
    max_fraction: float = 0.3,
    image_score_max: float = 0.5,
    min_text_fraction: float = 0.1,
    extreme_tolerance: float = 0.05,
    max_gap: int = 2,
) -> int:
    """Number of rows of a burned-in data bar at the bottom of ``pixels`` (0 when there is none).

    ``pixels`` is a 2-D grey image of any numeric dtype. Parameters are the acceptance thresholds described in the
    module docstring. Rows are scored lazily from the bottom, so a plain frame costs a few rows of work.
    """
    if pixels.ndim != 2 or pixels.shape[0] < 16 or pixels.shape[1] < 16:
        return 0
    if np.issubdtype(pixels.dtype, np.floating) and not np.all(np.isfinite(pixels[-1])):
        pixels = np.nan_to_num(pixels)
    height = pixels.shape[0]
    limit = int(height * max_fraction)

    top = _drawn_block_top(pixels, max_gap, lowest=height - limit - max_gap - 2)
    n = 0 if top is None else height - top
    if n < min_rows or n > limit:
        return 0
    above = row_drawn_scores(pixels[max(0, top - max(n, 32)) : top])
    if above.size < min_rows or float(np.median(above)) >= image_score_max:
        return 0
    if float(np.max(above[-3:])) >= image_score_max:  # a drawn bar starts on a straight, sharp edge
        return 0

    bar = pixels[top:]
    background = _mode(bar)
    marked_rows = np.mean(np.mean(bar != background, axis=1) >= 0.005)
    if marked_rows < min_text_fraction:
        return 0

    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    span = hi - lo
    if span <= 0:
        return 0
    bg = float(background)
    if min(bg - lo, hi - bg) > extreme_tolerance * span:
        return 0
    return n


def _drawn_block_top(pixels: np.ndarray, max_gap: int, lowest: int) -> int | None:
    """First row of the drawn block at the bottom (None if none). Up to ``max_gap`` imaged rows may sit below the
    block (Zeiss leaves a last scan line under its bar) or inside it. The walk stops at row ``lowest``; a block
    still going there is longer than any bar and comes back as -1."""
    top = None
    gap = 0
    for i in range(pixels.shape[0] - 1, max(lowest, 0) - 1, -1):
        if row_drawn_score(pixels[i]) >= DRAWN_SCORE_MIN:
            top, gap = i, 0
        else:
            gap += 1
            if gap > max_gap:
                return top
    return -1 if top is not None else None  # still drawn at the limit: longer than any bar


def _mode(values: np.ndarray):
    uniq, counts = np.unique(values, return_counts=True)
    return uniq[np.argmax(counts)]
