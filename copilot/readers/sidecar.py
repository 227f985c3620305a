"""Per-frame metadata beside an image file: ``<file>.json`` (``foil_0012.tif.json``) or ``<stem>.json``
(``foil_0012.json``), one JSON object whose keys join the frame's metadata.

It carries what an image file cannot: in an in-situ irradiation the dose the frame was taken at (``dose_dpa``) and the
foil thickness (``foil_thickness_nm``), which swelling and its trend against dose read (``copilot.analysis.defects``);
any other key is kept with the frame. The key the file's own metadata already has wins (a sidecar fills in, it does
not overrule the instrument), and the keys the readers set themselves (``READER_KEYS``) are never taken. Write the
sidecar before the image, or within ``source.settle_s`` of it. A sidecar that is not a JSON object of at most
``SIDECAR_MAX_BYTES``, nested at most ``SIDECAR_MAX_DEPTH`` deep, is skipped with a warning and the frame is read
without it (``meta["sidecar_error"]`` says why): a typo beside the image never costs the image.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from copilot.readers.base import json_nesting_depth, path_text

log = logging.getLogger(__name__)

SIDECAR_MAX_BYTES = 64 * 1024
SIDECAR_MAX_DEPTH = 16  # JSON nesting
#: keys the readers set themselves (what the document reports of the file): never taken from a sidecar
READER_KEYS = frozenset({"format", "signal", "signals", "frames", "frame_index", "source_shape", "data_bar_rows",
                         "data_bar_source", "acquired_at_source", "sidecar", "sidecar_error", "pushed_from"})


def sidecar_path(path: Path) -> Path | None:
    """The sidecar of ``path``: ``<file>.json``, else ``<stem>.json``; None when neither is a regular file."""
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        try:
            if candidate != path and candidate.is_file():
                return candidate
        except OSError:  # a folder we may not look into: as if there were none
            continue
    return None


def read_sidecar(side: Path) -> tuple[dict[str, Any], str | None]:
    """(the sidecar's keys, None), or ({}, why it was skipped)."""
    try:
        with open(side, "rb") as fh:
            raw = fh.read(SIDECAR_MAX_BYTES + 1)
    except OSError as exc:
        return {}, f"{path_text(side)}: cannot read it ({exc.strerror or exc})"
    if len(raw) > SIDECAR_MAX_BYTES:
        return {}, f"{path_text(side)}: larger than {SIDECAR_MAX_BYTES // 1024} KiB"
    if (depth := json_nesting_depth(raw)) > SIDECAR_MAX_DEPTH:
        return {}, f"{path_text(side)}: nests {depth} levels deep, more than {SIDECAR_MAX_DEPTH}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {}, f"{path_text(side)}: not JSON ({str(exc)[:120]})"
    if not isinstance(data, dict):
        return {}, f"{path_text(side)}: a JSON object (keys and values) is expected, got {type(data).__name__}"
    return data, None


def merge_sidecar(path: Path, meta: dict[str, Any]) -> None:
    """Add the sidecar's keys that ``meta`` lacks (not ``READER_KEYS``), and ``sidecar`` (its file name) or
    ``sidecar_error``."""
    side = sidecar_path(path)
    if side is None:
        return
    data, problem = read_sidecar(side)
    if problem is not None:
        log.warning("sidecar skipped, frame read without it: %s", problem)
        meta["sidecar_error"] = problem
        return
    if data:
        for key, value in data.items():
            if key not in READER_KEYS:
                meta.setdefault(key, value)
        meta["sidecar"] = path_text(side)
