"""Write results where people open them: results.jsonl, frames.csv, particles.csv, Fiji-ready label TIFFs."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import tifffile

from copilot.result import Result

FRAME_COLUMNS = [
    "stream", "frame_id", "origin", "acquired_at", "nm_per_px", "length_unit", "count", "count_edge", "count_sized",
    "ecd_mean", "ecd_sd", "d10", "d50", "d90", "image_confidence", "verdict", "reasons", "end_to_end_ms",
]
PARTICLE_COLUMNS = ["frame_id", "particle_id", "centroid_x_px", "centroid_y_px", "area", "ecd", "length_unit", "touches_edge"]


def frame_row(result: Result) -> dict:
    d = result.doc
    p = d.measurements.particles
    row = {
        "stream": d.stream, "frame_id": d.frame_id, "origin": d.origin, "acquired_at": d.acquired_at.isoformat(),
        "nm_per_px": d.calibration.nm_per_px, "length_unit": d.measurements.length_unit,
        "image_confidence": d.reliability.image_confidence, "verdict": d.verdict.level,
        "reasons": "; ".join(d.verdict.reasons), "end_to_end_ms": d.timings_ms.get("end_to_end"),
    }
    if p is not None:
        row.update(count=p.count, count_edge=p.count_edge, count_sized=p.count_sized, ecd_mean=p.ecd_mean,
                   ecd_sd=p.ecd_sd, d10=p.d10, d50=p.d50, d90=p.d90)
    return row


def upsample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour label mask on the frame's own pixel grid."""
    rows = np.minimum((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0], labels.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1], labels.shape[1] - 1).astype(int)
    return labels[np.ix_(rows, cols)]


class ResultWriter:
    """A pipeline sink: appends each result to the exports in ``out_dir`` (thread-safe, flushed per frame)."""

    def __init__(self, out_dir: Path, save_masks: bool = False):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.save_masks = save_masks
        self._lock = threading.Lock()
        self._jsonl = open(self.out_dir / "results.jsonl", "a", encoding="utf-8")
        self._frames_fh = open(self.out_dir / "frames.csv", "w", newline="", encoding="utf-8")
        self._particles_fh = open(self.out_dir / "particles.csv", "w", newline="", encoding="utf-8")
        self._frames = csv.DictWriter(self._frames_fh, FRAME_COLUMNS)
        self._particles = csv.DictWriter(self._particles_fh, PARTICLE_COLUMNS)
        self._frames.writeheader()
        self._particles.writeheader()
        self.count = 0

    def __call__(self, result: Result) -> None:
        d = result.doc
        with self._lock:
            self._jsonl.write(d.to_json() + "\n")
            self._frames.writerow(frame_row(result))
            p = d.measurements.particles
            for part in p.particles if p is not None else []:
                self._particles.writerow({
                    "frame_id": d.frame_id, "particle_id": part.id, "centroid_x_px": round(part.centroid_x_px, 2),
                    "centroid_y_px": round(part.centroid_y_px, 2), "area": part.area, "ecd": part.ecd,
                    "length_unit": d.measurements.length_unit, "touches_edge": part.touches_edge,
                })
            for fh in (self._jsonl, self._frames_fh, self._particles_fh):
                fh.flush()
            if self.save_masks and "labels" in result.parts:
                labels = upsample_labels(np.asarray(result.parts["labels"]), (d.image.height_px, d.image.width_px))
                name = Path(d.origin).stem if d.origin else d.frame_id
                resolution = None
                if d.calibration.nm_per_px:
                    resolution = (1 / d.calibration.nm_per_px, 1 / d.calibration.nm_per_px)
                tifffile.imwrite(self.out_dir / f"{name}.labels.tif", labels.astype(np.uint16), imagej=True,
                                 resolution=resolution, metadata={"unit": "nm"} if resolution else {})
            self.count += 1

    def close(self) -> None:
        for fh in (self._jsonl, self._frames_fh, self._particles_fh):
            fh.close()
