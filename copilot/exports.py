"""Write results where people open them: results.jsonl, frames.csv, particles.csv, grains.csv, inclusions.csv,
defects.csv, Fiji-ready label TIFFs, and at the end a session summary (JSON) with a PSD plot and a trend plot (PNG)."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Iterable

import numpy as np
import tifffile

from copilot.analysis.defect_series import DOSE_SUFFIX
from copilot.defect_exports import DEFECT_COLUMNS, DEFECT_FRAME_COLUMNS, defect_frame_columns, defect_rows
from copilot.errors import UserError
from copilot.inference.preprocess import nearest_resample
from copilot.document.schema import ResultDocument, SeriesSummary
from copilot.grain_exports import GRAIN_COLUMNS, GRAIN_FRAME_COLUMNS, grain_frame_columns, grain_rows
from copilot.inclusion_exports import (INCLUSION_COLUMNS, INCLUSION_FRAME_COLUMNS, inclusion_frame_columns,
                                       inclusion_rows)
from copilot.result import Result

FRAME_COLUMNS = [
    "stream", "frame_id", "origin", "acquired_at", "nm_per_px", "length_unit", "count", "count_edge", "count_sized",
    "density_per_um2", "ecd_mean", "ecd_sd", "d10", "d50", "d90", "d50_ci_low", "d50_ci_high", "geometric_mean", "sigma_g",
    "phase_fractions", "enough", "image_confidence", "predicted_f1", "verdict", "reasons", "end_to_end_ms",
    "seq", "queue_wait_ms",
] + GRAIN_FRAME_COLUMNS + INCLUSION_FRAME_COLUMNS + DEFECT_FRAME_COLUMNS
PARTICLE_COLUMNS = [
    "frame_id", "particle_id", "centroid_x_px", "centroid_y_px", "area_nm2", "ecd_nm", "feret_max_nm", "feret_min_nm",
    "aspect_ratio", "circularity", "solidity", "mean_intensity", "confidence", "touches_edge",
    # pixel columns (frame pixels) are always filled; the nm columns stay empty for an uncalibrated frame
    "area_px", "ecd_px", "feret_max_px", "feret_min_px",
]
STAGES = ("queue_wait", "read", "infer", "analyze", "assess", "end_to_end")


def frame_row(d: ResultDocument) -> dict:
    p = d.measurements.particles
    row = {
        "stream": d.stream, "frame_id": d.frame_id, "origin": d.origin, "acquired_at": d.acquired_at.isoformat(),
        "nm_per_px": d.calibration.nm_per_px, "length_unit": d.measurements.length_unit,
        "image_confidence": d.reliability.image_confidence, "predicted_f1": d.reliability.predicted_f1,
        "verdict": d.verdict.level, "reasons": "; ".join(d.verdict.reasons), "end_to_end_ms": d.timings_ms.get("end_to_end"),
        "seq": d.seq, "queue_wait_ms": d.timings_ms.get("queue_wait"),
        "enough": all(s.enough for s in d.measurements.sufficiency) if d.measurements.sufficiency else None,
    }
    if p is not None:
        row.update(count=p.count, count_edge=p.count_edge, count_sized=p.count_sized, density_per_um2=p.density_per_um2,
                   ecd_mean=p.ecd_mean, ecd_sd=p.ecd_sd, d10=p.d10, d50=p.d50, d90=p.d90)
        if p.d50_ci:
            row.update(d50_ci_low=p.d50_ci.low, d50_ci_high=p.d50_ci.high)
        if p.lognormal:
            row.update(geometric_mean=p.lognormal.geometric_mean, sigma_g=p.lognormal.sigma_g)
    if d.measurements.phases is not None:
        row["phase_fractions"] = json.dumps({ph.name: round(ph.area_fraction, 6) for ph in d.measurements.phases.phases})
    row.update(grain_frame_columns(d))
    row.update(inclusion_frame_columns(d))
    row.update(defect_frame_columns(d))
    return row


def particle_rows(d: ResultDocument):
    p = d.measurements.particles
    if p is None:
        return
    calibrated = d.measurements.length_unit == "nm"
    nm_frame = d.calibration.nm_per_px or 1.0
    to_px = 1.0 / nm_frame if calibrated else 1.0  # length unit → frame pixels
    for q in p.particles:
        row = {
            "frame_id": d.frame_id, "particle_id": q.id, "centroid_x_px": round(q.centroid_x_px, 3),
            "centroid_y_px": round(q.centroid_y_px, 3), "aspect_ratio": q.aspect_ratio, "circularity": q.circularity,
            "solidity": q.solidity, "mean_intensity": q.mean_intensity, "confidence": q.confidence,
            "touches_edge": q.touches_edge, "area_px": q.area * to_px**2, "ecd_px": q.ecd * to_px,
            "feret_max_px": q.feret_max * to_px, "feret_min_px": q.feret_min * to_px,
        }
        if calibrated:
            row.update(area_nm2=q.area, ecd_nm=q.ecd, feret_max_nm=q.feret_max, feret_min_nm=q.feret_min)
        yield row


_LATENCY_EDGES_MS = np.geomspace(1e-2, 1e7, 541)  # ~4 % wide bins: percentiles within ±2 %, constant memory
_PLOT_POINTS = 4096  # trend points kept per stream; beyond, every other one is dropped (the whole session's shape)


def trend_point(d: ResultDocument) -> tuple[str, float, float, float] | None:
    """(quantity, value, 95 % low, high) that trend.png follows for a document: the D50 (particles; NaN for a frame
    without one), the second phase's area fraction (phases), the swelling ΔV/V in % (defects, where the frame has a
    thickness); None where the document has none of them."""
    m = d.measurements
    p, phases, defects = m.particles, m.phases, m.defects
    if p is not None:
        ci = p.d50_ci if p.d50 else None
        return f"D50 ({m.length_unit})", p.d50 or np.nan, ci.low if ci else np.nan, ci.high if ci else np.nan
    if phases is not None and len(phases.phases) > 1:
        ph = phases.phases[1]
        low, high = (ph.ci.low, ph.ci.high) if ph.ci else (np.nan, np.nan)
        return f"area fraction of {ph.name}", ph.area_fraction, low, high
    if defects is not None and defects.swelling is not None:
        ci = defects.swelling_ci
        return ("swelling ΔV/V (%)", 100 * defects.swelling, 100 * ci.low if ci else np.nan,
                100 * ci.high if ci else np.nan)
    return None


class _StreamAggregate:
    """One stream's running summary: constant memory however long the session (no documents are kept)."""

    def __init__(self) -> None:
        self.frames = 0
        self.first_acquired_at = self.last_acquired_at = None
        self.model: dict | None = None
        self.length_unit = "px"
        self.verdicts: Counter = Counter()
        self.latency = {stage: np.zeros(len(_LATENCY_EDGES_MS) + 1, np.int64) for stage in STAGES}
        self.d50_first = self.d50_last = None
        self.series: dict | None = None
        self.last_series: SeriesSummary | None = None
        self.alerts: deque = deque(maxlen=1000)
        self.first_psd: list[int] | None = None
        self.last_psd: list[int] | None = None
        self.log_n, self.log_sum, self.log_sum2 = 0, 0.0, 0.0  # ln ECD of sized particles: log-normal fit
        self.points: list[tuple[float, ...]] = []  # (t unix s, value, low, high, dose or NaN)
        self.stride, self._skip = 1, 0
        self.quantity: str | None = None
        self.fail_frames = 0  # FAIL frames: counted, left out of sizes, PSDs, trends (the model was wrong there)
        self.fail_points: list[tuple[float, float]] = []  # (t unix s, value) of FAIL frames, marked on trend.png

    def add(self, d: ResultDocument) -> None:
        self.frames += 1
        if self.first_acquired_at is None or d.acquired_at < self.first_acquired_at:
            self.first_acquired_at = d.acquired_at
        if self.last_acquired_at is None or d.acquired_at >= self.last_acquired_at:
            self.last_acquired_at = d.acquired_at
            self.model, self.length_unit = d.model.model_dump(), d.measurements.length_unit
            if d.series is not None:
                self.series, self.last_series = d.series.model_dump(exclude={"alerts"}), d.series
        self.verdicts[d.verdict.level] += 1
        for stage in STAGES:
            if stage in d.timings_ms:
                self.latency[stage][np.searchsorted(_LATENCY_EDGES_MS, d.timings_ms[stage])] += 1
        if d.series is not None:
            self.alerts.extend(a.model_dump() | {"frame_id": d.frame_id} for a in d.series.alerts)
        p = d.measurements.particles
        point = trend_point(d)
        if d.verdict.level == "fail":
            self.fail_frames += 1
            if point is not None and np.isfinite(point[1]) and len(self.fail_points) < _PLOT_POINTS:
                self.fail_points.append((d.acquired_at.timestamp(), float(point[1])))
            return
        value = low = high = np.nan
        if point is not None:
            self.quantity, value, low, high = point
        if p is not None:
            if p.d50:
                self.d50_first = p.d50 if self.d50_first is None else self.d50_first
                self.d50_last = p.d50
            if p.psd is not None:
                self.first_psd = self.first_psd or list(p.psd.counts)
                self.last_psd = list(p.psd.counts)
            ecd = np.array([q.ecd for q in p.particles if not q.touches_edge and q.ecd > 0])
            if ecd.size:
                logs = np.log(ecd)
                self.log_n += logs.size
                self.log_sum += float(logs.sum())
                self.log_sum2 += float((logs**2).sum())
        self._skip += 1
        if self._skip >= self.stride:
            self._skip = 0
            defects = d.measurements.defects
            dose = defects.dose if defects is not None and defects.dose is not None else np.nan
            self.points.append((d.acquired_at.timestamp(), value, low, high, dose))
            if len(self.points) >= _PLOT_POINTS:
                self.points, self.stride = self.points[::2], self.stride * 2

    def merge(self, later: "_StreamAggregate") -> None:
        """Fold in the aggregate of this stream's *later* documents (Accumulator.merge)."""
        if later.frames == 0:
            return
        if self.frames == 0:
            self.__dict__.update(later.__dict__)
            return
        self.frames += later.frames
        self.first_acquired_at = min(self.first_acquired_at, later.first_acquired_at)
        if later.last_acquired_at >= self.last_acquired_at:
            self.last_acquired_at, self.model, self.length_unit = later.last_acquired_at, later.model, later.length_unit
            if later.series is not None:
                self.series, self.last_series = later.series, later.last_series
        self.verdicts += later.verdicts
        for stage in STAGES:
            self.latency[stage] += later.latency[stage]
        self.d50_first = self.d50_first if self.d50_first is not None else later.d50_first
        self.d50_last = later.d50_last if later.d50_last is not None else self.d50_last
        self.alerts.extend(later.alerts)
        self.first_psd = self.first_psd or later.first_psd
        self.last_psd = later.last_psd or self.last_psd
        self.log_n += later.log_n
        self.log_sum += later.log_sum
        self.log_sum2 += later.log_sum2
        self.quantity = later.quantity or self.quantity
        self.fail_frames += later.fail_frames
        self.fail_points = (self.fail_points + later.fail_points)[-_PLOT_POINTS:]
        self.points = self.points + later.points
        while len(self.points) >= _PLOT_POINTS:
            self.points, self.stride = self.points[::2], self.stride * 2

    def lognormal(self) -> tuple[float, float] | None:
        """(mean, sd) of ln ECD over every sized particle of the session."""
        if self.log_n < 3:
            return None
        mu = self.log_sum / self.log_n
        var = (self.log_sum2 - self.log_n * mu**2) / (self.log_n - 1)
        return mu, float(np.sqrt(max(var, 0.0)))

    def percentile(self, stage: str, q: float) -> float | None:
        counts = self.latency[stage]
        n = int(counts.sum())
        if n == 0:
            return None
        i = int(np.searchsorted(np.cumsum(counts), q / 100 * n))
        i = min(max(i, 1), len(_LATENCY_EDGES_MS) - 1)
        return float(np.sqrt(_LATENCY_EDGES_MS[i - 1] * _LATENCY_EDGES_MS[i]))  # the bin's geometric centre

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "first_acquired_at": self.first_acquired_at.isoformat(),
            "last_acquired_at": self.last_acquired_at.isoformat(),
            "model": self.model,
            "length_unit": self.length_unit,
            "verdicts": dict(self.verdicts),
            "latency_ms": {stage: {"p50": self.percentile(stage, 50), "p95": self.percentile(stage, 95)}
                           for stage in STAGES if self.latency[stage].sum()},
            "fail_frames_left_out": self.fail_frames,
            "d50_first_last": [self.d50_first, self.d50_last] if self.d50_first is not None else None,
            "series": self.series,
            "alerts": list(self.alerts),
        }


class SessionAggregate:
    """Running per-stream summaries of a session (what summary.json, psd.png and trend.png are made from)."""

    def __init__(self) -> None:
        self.streams: dict[str, _StreamAggregate] = {}

    def add(self, d: ResultDocument) -> None:
        self.streams.setdefault(d.stream, _StreamAggregate()).add(d)

    def merge(self, later: "SessionAggregate") -> None:
        """Fold in the aggregate of later documents of the same session (Accumulator.merge)."""
        for stream, agg in later.streams.items():
            self.streams.setdefault(stream, _StreamAggregate()).merge(agg)

    def summary(self) -> dict:
        return {stream: agg.summary() for stream, agg in self.streams.items()}


def session_summary(docs: Iterable[ResultDocument]) -> dict:
    """One JSON-able summary per stream: frames, span, verdicts, latency, final trends, pooled PSD, sufficiency."""
    agg = SessionAggregate()
    for d in docs:
        agg.add(d)
    return agg.summary()


def plot_session(agg: SessionAggregate, out_dir: Path) -> list[Path]:
    """psd.png (cumulative PSD with its log-normal fit, first vs last frame), trend.png (D50, fraction or swelling vs
    time) and, where frames carry a dose, dose.png (the same against dose), for the session's first stream that has
    them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    with_psd = [a for a in agg.streams.values() if a.last_series is not None and a.last_series.cumulative_psd]
    if with_psd:
        a = with_psd[0]
        unit = a.length_unit
        fig, ax = plt.subplots(figsize=(9.5, 4.5), dpi=110)
        cum = a.last_series.cumulative_psd
        edges = np.array(cum.edges)
        widths = np.diff(edges)
        ax.bar(edges[:-1], cum.counts, width=widths, align="edge", alpha=0.5, label=f"all {a.frames} frames")
        if a.first_psd is not None and len(a.first_psd) == len(widths):
            ax.step(edges[:-1], a.first_psd, where="post", label="first frame")
        if a.last_psd is not None and len(a.last_psd) == len(widths):
            ax.step(edges[:-1], a.last_psd, where="post", label="last frame")
        fit = a.lognormal()
        if fit is not None and fit[1] > 0:
            mu, sd = fit
            centres = np.sqrt(edges[:-1] * edges[1:]) if cum.scale == "log" else (edges[:-1] + edges[1:]) / 2
            pdf = np.exp(-((np.log(centres) - mu) ** 2) / (2 * sd**2)) / (centres * sd * np.sqrt(2 * np.pi))
            ax.plot(centres, pdf * widths * a.log_n, "k--",
                    label=f"log-normal: GM {np.exp(mu):.2f} {unit}, σg {np.exp(sd):.2f}")
        if cum.scale == "log":
            ax.set_xscale("log")
        ax.set_xlabel(f"equivalent circular diameter ({unit})")
        ax.set_ylabel("particles per bin")
        ax.set_title("particle size distribution (edge-cut particles and FAIL frames excluded)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
        fig.tight_layout()
        fig.savefig(out_dir / "psd.png")
        plt.close(fig)
        written.append(out_dir / "psd.png")
    with_points = [a for a in agg.streams.values() if len(a.points) >= 2 and a.quantity]
    if with_points:
        a = with_points[0]
        pts = np.array(sorted(a.points))
        trends = a.last_series.trends if a.last_series else []
        fail = None
        if a.fail_points:
            fp = np.array(a.fail_points)
            fail = ((fp[:, 0] - pts[0, 0]) / 60, fp[:, 1], f"FAIL frames ({a.fail_frames}, left out)")
        written.append(_band_plot(plt, (pts[:, 0] - pts[0, 0]) / 60, pts, a.quantity, "acquisition time (min)",
                                  next((tr for tr in trends if tr.slope is not None), None), out_dir / "trend.png",
                                  fail))
        dosed = pts[np.isfinite(pts[:, 4]) & np.isfinite(pts[:, 1])]
        if len(dosed) >= 2:  # frames that carry a dose (defects): the same quantity against it
            dosed = dosed[np.argsort(dosed[:, 4], kind="stable")]
            dose_trend = "swelling" + DOSE_SUFFIX
            trend = next((tr for tr in trends if tr.quantity == dose_trend and tr.slope is not None), None)
            written.append(_band_plot(plt, dosed[:, 4], dosed, a.quantity,
                                      "dose (the frames' metadata: dose_dpa, dpa, fluence or dose)", trend,
                                      out_dir / "dose.png"))
    return written


def _band_plot(plt, x, pts, quantity: str, xlabel: str, trend, path: Path, fail=None) -> Path:
    """``quantity`` (``pts[:, 1]``) against ``x`` with its 95 % band (``pts[:, 2:4]``), the trend's slope as title,
    ``fail``: (x, y, label) of frames left out, marked."""
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.fill_between(x, pts[:, 2], pts[:, 3], alpha=0.25, label="95 % interval")
    ax.plot(x, pts[:, 1], "o-", ms=3, label=quantity)
    if fail is not None:
        ax.plot(fail[0], fail[1], "x", color="#e5383b", ms=6, label=fail[2])
    if trend is not None:
        ax.set_title(_trend_title(trend), fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(quantity)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _trend_title(trend) -> str:
    """A trend's slope with its 95 % interval, or that it has no clear one."""
    ci = trend.slope_ci
    if ci is not None and (ci.low > 0 or ci.high < 0):
        return (f"{trend.name or trend.quantity}: {trend.slope:+.3g} {trend.unit} (95 % CI {ci.low:+.3g} "
                f"to {ci.high:+.3g}) over the last {trend.n_frames} frames")
    return f"{trend.name or trend.quantity}: no clear trend over the last {trend.n_frames} frames"


class ResultWriter:
    """A pipeline sink: appends each result to the exports in ``out_dir`` (thread-safe, flushed per frame);
    ``close()`` adds summary.json, psd.png, trend.png and dose.png.

    Memory stays flat: nothing per frame is kept beyond the running :class:`SessionAggregate`. A session continues
    across daemon restarts: ``resume`` (the file offsets :meth:`deliver` returned for the last frame the store
    knows was exported) truncates whatever a kill left after that point, and the daemon exports the rest again from
    the store, so every frame is in every file exactly once.
    """

    name = "exports"
    FILES = ("results.jsonl", "frames.csv", "particles.csv", "grains.csv", "inclusions.csv", "defects.csv")
    CSV_COLUMNS = {"frames.csv": FRAME_COLUMNS, "particles.csv": PARTICLE_COLUMNS, "grains.csv": GRAIN_COLUMNS,
                   "inclusions.csv": INCLUSION_COLUMNS, "defects.csv": DEFECT_COLUMNS}

    def __init__(self, out_dir: Path, save_masks: bool = False, *, resume: dict[str, int] | None = None):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the output folder {self.out_dir} ({exc.strerror or exc}): choose a "
                            "folder you can write to") from exc
        self.save_masks = save_masks
        self._lock = threading.Lock()
        self.aggregate = SessionAggregate()
        self._count = 0
        handles = {}
        for fname in self.FILES:
            path = self.out_dir / fname
            if resume is not None and path.exists():
                with open(path, "r+b") as fh:  # drop what a kill left after the last recorded frame
                    fh.truncate(resume.get(fname, 0))
                handles[fname] = open(path, "a", newline="", encoding="utf-8")
            else:
                handles[fname] = open(path, "w", newline="", encoding="utf-8")
        self._handles = tuple(handles[f] for f in self.FILES)
        self._jsonl = handles["results.jsonl"]
        self._csv = {f: csv.DictWriter(handles[f], cols) for f, cols in self.CSV_COLUMNS.items()}
        for f, writer in self._csv.items():
            if handles[f].tell() == 0:
                writer.writeheader()

    @classmethod
    def can_resume(cls, folder: Path, offsets: dict[str, int]) -> bool:
        """Whether a session folder can be continued: every file it recorded is there, at least as long as
        recorded, and every CSV has this version's columns (a folder from an older version starts a new session
        rather than mixing column sets)."""
        for f in cls.FILES:
            path = folder / f
            if f not in offsets:
                continue  # a file kind this folder's version did not write: created on resume
            if not path.exists() or path.stat().st_size < offsets[f]:
                return False
            if f in cls.CSV_COLUMNS and offsets[f] > 0:
                with open(path, newline="", encoding="utf-8") as fh:
                    if next(csv.reader(fh), None) != cls.CSV_COLUMNS[f]:
                        return False
        return folder.is_dir()

    @property
    def count(self) -> int:
        """Frames exported by this writer (since it was opened)."""
        return self._count

    def rebuild(self, docs: Iterable[ResultDocument]) -> None:
        """Fold documents exported before a restart into the session summary (nothing is written); may run on
        another thread while new results are exported: ``close`` waits for it."""
        earlier = SessionAggregate()
        for d in docs:
            earlier.add(d)
        with self._lock:
            earlier.merge(self.aggregate)
            self.aggregate = earlier

    def __call__(self, result: Result) -> None:
        self.deliver(result)

    def deliver(self, result: Result) -> str:
        """Export one result; returns the file offsets after it (JSON), the point a restart resumes from."""
        d = result.doc
        with self._lock:
            self.aggregate.add(d)
            self._count += 1
            self._jsonl.write(d.to_json() + "\n")
            self._csv["frames.csv"].writerow(frame_row(d))
            self._csv["particles.csv"].writerows(particle_rows(d))
            self._csv["grains.csv"].writerows(grain_rows(d))
            self._csv["inclusions.csv"].writerows(inclusion_rows(d))
            self._csv["defects.csv"].writerows(defect_rows(d))
            for fh in self._handles:
                fh.flush()
            if self.save_masks and result.frame_labels is not None:  # the measured outlines, frame pixels
                self._write_mask(d, result.frame_labels())
            elif self.save_masks and "labels" in result.parts:
                self._write_mask(d, np.asarray(result.parts["labels"]))
            return json.dumps(self.offsets())

    def offsets(self) -> dict[str, int]:
        return {f: fh.tell() for f, fh in zip(self.FILES, self._handles)}

    def _write_mask(self, d: ResultDocument, labels: np.ndarray) -> None:
        if labels.shape != (d.image.height_px, d.image.width_px):
            labels = nearest_resample(labels, (d.image.height_px, d.image.width_px))
        name = Path(d.origin).stem if d.origin else d.frame_id
        kwargs = {}
        if d.calibration.nm_per_px:
            kwargs = dict(resolution=(1 / d.calibration.nm_per_px, 1 / d.calibration.nm_per_px), metadata={"unit": "nm"})
        tifffile.imwrite(self.out_dir / f"{name}.labels.tif", labels.astype(np.uint16), imagej=True, **kwargs)

    def close(self) -> dict:
        with self._lock:
            for fh in self._handles:
                fh.close()
            summary = self.aggregate.summary()
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            if self.aggregate.streams:
                plot_session(self.aggregate, self.out_dir)
            return summary
