"""``copilot inclusions FILE``: classes, fractions and per-mm² tallies of the inclusions in one EDS spectrum image."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from copilot.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("inclusions", help="inclusion classes and chemistry from an EDS spectrum image (.bcf/.emd)")
    p.add_argument("file", type=Path, help="Bruker .bcf or Velox .emd with an EDS spectrum image")
    p.add_argument("--config", type=Path, default=None, help="TOML with an [eds] section "
                   "(e.g. configs/sem-inclusions-eds.toml); default: built-in lines, unit k-factors")
    p.add_argument("--labels", type=Path, default=None,
                   help="object mask (.npy/.tif/.png, 0 = matrix) on the EDS map grid; default: segmented from the EDS signal")
    p.add_argument("--out", type=Path, default=None, help="folder for inclusions.csv and inclusions.json")
    p.set_defaults(func=run)


def _labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        labels = np.load(path, allow_pickle=False)
    else:
        import imageio.v3 as iio

        labels = iio.imread(path)
    if labels.shape != shape:
        raise UserError(f"{path.name}: mask is {labels.shape[1]}x{labels.shape[0]} px, the EDS map {shape[1]}x{shape[0]}")
    return labels.astype(np.int32)


def run(args) -> int:
    from copilot.config import load_settings
    from copilot.eds.cube import read_eds
    from copilot.eds.inclusions import analyse_inclusions, segment_inclusions
    from copilot.eds.settings import EdsSettings

    cfg = (load_settings(args.config).eds if args.config else None) or EdsSettings()
    cube = read_eds(args.file)
    labels = _labels(args.labels, cube.shape) if args.labels else segment_inclusions(cube, cfg)
    rep = analyse_inclusions(cube, labels, cfg)
    area = "uncalibrated" if rep.field_area_mm2 is None else f"{rep.field_area_mm2:.4g} mm²"
    print(f"{args.file.name}: {len(rep.objects)} objects, field {area}, {rep.basis} fractions ({rep.note})")
    for t in rep.classes:
        dens = "" if t.count_per_mm2 is None else f"  {t.count_per_mm2:10.1f} /mm²"
        print(f"  {t.name:<13} {t.count:5d}{dens}  area {100 * t.area_fraction:6.3f} %")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        elements = sorted({el for o in rep.objects for el in o.fractions})
        with open(args.out / "inclusions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "class", "confidence", "area_px", "y_px", "x_px", "counts", *elements])
            for o in rep.objects:
                w.writerow([o.id, o.inclusion_class, f"{o.confidence:.3f}", o.area_px, f"{o.centroid_yx_px[0]:.1f}",
                            f"{o.centroid_yx_px[1]:.1f}", o.counts, *[f"{o.fractions.get(el, 0.0):.4f}" for el in elements]])
        doc = {"file": str(args.file), "basis": rep.basis, "note": rep.note, "field_area_mm2": rep.field_area_mm2,
               "classes": [asdict(t) for t in rep.classes], "objects": [asdict(o) for o in rep.objects]}
        (args.out / "inclusions.json").write_text(json.dumps(doc, indent=1))
    return 0
