"""Real instrument files (no labels) through the right model and the classical baseline, with overlays."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import OUT, console
from copilot.analysis import measure
from copilot.baseline import classical_particles, classical_phases, particles_are_bright
from copilot.inference.preprocess import nearest_resample as nearest_to_grid
from evaluation import daemon_verdict, interior_ecd_nm
from figures import pore_class, real_overlay_png

# real files without labels: (package, version, member, task, label, what the microscopist knows)
REAL_FILES = [
    ("hyperspy", "1.7.6", "hyperspy/tests/io/bruker_data/bcf_v2_50x50px.bcf", "particles",
     "Bruker BCF, real SEM image with bright particles", {"bright_particles": True}),
    ("hyperspy", "1.7.6", "hyperspy/tests/io/dm3_2D_data/multi_signal.dm3", "particles",
     "DigitalMicrograph DM3, real HAADF-STEM image", {"bright_particles": True}),
    ("aquami", "1.1.0", "aquami/micrographs/Sample.tif", "phases",
     "Zeiss SEM TIFF, nanoporous gold (data bar cropped by the reader)", {"n_phases": 2}),  # ligament + pore
]


def run_real_files(models: list[str]) -> list[dict[str, Any]]:
    from copilot.inference.ort_backend import OrtBackend
    from copilot.readers import read_frame
    from copilot.readers.vendor_samples import fetch_vendor_file

    out = []
    backends: dict[str, Any] = {}
    by_task: dict[str, list[str]] = {}
    for name in models:
        try:
            eng = OrtBackend.from_name(name, threads=2)
        except Exception as exc:  # noqa: BLE001
            console.log(f"[yellow]cannot load {name}: {exc}")
            continue
        backends[name] = eng
        by_task.setdefault(eng.card.task, []).append(name)
    preferred = {"particles": "particles-stem", "phases": "phases-sem"}
    for package, version, member, task, label, known in REAL_FILES:
        entry: dict[str, Any] = {"file": f"{package}=={version}:{member}", "label": label, "task": task}
        try:
            path = fetch_vendor_file(package, version, member)
            frame = read_frame(path, stream="real")
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {exc}"
            out.append(entry)
            continue
        entry.update(shape=list(frame.shape), nm_per_px=frame.nm_per_px, calibration=frame.calibration_source,
                     data_bar_rows=frame.meta.get("data_bar_rows"), signal=frame.meta.get("signal"))
        candidates = by_task.get(task, [])
        model = preferred[task] if preferred[task] in candidates else (candidates[0] if candidates else None)
        stem = Path(member).stem
        model_labels = None
        if model is None:
            entry["model"] = None
            entry["model_note"] = (f"no shipped model for task {task!r} (wanted {preferred[task]}); "
                                   f"shipped: {sorted(backends)}")
        else:
            eng = backends[model]
            lo, hi = eng.card.trained_nm_per_px_range
            t0 = time.perf_counter()
            fm = measure(eng.segment(frame))
            entry["model"] = model
            entry["model_seconds"] = time.perf_counter() - t0
            entry["grid_shape"] = list(fm.instances.shape)
            entry["grid_nm_per_px"] = fm.segmentation.nm_per_px
            entry["in_trained_range"] = frame.nm_per_px is not None and lo <= frame.nm_per_px <= hi
            entry["trained_nm_per_px_range"] = [lo, hi]
            if fm.summary.particles is not None:
                p = fm.summary.particles
                entry["model_result"] = {"count": p.count, "count_edge": p.count_edge, "count_sized": p.count_sized,
                                         "d50_nm": p.d50, "ecd_mean_nm": p.ecd_mean,
                                         "length_unit": fm.summary.length_unit}
            if fm.summary.phases is not None:
                entry["model_result"] = {"fractions": {q.name: q.area_fraction for q in fm.summary.phases.phases}}
            model_labels = nearest_to_grid(fm.instances, frame.shape)
            probs = fm.segmentation.probabilities
            entry["model_mean_confidence"] = float(probs.max(axis=0).mean())
            entry["verdict"] = daemon_verdict(eng, fm)
        nm = frame.nm_per_px
        if task == "particles":
            # both particle files are known to show bright particles (SEM SE/BSE, HAADF): the microscopist sets it
            bright = particles_are_bright(frame.pixels)
            bl = classical_particles(frame.pixels, nm, bright_particles=known["bright_particles"])
            ecd = interior_ecd_nm(bl, nm if nm else 1.0)
            entry["baseline"] = {"bright_particles": known["bright_particles"], "bright_guess_auto": bright, "count": int(bl.max(initial=0)), "count_sized": int(ecd.size),
                                 "d50_nm": float(np.median(ecd)) if ecd.size else None,
                                 "ecd_mean_nm": float(ecd.mean()) if ecd.size else None,
                                 "length_unit": "nm" if nm else "px"}
        else:
            n = known["n_phases"]
            bl = classical_phases(frame.pixels, n)
            entry["baseline"] = {"n_phases": n,
                                 "fractions_dark_to_bright": (np.bincount(bl.ravel(), minlength=n)[:n] / bl.size).tolist(),
                                 "pore_fraction": float(np.mean(bl == 0))}
        png = OUT / f"real_{stem}.png"
        model_tint = pore_class(backends[model].card.class_names) if model else 0
        real_overlay_png(png, frame.pixels, model_labels, bl, entry, model_tint)
        entry["overlay"] = png.name
        out.append(entry)
        console.log(f"real {stem}: {json.dumps({k: entry.get(k) for k in ('model_result', 'baseline')}, default=str)}")
    return out
