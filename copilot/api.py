"""The co-pilot from Python (a notebook, a script): analyze an image, read results back — as pandas DataFrames.

    >>> import copilot
    >>> doc, particles = copilot.analyze_image(image, nm_per_px=0.2)      # doctest: +SKIP
    >>> doc, particles = copilot.analyze_image(hs.load("frame.dm4"))     # doctest: +SKIP  (nm/px from the axes)
    >>> frames, particles = copilot.read_results("results/")             # doctest: +SKIP

Images go through the daemon's own pipeline (reader checks aside: the array is the frame), so a notebook and the
daemon measure alike. Lengths are in nm when the image is calibrated, else in pixels (``doc.calibration``).
"""

from __future__ import annotations

import functools
import sqlite3
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from copilot.config import Settings, load_settings
from copilot.document.schema import ResultDocument
from copilot.defect_exports import DEFECT_COLUMNS, defect_rows
from copilot.errors import UserError
from copilot.exports import FRAME_COLUMNS, PARTICLE_COLUMNS, frame_row, particle_rows
from copilot.frame import Frame
from copilot.grain_exports import GRAIN_COLUMNS, grain_rows
from copilot.inference.preprocess import nearest_resample
from copilot.readers.rsciio_formats import axis_nm

PHASE_COLUMNS = ["frame_id", "phase", "area_fraction", "ci_low", "ci_high", "point_count"]


@dataclass(frozen=True)
class ImageAnalysis:
    """What :func:`analyze_image` returns; unpacks as ``doc, table = ...``."""

    document: ResultDocument
    table: pd.DataFrame  # one row per particle, phase, grain or defect (the model's task: ``task_table``)
    labels: np.ndarray = field(repr=False)  # instance (or class) labels at the image's own size

    def __iter__(self):
        return iter((self.document, self.table))


@dataclass(frozen=True)
class Results:
    """What :func:`read_results` returns; unpacks as ``frames, particles = ...``."""

    frames: pd.DataFrame
    particles: pd.DataFrame
    documents: list[ResultDocument] = field(repr=False)

    def __iter__(self):
        return iter((self.frames, self.particles))


def analyze_image(image: Any, nm_per_px: float | None = None, model: str | Path | None = None, *,
                  backend: str | None = None, config: str | Path | None = None,
                  frame_id: str = "image", engine: str | None = None) -> ImageAnalysis:
    """Segment and measure one 2-D image with a model (default: the config's ``model.name``).

    ``image`` is a numpy array, a hyperspy signal or a rosettasciio signal dict; for the last two, nm/px comes
    from the signal axes unless ``nm_per_px`` is given. ``None`` everywhere means uncalibrated: pixel units.
    ``backend`` runs the model (``auto``, ``onnxruntime-cpu``, ``tensorrt``, ...; default: the config's
    ``model.backend``). ``engine`` is its former name: deprecated (a DeprecationWarning), still accepted.
    """
    if engine is not None:
        warnings.warn("analyze_image(engine=...) is now analyze_image(backend=...)", DeprecationWarning, stacklevel=2)
        if backend is not None and backend != engine:
            raise UserError(f"analyze_image: engine={engine!r} and backend={backend!r} disagree; engine is the "
                            "deprecated name of backend: pass backend only")
        backend = engine
    settings = load_settings(Path(config) if config else None)
    pixels, axes_nm, origin = _pixels_and_scale(image)
    scale = nm_per_px if nm_per_px is not None else axes_nm
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise UserError(f"nm_per_px must be a positive number, got {scale!r}")
    frame = Frame(pixels, float(scale) if scale is not None else None, stream=settings.daemon.stream,
                  frame_id=frame_id, origin=origin,
                  calibration_source=("argument" if nm_per_px is not None else "signal axes") if scale else "none")
    result = _run(frame, settings, str(model or settings.model.name), backend or settings.model.backend)
    doc = result.doc
    labels = result.parts.get("labels")
    labels = nearest_resample(np.asarray(labels), frame.shape) if labels is not None else np.zeros(frame.shape, int)
    return ImageAnalysis(doc, task_table([doc]), labels)


def read_results(folder_or_store: str | Path) -> Results:
    """Frames and particles of a results folder (``copilot analyze --out``, a session folder), a daemon's state
    folder or its ``results.sqlite``, as DataFrames (one row per frame / per particle)."""
    path = Path(folder_or_store)
    if (path / "results.jsonl").is_file():
        lines = (path / "results.jsonl").read_text(encoding="utf-8").splitlines()
        docs = [ResultDocument.from_json(line) for line in lines if line.strip()]
    elif path.is_file() and path.suffix == ".sqlite" or (path / "results.sqlite").is_file():
        docs = _store_documents(path if path.is_file() else path / "results.sqlite")
    else:
        raise UserError(f"{path}: neither a results folder (results.jsonl) nor a state folder or store "
                        "(results.sqlite)")
    frames = pd.DataFrame([frame_row(d) for d in docs], columns=FRAME_COLUMNS)
    frames["acquired_at"] = pd.to_datetime(frames["acquired_at"], format="ISO8601")
    return Results(frames, particle_table(docs), docs)


def _store_documents(path: Path) -> list[ResultDocument]:
    """The documents of a daemon's results.sqlite, opened read-only: the daemon may be writing it, and the reader
    need not own it."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT document FROM frames WHERE document IS NOT NULL ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a co-pilot results store ({exc})") from exc
    finally:
        con.close()
    return [ResultDocument.from_json(document) for (document,) in rows]


def particle_table(docs: list[ResultDocument]) -> pd.DataFrame:
    """One row per particle (the columns of particles.csv; lengths in nm, and in frame pixels)."""
    return pd.DataFrame([row for d in docs for row in particle_rows(d)], columns=PARTICLE_COLUMNS)


def phase_table(docs: list[ResultDocument]) -> pd.DataFrame:
    """One row per frame and phase: area fraction with its 95 % interval, and the ASTM E562 point count."""
    rows = [{"frame_id": d.frame_id, "phase": ph.name, "area_fraction": ph.area_fraction,
             "ci_low": ph.ci.low if ph.ci else None, "ci_high": ph.ci.high if ph.ci else None,
             "point_count": ph.point_count}
            for d in docs if d.measurements.phases for ph in d.measurements.phases.phases]
    return pd.DataFrame(rows, columns=PHASE_COLUMNS)


def defect_table(docs: list[ResultDocument]) -> pd.DataFrame:
    """One row per sized radiation defect (the columns of defects.csv: class, diameter in nm and frame pixels)."""
    return pd.DataFrame([row for d in docs for row in defect_rows(d)], columns=DEFECT_COLUMNS)


def grain_table(docs: list[ResultDocument]) -> pd.DataFrame:
    """One row per grain inside the frame (the columns of grains.csv)."""
    return pd.DataFrame([row for d in docs for row in grain_rows(d)], columns=GRAIN_COLUMNS)


def task_table(docs: list[ResultDocument]) -> pd.DataFrame:
    """The object table of the documents' task (that of the first): phases, grains, defects, else particles."""
    task = docs[0].measurements.task if docs else "particles"
    return {"phases": phase_table, "grains": grain_table, "defects": defect_table}.get(task, particle_table)(docs)


def _pixels_and_scale(image: Any) -> tuple[np.ndarray, float | None, str]:
    """2-D pixels, nm/px from the signal's axes (None when it has none), and an origin label."""
    if isinstance(image, list) and len(image) == 1:  # rsciio's file_reader returns a list of signals
        image = image[0]
    if isinstance(image, dict) and "data" in image:  # a rosettasciio signal dict
        axes = list(image.get("axes") or [])
        title = (image.get("metadata") or {}).get("General", {}).get("title", "")
        pixels, nm = np.asarray(image["data"]), axis_nm(axes[-1]) if axes else None
        origin = f"rosettasciio signal {title!r}".replace(" ''", "")
    elif hasattr(image, "axes_manager") and hasattr(image, "data"):  # a hyperspy signal
        am = image.axes_manager
        if am.navigation_dimension:
            raise UserError(f"the signal has navigation axes {am.navigation_shape}: pass one image, e.g. "
                            "signal.inav[0]")
        axes = am.signal_axes
        pixels = np.asarray(image.data)
        nm = axis_nm({"scale": axes[0].scale, "units": axes[0].units}) if len(axes) == 2 else None
        origin = f"hyperspy signal {image.metadata.get_item('General.title', '')!r}".replace(" ''", "")
    else:
        pixels, nm, origin = np.asarray(image), None, "array"
    if pixels.ndim != 2 or min(pixels.shape) < 2 or pixels.dtype.kind not in "uif":
        raise UserError(f"expected a 2-D grey image, got shape {pixels.shape} of {pixels.dtype}")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise UserError("the image holds NaN or infinite values: replace them first (numpy.nan_to_num)")
    return np.ascontiguousarray(pixels), nm, origin


@functools.lru_cache(maxsize=4)
def _backend(model: str, backend: str, threads: int, max_whole_px: int):
    from copilot.inference.select import load_backend

    return load_backend(model, backend, threads, max_whole_px)


def _run(frame: Frame, settings: Settings, model: str, backend: str):
    from copilot.pipeline import Pipeline
    from copilot.sources.base import Arrival

    m = settings.model
    results: list = []
    pipeline = Pipeline(_backend(model, backend, m.threads, m.max_whole_px), stream=frame.stream,
                        sinks=[results.append], quarantine_dir=None, analysis=settings.analysis,
                        series=settings.series, thresholds=settings.verdict).start()
    pipeline.submit(Arrival(origin=frame.origin, frame=frame))
    pipeline.stop()
    if not results:
        raise RuntimeError(f"the pipeline returned no result for the image: {pipeline.stats.last_error}")
    return results[0]
