"""Verification: a new backend must segment like the reference (ONNX Runtime on the CPU) before it is used.

Validation frames are made deterministically from the card alone, so every machine checks the same pixels:

* with the simulator (``copilot.sim``, always shipped): ``n_tiles`` HAADF-STEM frames of exactly ``tile_px`` ×
  ``tile_px`` at the card's working nm/px (each is one network tile, no resampling), drawn by
  ``random_params`` from a fixed seed, plus ``n_large`` frames of 2.5 × ``tile_px`` at the same scale, which run
  through the whole-frame / tiled paths and the larger optimization profiles;
* without it: bright discs of 3–20 working pixels on a smooth background with Poisson-like noise, same sizes and seed.

A backend that knows its own shape classes (TensorRT: whole frames on each optimization profile, and the tiled path)
says so with ``verification_sizes()``; the frames then include one of each size, so every profile and the tiled path
are checked, not just the first.

Both backends segment the same frames through their full ``segment`` path. Agreement is the mean over classes of the
intersection-over-union of the arg-max masks, pooled over all frames (a class absent from both masks is skipped),
*and* the pooled embedding (which feeds the domain-shift score) within ``embedding_tolerance`` training standard
deviations of the reference in every dimension. Failing either, the backend is refused with :class:`BackendRefused`;
the caller falls back. Only a failed comparison refuses: an error while loading or running (a transient CUDA
out-of-memory, say) is retried and then reported as an error, and never recorded as a refusal.
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
EMBEDDING_TOLERANCE = 0.1  # max |Δ embedding| in units of the training embeddings' SD (shift scores are RMS z-scores)


class BackendRefused(RuntimeError):
    """A backend whose masks do not agree with the reference; ``verification`` says by how much."""

    def __init__(self, message: str, verification: "Verification | None" = None):
        super().__init__(message)
        self.verification = verification


@dataclass
class Verification:
    backend: str
    reference: str
    accepted: bool
    miou: float
    threshold: float
    worst_frame_miou: float
    class_iou: dict[str, float]
    max_abs_prob_diff: float
    max_abs_embedding_diff: float
    embedding_diff: float  # max |Δ embedding| / training SD (or / max |reference| without an embedding reference)
    embedding_tolerance: float
    n_frames: int
    frame_shapes: list[tuple[int, int]]
    seconds: float
    frames_from: str
    message: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


def _sim_frames(card: ModelCard, sizes: list[int], seed: int) -> list[Frame]:
    from copilot.sim import random_params, simulate_frame

    rng = np.random.default_rng(seed)
    nm = card.working_nm_per_px
    frames = []
    for i, size in enumerate(sizes):
        params = random_params(rng, size_px=size, nm_per_px_range=(nm, nm))
        sim = simulate_frame(params, rng)
        frames.append(Frame(sim.image, nm_per_px=nm, stream="verify", frame_id=f"verify-{i:02d}",
                            origin=f"copilot.sim seed={seed} #{i}"))
    return frames


def _disc_frames(card: ModelCard, sizes: list[int], seed: int) -> list[Frame]:
    rng = np.random.default_rng(seed)
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
                      use_sim: bool = True, sizes: list[int] | None = None) -> tuple[list[Frame], str]:
    """Deterministic validation frames for ``card`` and where they came from (``copilot.sim`` or ``discs``).

    Square edges in working-grid pixels: ``sizes`` when given, else ``n_tiles`` × ``tile_px`` and ``n_large`` ×
    2.5 ``tile_px``."""
    t = card.tiling.tile_px
    sizes = list(sizes) if sizes is not None else [t] * n_tiles + [int(2.5 * t)] * n_large
    if use_sim:
        try:
            return _sim_frames(card, sizes, seed), "copilot.sim"
        except ImportError as exc:  # a trimmed install without the simulator
            log.info("simulator unavailable (%s); validating on synthetic discs", exc)
    return _disc_frames(card, sizes, seed), "discs"


def shape_class_sizes(candidate, card: ModelCard) -> list[int]:
    """Frame edges (working-grid pixels) that take every path through ``candidate``: its own
    ``verification_sizes()`` when it has one (TensorRT: each profile whole, and tiled), else a frame run whole
    (2.5 tiles, when that fits ``max_whole_px``) and one run as tiles (just over ``max_whole_px``)."""
    sizes_of = getattr(candidate, "verification_sizes", None)
    if sizes_of is not None:
        return list(sizes_of())
    t = card.tiling
    whole = int(2.5 * t.tile_px)
    max_whole = getattr(candidate, "max_whole_px", None)
    if max_whole is None:
        return [whole]
    return ([whole] if whole <= max_whole else []) + [max_whole + 2 * t.overlap_px + t.multiple_of]


def frames_for(candidate, card: ModelCard, n_tiles: int = 8) -> tuple[list[Frame], str]:
    """Validation frames for ``candidate``: ``n_tiles`` one-tile frames plus one per shape class
    (:func:`shape_class_sizes`)."""
    extra = [s for s in shape_class_sizes(candidate, card) if s != card.tiling.tile_px]
    return validation_frames(card, sizes=[card.tiling.tile_px] * n_tiles + extra)


def embedding_difference(ref: np.ndarray, cand: np.ndarray, card: ModelCard) -> float:
    """max |cand − ref| over dimensions, in units of the training embeddings' SD (the scale of the shift score);
    relative to max |ref| when the card has no embedding reference.

    >>> from types import SimpleNamespace as NS
    >>> card = NS(embedding_reference=NS(std=[0.5, 2.0]))
    >>> embedding_difference(np.array([1.0, 1.0]), np.array([1.1, 0.0]), card)
    0.5
    """
    ref, cand = np.asarray(ref, np.float64).reshape(-1), np.asarray(cand, np.float64).reshape(-1)
    if ref.shape != cand.shape:
        return float("inf")
    er = getattr(card, "embedding_reference", None)
    if er is not None and len(er.std) == ref.size:
        scale = np.maximum(np.asarray(er.std, np.float64), 1e-6)
    else:
        scale = max(float(np.abs(ref).max(initial=0.0)), 1e-6)
    return float((np.abs(cand - ref) / scale).max(initial=0.0))


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


def run_path(backend, h: int, w: int) -> tuple[str, int, int]:
    """How ``backend`` runs an h × w working-grid image: ``("whole", 0, 1)`` or ``("tiled", tile_px, batch)``;
    ``backend.run_path`` when it has one (TensorRT's profiles), else :class:`NetworkBackend`'s rule."""
    own = getattr(backend, "run_path", None)
    if own is not None:
        return own(h, w)
    if max(h, w) <= backend.max_whole_px:
        return "whole", 0, 1
    from copilot.inference.network import balanced_tile_px

    t = backend.card.tiling
    return "tiled", backend.tile_px or balanced_tile_px(h, w, backend.max_whole_px, t.overlap_px, t.multiple_of), \
        backend.tile_batch


def reference_like(reference, candidate, frame: Frame):
    """The reference's segmentation of ``frame`` along the candidate's path (whole, or the same tiles), so the two
    differ only by arithmetic: tiles see less context than a whole frame, which moves the pooled embedding."""
    if not (hasattr(reference, "prepare") and hasattr(candidate, "card")):
        return reference.segment(frame)
    from copilot.inference.segmentation import Segmentation

    img, scale = reference.prepare(frame)
    mode, tile, batch = run_path(candidate, *img.shape)
    probs, emb = reference.run_network(img) if mode == "whole" else reference.run_tiled(img, tile, batch)
    card = reference.card
    return Segmentation(frame=frame, probabilities=probs, embedding=emb, class_names=tuple(card.class_names),
                        model_name=card.name, model_version=card.version, backend=reference.name,
                        frame_px_per_px=scale, task=card.task)


def verify_backend(candidate, reference, frames: list[Frame] | None = None, *, threshold: float = MIOU_THRESHOLD,
                   frames_from: str | None = None, embedding_tolerance: float = EMBEDDING_TOLERANCE) -> Verification:
    """Segment ``frames`` with both backends and compare the arg-max masks and the embeddings (module docstring)."""
    card: ModelCard = reference.card
    if frames is None:
        frames, frames_from = frames_for(candidate, card)
    n = len(card.class_names)
    total = np.zeros((n, n), np.int64)
    worst, dprob, demb, zemb, shapes = 1.0, 0.0, 0.0, 0.0, []
    t0 = time.perf_counter()
    for frame in frames:
        a = reference_like(reference, candidate, frame)
        b = candidate.segment(frame)
        if a.probabilities.shape != b.probabilities.shape:
            raise BackendRefused(f"{candidate.name}: probabilities of shape {b.probabilities.shape} for "
                                 f"{frame.frame_id}, reference {a.probabilities.shape}")
        cm = confusion(a.labels, b.labels, n)
        total += cm
        fi = iou_from_confusion(cm)
        worst = min(worst, float(np.nanmean(fi)) if np.isfinite(fi).any() else 1.0)
        dprob = max(dprob, float(np.abs(a.probabilities - b.probabilities).max()))
        demb = max(demb, float(np.abs(np.asarray(a.embedding) - np.asarray(b.embedding)).max()))
        zemb = max(zemb, embedding_difference(a.embedding, b.embedding, card))
        shapes.append(tuple(int(s) for s in a.probabilities.shape[1:]))
    iou = iou_from_confusion(total)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else 1.0
    emb_ok = bool(zemb <= embedding_tolerance)
    accepted = bool(miou >= threshold) and emb_ok
    verdict = "accepted" if accepted else "REFUSED"
    msg = (f"{candidate.name} {verdict}: masks agree with {reference.name} at mIoU {miou:.4f} "
           f"(threshold {threshold}, worst frame {worst:.4f}, max |Δp| {dprob:.3g}), embedding within "
           f"{zemb:.3g} SD (tolerance {embedding_tolerance}{'' if emb_ok else ': EXCEEDED'}) on {len(frames)} "
           f"validation frames from {frames_from or 'the caller'}")
    return Verification(
        backend=candidate.name, reference=reference.name, accepted=accepted, miou=miou, threshold=threshold,
        worst_frame_miou=worst, class_iou={c: (None if np.isnan(v) else float(v)) for c, v in zip(card.class_names, iou)},
        max_abs_prob_diff=dprob, max_abs_embedding_diff=demb, embedding_diff=zemb,
        embedding_tolerance=embedding_tolerance, n_frames=len(frames), frame_shapes=shapes,
        seconds=time.perf_counter() - t0, frames_from=frames_from or "caller", message=msg,
    )


def require_agreement(candidate, reference, frames: list[Frame] | None = None, *,
                      threshold: float = MIOU_THRESHOLD) -> Verification:
    """:func:`verify_backend`, raising :class:`BackendRefused` when the backend disagrees."""
    v = verify_backend(candidate, reference, frames, threshold=threshold)
    if not v.accepted:
        raise BackendRefused(v.message + "; falling back", v)
    log.info(v.message)
    return v


def load_verified_build(*, artifact, record_path, key: dict, build, load, reference, rebuild: bool = False,
                        frames: list[Frame] | None = None, recheck_frames: list[Frame] | None = None,
                        threshold: float = MIOU_THRESHOLD, attempts: int = 3, retry_delay_s: float = 2.0):
    """The cache + verification rule for built artifacts (TensorRT plans), independent of TensorRT.

    The record (``record_path``, JSON) holds the ``key``, the build time and the verification (``None`` until one
    completes). For the same key and an existing ``artifact``:

    * accepted → loaded and re-checked on ``recheck_frames`` (a few frames; a plan that no longer agrees is refused
      and recorded so);
    * refused → refused again at once (no minutes-long rebuild on every start); ``rebuild=True`` (``copilot engines
      build --force``) builds it anew;
    * built but never verified (loading or verifying failed last time) → loaded and verified, *not* rebuilt.

    Otherwise ``build()`` writes the artifact and the record is written at once. Loading and verifying are tried
    ``attempts`` times: an exception there (a CUDA out-of-memory) is retried and finally raised as is — it is never
    recorded as a refusal. Only a comparison that fails refuses (:class:`BackendRefused`, recorded).

    Returns ``(backend, verification)``; ``verification`` is the re-check for a cached artifact (``None`` when no
    ``recheck_frames``).
    """
    from copilot.inference.trt_plan import read_record, write_record

    key = json.loads(json.dumps(key, sort_keys=True))  # tuples → lists, as the record holds them
    record = read_record(record_path)
    same = artifact.exists() and record is not None and record.get("key") == key and not rebuild
    v = (record or {}).get("verification") if same else None
    if v and not v.get("accepted"):
        raise BackendRefused(f"{artifact} was refused when it was built: {v.get('message')}; "
                             "rebuild with `copilot engines build --force`")
    if v:  # accepted before: load and re-check
        log.info("using verified %s (mIoU %.4f)", artifact, v.get("miou", float("nan")))
        checked = recheck_frames is not None
        check_frames = recheck_frames
    else:
        if not same:
            t0 = time.perf_counter()
            build()
            record = {"key": key, "build_s": time.perf_counter() - t0, "verification": None}
            write_record(record_path, record)
        checked, check_frames = True, frames
    last: Exception | None = None
    for attempt in range(1, max(1, attempts) + 1):
        backend = None
        try:
            backend = load(artifact)
            if not checked:
                return backend, None
            result = verify_backend(backend, reference(), check_frames, threshold=threshold)
        except BackendRefused as exc:  # a comparison that could not even be made (wrong output shape)
            _close(backend)
            write_record(record_path, {**record, "verification": {"accepted": False, "message": str(exc)}})
            raise
        except Exception as exc:  # noqa: BLE001 — load/run errors are retried, never recorded as refusals
            _close(backend)
            last = exc
            log.warning("%s: attempt %d/%d failed: %s: %s", artifact, attempt, attempts, type(exc).__name__, exc)
            write_record(record_path, {**record, "last_error": f"{type(exc).__name__}: {exc}"})
            if attempt < attempts:
                time.sleep(retry_delay_s * attempt)
            continue
        if v and result.accepted:
            log.info("re-check of cached %s: %s", artifact, result.message)
            return backend, result
        write_record(record_path, {**{k: x for k, x in record.items() if k != "last_error"},
                                   "verification": result.to_dict()})
        if not result.accepted:
            _close(backend)
            raise BackendRefused(result.message + "; falling back", result)
        log.info(result.message)
        return backend, result
    raise RuntimeError(f"{artifact}: loading or verifying failed {attempts} times; last error: "
                       f"{type(last).__name__}: {last}") from last


def _close(backend) -> None:
    if backend is not None:
        try:
            backend.close()
        except Exception as exc:  # noqa: BLE001 — closing a broken backend must not hide why it broke
            log.warning("closing %s failed: %s", getattr(backend, "name", backend), exc)
