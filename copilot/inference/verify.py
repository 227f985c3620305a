"""Verification: a new engine must segment like the reference (ONNX Runtime on the CPU) before it is used.

Validation frames are made deterministically from the card alone, so every machine checks the same pixels:

* with the simulator (``copilot.sim``, always shipped): ``n_tiles`` HAADF-STEM frames of exactly ``tile_px`` ×
  ``tile_px`` at the card's working nm/px (each is one network tile, no resampling), drawn by
  ``random_params`` from a fixed seed, plus ``n_large`` frames of 2.5 × ``tile_px`` at the same scale, which run
  through the whole-frame / tiled paths and the larger optimization profiles;
* without it: bright discs of 3–20 working pixels on a smooth background with Poisson-like noise, same sizes and seed.

Both engines segment the same frames through their full ``segment`` path. Agreement is the mean over classes of the
intersection-over-union of the arg-max masks, pooled over all frames (a class absent from both masks is skipped).
Below ``threshold`` (0.99) the engine is refused with :class:`EngineRefused`; the caller falls back.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from copilot.frame import Frame
from copilot.inference.card import ModelCard

log = logging.getLogger(__name__)

VALIDATION_SEED = 20_260_707
MIOU_THRESHOLD = 0.99


class EngineRefused(RuntimeError):
    """An engine whose masks do not agree with the reference; ``verification`` says by how much."""

    def __init__(self, message: str, verification: "Verification | None" = None):
        super().__init__(message)
        self.verification = verification


@dataclass
class Verification:
    engine: str
    reference: str
    accepted: bool
    miou: float
    threshold: float
    worst_frame_miou: float
    class_iou: dict[str, float]
    max_abs_prob_diff: float
    max_abs_embedding_diff: float
    n_frames: int
    frame_shapes: list[tuple[int, int]]
    seconds: float
    frames_from: str
    message: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


def _sim_frames(card: ModelCard, n_tiles: int, n_large: int, seed: int) -> list[Frame]:
    from copilot.sim import random_params, simulate_frame

    rng = np.random.default_rng(seed)
    nm = card.working_nm_per_px
    t = card.tiling.tile_px
    sizes = [t] * n_tiles + [int(2.5 * t)] * n_large
    frames = []
    for i, size in enumerate(sizes):
        params = random_params(rng, size_px=size, nm_per_px_range=(nm, nm))
        sim = simulate_frame(params, rng)
        frames.append(Frame(sim.image, nm_per_px=nm, stream="verify", frame_id=f"verify-{i:02d}",
                            origin=f"copilot.sim seed={seed} #{i}"))
    return frames


def _disc_frames(card: ModelCard, n_tiles: int, n_large: int, seed: int) -> list[Frame]:
    rng = np.random.default_rng(seed)
    t = card.tiling.tile_px
    sizes = [t] * n_tiles + [int(2.5 * t)] * n_large
    frames = []
    for i, size in enumerate(sizes):
        yy, xx = np.mgrid[:size, :size]
        img = 1000 + 200 * np.sin(yy / (size / 3)) * np.cos(xx / (size / 5))
        for _ in range(int(rng.integers(5, 40))):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(1.5, 10)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += rng.uniform(2000, 8000)
        img = rng.poisson(np.clip(img, 0, None)).astype(np.uint16)
        frames.append(Frame(img, nm_per_px=card.working_nm_per_px, stream="verify", frame_id=f"verify-{i:02d}",
                            origin=f"discs seed={seed} #{i}"))
    return frames


def validation_frames(card: ModelCard, n_tiles: int = 8, n_large: int = 1, seed: int = VALIDATION_SEED,
                      use_sim: bool = True) -> tuple[list[Frame], str]:
    """Deterministic validation frames for ``card`` and where they came from (``copilot.sim`` or ``discs``)."""
    if use_sim:
        try:
            return _sim_frames(card, n_tiles, n_large, seed), "copilot.sim"
        except ImportError as exc:  # a trimmed install without the simulator
            log.info("simulator unavailable (%s); validating on synthetic discs", exc)
    return _disc_frames(card, n_tiles, n_large, seed), "discs"


def confusion(ref: np.ndarray, cand: np.ndarray, n_classes: int) -> np.ndarray:
    idx = ref.astype(np.int64).ravel() * n_classes + cand.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN where a class is absent from both masks."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(ref: np.ndarray, cand: np.ndarray, n_classes: int) -> float:
    """Mean IoU over the classes present in either mask.

    >>> mean_iou(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), 2)
    0.5833333333333333
    """
    iou = iou_from_confusion(confusion(ref, cand, n_classes))
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 1.0


def verify_engine(candidate, reference, frames: list[Frame] | None = None, *, threshold: float = MIOU_THRESHOLD,
                  frames_from: str | None = None) -> Verification:
    """Segment ``frames`` with both engines and compare the arg-max masks (see the module docstring)."""
    card: ModelCard = reference.card
    if frames is None:
        frames, frames_from = validation_frames(card)
    n = len(card.class_names)
    total = np.zeros((n, n), np.int64)
    worst, dprob, demb, shapes = 1.0, 0.0, 0.0, []
    t0 = time.perf_counter()
    for frame in frames:
        a = reference.segment(frame)
        b = candidate.segment(frame)
        if a.probabilities.shape != b.probabilities.shape:
            raise EngineRefused(f"{candidate.name}: probabilities of shape {b.probabilities.shape} for "
                                f"{frame.frame_id}, reference {a.probabilities.shape}")
        cm = confusion(a.labels, b.labels, n)
        total += cm
        fi = iou_from_confusion(cm)
        worst = min(worst, float(np.nanmean(fi)) if np.isfinite(fi).any() else 1.0)
        dprob = max(dprob, float(np.abs(a.probabilities - b.probabilities).max()))
        demb = max(demb, float(np.abs(np.asarray(a.embedding) - np.asarray(b.embedding)).max()))
        shapes.append(tuple(int(s) for s in a.probabilities.shape[1:]))
    iou = iou_from_confusion(total)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else 1.0
    accepted = bool(miou >= threshold)
    verdict = "accepted" if accepted else "REFUSED"
    msg = (f"{candidate.name} {verdict}: masks agree with {reference.name} at mIoU {miou:.4f} "
           f"(threshold {threshold}, worst frame {worst:.4f}, max |Δp| {dprob:.3g}) on {len(frames)} "
           f"validation frames from {frames_from or 'the caller'}")
    return Verification(
        engine=candidate.name, reference=reference.name, accepted=accepted, miou=miou, threshold=threshold,
        worst_frame_miou=worst, class_iou={c: (None if np.isnan(v) else float(v)) for c, v in zip(card.class_names, iou)},
        max_abs_prob_diff=dprob, max_abs_embedding_diff=demb, n_frames=len(frames), frame_shapes=shapes,
        seconds=time.perf_counter() - t0, frames_from=frames_from or "caller", message=msg,
    )


def require_agreement(candidate, reference, frames: list[Frame] | None = None, *,
                      threshold: float = MIOU_THRESHOLD) -> Verification:
    """:func:`verify_engine`, raising :class:`EngineRefused` when the engine disagrees."""
    v = verify_engine(candidate, reference, frames, threshold=threshold)
    if not v.accepted:
        raise EngineRefused(v.message + "; falling back", v)
    log.info(v.message)
    return v


def load_verified_build(*, artifact, record_path, key: dict, build, load, reference, rebuild: bool = False,
                        frames: list[Frame] | None = None, threshold: float = MIOU_THRESHOLD):
    """The cache + verification rule for built engines (TensorRT plans), independent of TensorRT.

    * a cached ``artifact`` whose record (``record_path``, JSON) holds an accepted verification for the same ``key``
      is loaded as is (no rebuild, no re-verification);
    * a cached artifact whose record says *refused* is refused again at once (no minutes-long rebuild on every
      start); ``rebuild=True`` (``copilot engines build --force``) builds it anew;
    * otherwise ``build()`` writes the artifact, ``load(artifact)`` loads it, and the new engine is verified against
      ``reference()``; the verification is written to the record either way, and a refused engine is closed and
      raises :class:`EngineRefused`.

    Returns ``(engine, verification)``; ``verification`` is ``None`` for a cached, already verified artifact.
    """
    from copilot.inference.trt_plan import read_record, write_record

    key = json.loads(json.dumps(key, sort_keys=True))  # tuples → lists, as the record holds them
    record = read_record(record_path)
    fresh = artifact.exists() and record is not None and record.get("key") == key and not rebuild
    if fresh and record.get("verification"):
        v = record["verification"]
        if v.get("accepted"):
            log.info("using verified %s (mIoU %.4f)", artifact, v.get("miou", float("nan")))
            return load(artifact), None
        raise EngineRefused(f"{artifact} was refused when it was built: {v.get('message')}; "
                            "rebuild with `copilot engines build --force`")
    t0 = time.perf_counter()
    build()
    build_s = time.perf_counter() - t0
    engine = load(artifact)
    try:
        v = verify_engine(engine, reference(), frames, threshold=threshold)
    except Exception as exc:
        engine.close()
        write_record(record_path, {"key": key, "build_s": build_s, "verification": {
            "accepted": False, "message": f"verification failed: {type(exc).__name__}: {exc}"}})
        raise EngineRefused(f"{artifact}: verification failed: {exc}") from exc
    write_record(record_path, {"key": key, "build_s": build_s, "verification": v.to_dict()})
    if not v.accepted:
        engine.close()
        raise EngineRefused(v.message + "; falling back", v)
    log.info(v.message)
    return engine, v
