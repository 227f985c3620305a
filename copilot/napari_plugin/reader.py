"""Reader for results folders (``copilot analyze --out``, a daemon's session folder): per frame, the frame image
(read again from its origin, when that file is still there) and its labels (``<name>.labels.tif``, written with
``--save-masks``) carrying the particle table as features."""

from __future__ import annotations

import logging
from pathlib import Path

import tifffile

from copilot.api import read_results
from copilot.errors import CopilotError
from copilot.napari_plugin.layers import LayerData, image_layer, labels_layer

log = logging.getLogger(__name__)


def get_reader(path: str | list[str]):
    """npe2 reader contribution: a reader function for a results folder, or None for anything else."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else ""
    return read_folder if path and (Path(path) / "results.jsonl").is_file() else None


def read_folder(path: str | list[str]) -> list[LayerData]:
    folder = Path(path[0] if isinstance(path, list) else path)
    layers: list[LayerData] = []
    for doc in read_results(folder).documents:
        name = Path(doc.origin).stem if doc.origin else doc.frame_id
        if Path(doc.origin).is_file():
            from copilot.readers import read_frame

            try:
                layers.append(image_layer(doc, read_frame(Path(doc.origin)).pixels))
            except CopilotError as exc:
                log.warning("frame %s not shown: %s", doc.origin, exc)
        mask = folder / f"{name}.labels.tif"
        if mask.is_file():
            layers.append(labels_layer(doc, tifffile.imread(mask)))
    return layers
