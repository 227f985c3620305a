"""Verdict ``ok | warn | fail`` with reasons a person understands, and the predicted F1 behind it.

Inputs: the model's own output (features.py), the pixels (quality.py) and the embedding (shift.py). A regressor
shipped beside the model (ONNX, run by ONNX Runtime — no pickle) predicts the frame's object F1, precision and
recall from them; its calibration file says what normal quality and shift looked like in training, so reasons can
be concrete ("out of focus", "dose too low", "unlike the training data").

A frame's own reliability (``Assessor.frame``) needs no state, so the pipeline computes it on any worker; the
rolling shift window (``Assessor.window``, an Accumulator) and the verdict follow in frame order per stream.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from copilot.analysis.measurements import FrameMeasurements
from copilot.inference.scale import outside_trained_scale
from copilot.inference.card import ModelCard
from copilot.inference.preprocess import enlarged
from copilot.reliability.calibration import ReliabilityCalibration
from copilot.reliability.defect_features import defect_features
from copilot.reliability.features import output_features
from copilot.reliability.quality import image_quality, native_crop
from copilot.reliability.shift import ShiftReference, ShiftWindow
from copilot.reliability.types import FrameReliability, Verdict
from copilot.reliability.settings import VerdictThresholds
from copilot.reliability.task_checks import task_reasons

LEVELS = ("ok", "warn", "fail")


class Assessor:
    """Reliability and verdict per frame; ``window`` keeps the rolling shift window per stream."""

    def __init__(self, card: ModelCard | None = None, engine_dir: Path | None = None,
                 thresholds: VerdictThresholds | None = None):
        self.thresholds = thresholds or VerdictThresholds()
        self.card = card
        self.calibration: ReliabilityCalibration | None = None
        self._session = None
        if card is not None and engine_dir is not None and card.reliability_regressor:
            onnx_path = Path(engine_dir) / card.reliability_regressor
            self.calibration = ReliabilityCalibration.load(onnx_path.with_suffix(".json"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        ref = card.embedding_reference if card is not None else None
        self.reference = ShiftReference(ref) if ref is not None else None
        self.window = ShiftWindow(self.reference, self.thresholds.shift_window)

    def predict(self, features: dict[str, float]) -> dict[str, float]:
        """Predicted targets: scores (f1, precision, recall, per class) clipped to [0, 1], errors (``*_error``,
        e.g. the grains' ``g_abs_error``) to ≥ 0; empty without a regressor."""
        if self._session is None:
            return {}
        x = np.array([[features[name] for name in self.calibration.features]], np.float32)
        y = self._session.run(None, {self.calibration.input_name: x})[0].reshape(-1)
        return {t: float(max(v, 0.0) if t.endswith("_error") else np.clip(v, 0.0, 1.0))
                for t, v in zip(self.calibration.targets, y)}

    def frame(self, fm: FrameMeasurements) -> FrameReliability:
        """The frame's own reliability (no per-stream state: safe on any worker, in any order)."""
        seg = fm.segmentation
        features = output_features(fm)
        features.update(defect_features(fm))
        own_pixels = self.card is not None and seg.network_input is not None and enlarged(seg.frame_px_per_px)
        quality = image_quality(seg.frame, native_crop(seg.frame, self.card.normalization) if own_pixels
                                else seg.network_input)
        distance = self.reference.distance(seg.embedding) if self.reference is not None else None
        features.update(quality)
        features["shift_distance"] = distance if distance is not None else 0.0
        predicted = self.predict(features)
        return FrameReliability(
            predicted_f1=predicted.get("f1"),
            predicted_precision=predicted.get("precision"),
            predicted_recall=predicted.get("recall"),
            predicted_per_class={k: v for k, v in predicted.items() if k not in ("f1", "precision", "recall")},
            image_confidence=features["image_confidence"],
            shift_score=distance,
            quality=quality,
            features=features,
            uncertainty=seg.maps.entropy,
            embedding=np.asarray(seg.embedding, np.float32).reshape(-1),
        )

    def follow(self, fm: FrameMeasurements, reliability: FrameReliability) -> tuple[FrameReliability, Verdict]:
        """Fold the frame into its stream's shift window (call in frame order) and judge it."""
        mmd = self.window.process(fm.segmentation.frame.stream, fm.segmentation.embedding)
        reliability = replace(reliability, shift_window_mmd2=mmd)
        return reliability, self.verdict(fm, reliability)

    def assess(self, fm: FrameMeasurements) -> tuple[FrameReliability, Verdict, np.ndarray]:
        """Reliability, verdict, and the per-pixel uncertainty (normalized entropy, float32 on the grid)."""
        reliability, verdict = self.follow(fm, self.frame(fm))
        return reliability, verdict, reliability.uncertainty

    def verdict(self, fm: FrameMeasurements, r: FrameReliability) -> Verdict:
        t = self.thresholds
        found: list[tuple[str, str]] = []
        q = r.quality
        if q.get("dynamic_range", 1.0) < t.blank_dynamic_range:
            found.append(("fail", "blank frame: no contrast to measure"))
        elif q.get("snr", np.inf) < t.fail_snr:
            found.append(("fail", f"no structure above the noise (signal-to-noise {q['snr']:.1f})"))
        if r.predicted_f1 is not None:
            if r.predicted_f1 < t.fail_f1:
                found.append(("fail", f"predicted F1 {r.predicted_f1:.2f}: measurements unreliable"))
            elif r.predicted_f1 < t.warn_f1:
                found.append(("warn", f"predicted F1 {r.predicted_f1:.2f}: measurements less reliable"))
        cal = self.calibration
        if r.shift_score is not None and cal is not None:
            ratio = r.shift_score / cal.shift_distance_p99
            if ratio > t.shift_fail_factor:
                found.append(("fail", f"unlike the training data (shift {ratio:.1f}× the training range)"))
            elif ratio > t.shift_warn_factor:
                found.append(("warn", f"somewhat unlike the training data (shift {ratio:.1f}× the training range)"))
            if r.shift_window_mmd2 is not None and cal.shift_mmd2_p99 and r.shift_window_mmd2 > cal.shift_mmd2_p99:
                found.append(("warn", "recent frames are drifting away from the training data"))
        if cal is not None:
            # beyond the training range's 1 %/99 % tails always; beyond 5 %/95 % when it explains a lower predicted F1
            # (a 1 % tail estimated from a few dozen in-domain frames is too unsteady to be the only limit)
            ref = cal.quality_reference
            unsure = r.predicted_f1 is not None and r.predicted_f1 < t.explain_f1
            blur_limit = ref["edge_blur_px"].p95 if unsure else ref["edge_blur_px"].p99
            snr_limit = ref["snr"].p05 if unsure else ref["snr"].p01
            if q.get("edge_blur_px", 0) > blur_limit:
                found.append(("warn", f"out of focus (edges blurred {q['edge_blur_px'] / ref['edge_blur_px'].mean:.1f}× "
                                      "more than in training)"))
            if q.get("snr", np.inf) < snr_limit:
                found.append(("warn", f"dose too low (signal-to-noise {q['snr']:.1f}; training mostly ≥ {snr_limit:.1f})"))
        if q.get("saturated_fraction", 0) > t.saturated_fraction:
            found.append(("warn", f"detector saturated on {q['saturated_fraction']:.1%} of the frame"))
        conf = r.image_confidence or 0.0
        if conf < t.fail_image_confidence:
            found.append(("fail", f"model unsure of this frame (confidence {conf:.2f})"))
        elif conf < t.warn_image_confidence:
            found.append(("warn", f"model less sure than usual (confidence {conf:.2f})"))
        p = fm.summary.particles
        if p is not None and p.count_sized < t.min_objects:
            found.append(("warn", f"too few objects to measure ({p.count_sized} sized)"))
        found.extend(task_reasons(fm, t, r.predicted_per_class))
        frame = fm.segmentation.frame
        if not frame.calibrated:
            found.append(("warn", "no calibration in the file: sizes are in pixels"))
        elif self.card is not None and (why := outside_trained_scale(fm.segmentation, self.card)):
            found.append(("warn", why))
        level = max((lvl for lvl, _ in found), key=LEVELS.index, default="ok")
        order = sorted(found, key=lambda f: -LEVELS.index(f[0]))
        return Verdict(level=level, reasons=tuple(reason for _, reason in order))
