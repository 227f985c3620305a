"""An adapted network → a new model version: model.onnx, card.json with lineage, the parent's reliability
regressor, an embedding reference of what it learnt from."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from copilot.inference.card import Lineage, ModelCard, save_card, sha256_of


def adapted_version(parent_version: str, method: str, when: datetime) -> str:
    """``0.2.0+selftrain.20261129t2030`` (a PEP 440 local version: sorts after its parent, names the method)."""
    return f"{parent_version.split('+')[0]}+{method}.{when:%Y%m%dt%H%M%S}"


def write_engine(net, parent: ModelCard, parent_dir: Path, out_dir: Path, *, method: str, frames: int,
                 frames_source: str, inputs, generic, info: dict, command: str,
                 when: datetime | None = None) -> ModelCard:
    """Export ``net`` into ``out_dir`` (created; an existing model there is replaced) and write its card.

    The card's embedding reference is the adapted network's embeddings of what it learnt from (``inputs``) and of
    ``generic`` frames of the parent's own domain: both are its training distribution now."""
    from copilot.train.export import export_onnx, ort_session
    from copilot.train.recipe import finite_metrics

    when = when or datetime.now(timezone.utc)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(net, out_dir / "model.onnx")
    sess = ort_session(onnx_path, threads=2)
    m = parent.tiling.multiple_of
    emb = np.stack([_embedding(sess, np.asarray(x).reshape(np.shape(x)[-2:]), m) for x in [*inputs, *generic]])
    rng = np.random.default_rng(0)
    samples = emb[rng.choice(len(emb), size=min(200, len(emb)), replace=False)]
    if parent.reliability_regressor:
        src = parent_dir / parent.reliability_regressor
        for f in (src, src.with_suffix(".json")):
            shutil.copy2(f, out_dir / f.name)
    lineage = Lineage(parent=f"{parent.name} {parent.version} (sha256 {parent.model_sha256[:12]})",
                      method=method, parent_version=parent.version, frames=frames, frames_source=frames_source,
                      adapted_at=when.isoformat(timespec="seconds"))
    card = parent.model_copy(update={
        "version": adapted_version(parent.version, method, when),
        "lineage": lineage,
        "description": f"{parent.name} {parent.version} adapted without labels by {method} to {frames} frames of "
                       f"{frames_source} (copilot.adapt). " + parent.description,
        "embedding_reference": parent.embedding_reference.model_copy(update={
            "mean": emb.mean(0).tolist(), "std": emb.std(0).tolist(), "samples": samples.tolist()})
        if parent.embedding_reference is not None else None,
        "metrics": finite_metrics({"adapt": {k: float(v) for k, v in info.items()}}),
        "model_sha256": sha256_of(onnx_path),
        "training_command": command,
    })
    save_card(card, out_dir)
    return card


def _embedding(sess, img: np.ndarray, multiple: int) -> np.ndarray:
    from copilot.inference.tiling import pad_to_multiple

    x = pad_to_multiple(img, multiple)[0][None, None].astype(np.float32)
    return sess.run(None, {"image": x})[1][0]


def write_decision(out_dir: Path, decision: dict) -> Path:
    """``adaptation.json`` beside the model: the checks, whether it was promoted, and why (not)."""
    path = Path(out_dir) / "adaptation.json"
    path.write_text(json.dumps(decision, indent=2, default=float) + "\n")
    return path


def generic_inputs(card, n: int = 12, patch_px: int = 160, seed: int = 7) -> np.ndarray:
    """(n, 1, P, P) simulator patches from the parent's own training range (no augmentation)."""
    from copilot.train.data import make_dataset, make_phase_dataset

    kw = dict(patch_px=patch_px, working_nm_per_px=card.working_nm_per_px,
              nm_per_px_range=tuple(card.trained_nm_per_px_range), norm=card.normalization)
    if card.task == "particles":
        return make_dataset(n, seed, modality="any", **kw)[0]
    return make_phase_dataset(n, seed, n_classes=len(card.class_names), **kw)[0]
