"""Write results where people open them: results.jsonl, frames.csv, particles.csv, Fiji-ready label TIFFs, and at
the end a session summary (JSON) with a PSD plot and a trend plot (PNG)."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import tifffile

from copilot.inference.preprocess import nearest_resample
from copilot.document.schema import ResultDocument
from copilot.result import Result

FRAME_COLUMNS = [
    "stream", "frame_id", "origin", "acquired_at", "nm_per_px", "length_unit", "count", "count_edge", "count_sized",
    "density_per_um2", "ecd_mean", "ecd_sd", "d10", "d50", "d90", "d50_ci_low", "d50_ci_high", "geometric_mean", "sigma_g",
    "phase_fractions", "enough", "image_confidence", "predicted_f1", "verdict", "reasons", "end_to_end_ms",
]
PARTICLE_COLUMNS = [
    "frame_id", "particle_id", "centroid_x_px", "centroid_y_px", "area_nm2", "ecd_nm", "feret_max_nm", "feret_min_nm",
    "aspect_ratio", "circularity", "solidity", "mean_intensity", "confidence", "touches_edge",
    # pixel columns (frame pixels) are always filled; the nm columns stay empty for an uncalibrated frame
    "area_px", "ecd_px", "feret_max_px", "feret_min_px",
]
STAGES = ("read", "infer", "analyze", "assess", "end_to_end")


def frame_row(d: ResultDocument) -> dict:
    p = d.measurements.particles
    row = {
        "stream": d.stream, "frame_id": d.frame_id, "origin": d.origin, "acquired_at": d.acquired_at.isoformat(),
        "nm_per_px": d.calibration.nm_per_px, "length_unit": d.measurements.length_unit,
        "image_confidence": d.reliability.image_confidence, "predicted_f1": d.reliability.predicted_f1,
        "verdict": d.verdict.level, "reasons": "; ".join(d.verdict.reasons), "end_to_end_ms": d.timings_ms.get("end_to_end"),
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


def session_summary(docs: list[ResultDocument]) -> dict:
    """One JSON-able summary per stream: frames, span, verdicts, latency, final trends, pooled PSD, sufficiency."""
    by_stream: dict[str, list[ResultDocument]] = defaultdict(list)
    for d in docs:
        by_stream[d.stream].append(d)
    out = {}
    for stream, ds in by_stream.items():
        ds.sort(key=lambda d: d.acquired_at)
        last = ds[-1]
        latency = {}
        for stage in STAGES:
            v = np.array([d.timings_ms[stage] for d in ds if stage in d.timings_ms])
            if v.size:
                latency[stage] = {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
        d50 = [d.measurements.particles.d50 for d in ds if d.measurements.particles and d.measurements.particles.d50]
        out[stream] = {
            "frames": len(ds),
            "first_acquired_at": ds[0].acquired_at.isoformat(),
            "last_acquired_at": last.acquired_at.isoformat(),
            "model": last.model.model_dump(),
            "length_unit": last.measurements.length_unit,
            "verdicts": dict(Counter(d.verdict.level for d in ds)),
            "latency_ms": latency,
            "d50_first_last": [d50[0], d50[-1]] if d50 else None,
            "series": last.series.model_dump(exclude={"alerts"}) if last.series else None,
            "alerts": [a.model_dump() | {"frame_id": d.frame_id} for d in ds if d.series for a in d.series.alerts],
        }
    return out


def plot_session(docs: list[ResultDocument], out_dir: Path) -> list[Path]:
    """psd.png (cumulative PSD with its log-normal fit, first vs last window) and trend.png (D50 or fraction vs time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    docs = sorted(docs, key=lambda d: d.acquired_at)
    particle_docs = [d for d in docs if d.series and d.series.cumulative_psd]
    if particle_docs:
        last = particle_docs[-1]
        unit = last.measurements.length_unit
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        cum = last.series.cumulative_psd
        edges = np.array(cum.edges)
        widths = np.diff(edges)
        ax.bar(edges[:-1], cum.counts, width=widths, align="edge", alpha=0.5, label=f"all {len(particle_docs)} frames")
        first = particle_docs[0].measurements.particles.psd
        ax.step(edges[:-1], first.counts, where="post", label="first frame")
        ax.step(edges[:-1], last.measurements.particles.psd.counts, where="post", label="last frame")
        ecds = [q.ecd for d in particle_docs for q in d.measurements.particles.particles if not q.touches_edge]
        logs = np.log(ecds) if len(ecds) >= 3 else np.zeros(0)
        mu, sd = (logs.mean(), logs.std(ddof=1)) if logs.size else (0.0, 0.0)
        if sd > 0:
            centres = np.sqrt(edges[:-1] * edges[1:]) if cum.scale == "log" else (edges[:-1] + edges[1:]) / 2
            pdf = np.exp(-((np.log(centres) - mu) ** 2) / (2 * sd**2)) / (centres * sd * np.sqrt(2 * np.pi))
            ax.plot(centres, pdf * widths * len(ecds), "k--",
                    label=f"log-normal: GM {np.exp(mu):.2f} {unit}, σg {np.exp(sd):.2f}")
        if cum.scale == "log":
            ax.set_xscale("log")
        ax.set_xlabel(f"equivalent circular diameter ({unit})")
        ax.set_ylabel("particles per bin")
        ax.set_title("particle size distribution (edge-cut particles excluded)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "psd.png")
        plt.close(fig)
        written.append(out_dir / "psd.png")
    if len(docs) >= 2:
        t0 = docs[0].acquired_at
        t = np.array([(d.acquired_at - t0).total_seconds() / 60 for d in docs])
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
        if docs[-1].measurements.particles is not None:
            y = np.array([d.measurements.particles.d50 if d.measurements.particles.d50 else np.nan for d in docs])
            lo = np.array([d.measurements.particles.d50_ci.low if d.measurements.particles.d50_ci else np.nan for d in docs])
            hi = np.array([d.measurements.particles.d50_ci.high if d.measurements.particles.d50_ci else np.nan for d in docs])
            label = f"D50 ({docs[-1].measurements.length_unit})"
        else:
            ph = docs[-1].measurements.phases.phases[1].name
            pick = [next(p for p in d.measurements.phases.phases if p.name == ph) for d in docs]
            y = np.array([p.area_fraction for p in pick])
            lo = np.array([p.ci.low if p.ci else np.nan for p in pick])
            hi = np.array([p.ci.high if p.ci else np.nan for p in pick])
            label = f"area fraction of {ph}"
        ax.fill_between(t, lo, hi, alpha=0.25, label="95 % interval")
        ax.plot(t, y, "o-", ms=3, label=label)
        trend = next((tr for tr in (docs[-1].series.trends if docs[-1].series else []) if tr.slope is not None), None)
        if trend is not None:
            ax.set_title(f"{trend.quantity}: {trend.slope:+.3g} {trend.unit} over the last {trend.n_frames} frames")
        ax.set_xlabel("acquisition time (min)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "trend.png")
        plt.close(fig)
        written.append(out_dir / "trend.png")
    return written


class ResultWriter:
    """A pipeline sink: appends each result to the exports in ``out_dir`` (thread-safe, flushed per frame);
    ``close()`` adds summary.json, psd.png and trend.png."""

    def __init__(self, out_dir: Path, save_masks: bool = False):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.save_masks = save_masks
        self._lock = threading.Lock()
        self._docs: list[ResultDocument] = []
        self._jsonl = open(self.out_dir / "results.jsonl", "a", encoding="utf-8")
        self._frames_fh = open(self.out_dir / "frames.csv", "w", newline="", encoding="utf-8")
        self._particles_fh = open(self.out_dir / "particles.csv", "w", newline="", encoding="utf-8")
        self._frames = csv.DictWriter(self._frames_fh, FRAME_COLUMNS)
        self._particles = csv.DictWriter(self._particles_fh, PARTICLE_COLUMNS)
        self._frames.writeheader()
        self._particles.writeheader()

    @property
    def count(self) -> int:
        return len(self._docs)

    def __call__(self, result: Result) -> None:
        d = result.doc
        with self._lock:
            self._docs.append(d)
            self._jsonl.write(d.to_json() + "\n")
            self._frames.writerow(frame_row(d))
            self._particles.writerows(particle_rows(d))
            for fh in (self._jsonl, self._frames_fh, self._particles_fh):
                fh.flush()
            if self.save_masks and result.frame_labels is not None:  # the measured outlines, frame pixels
                self._write_mask(d, result.frame_labels())
            elif self.save_masks and "labels" in result.parts:
                self._write_mask(d, np.asarray(result.parts["labels"]))

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
            for fh in (self._jsonl, self._frames_fh, self._particles_fh):
                fh.close()
            summary = session_summary(self._docs)
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            if self._docs:
                plot_session(self._docs, self.out_dir)
            return summary
