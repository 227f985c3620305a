"""A Triton model repository for the shipped models (``copilot engines export-triton REPO``).

    REPO/<name>/config.pbtxt        platform onnxruntime_onnx, dynamic batching, CPU or GPU instance group
    REPO/<name>/card.json           the model card, beside it (the co-pilot reads normalization and tiling from it)
    REPO/<name>/<version>/model.onnx
    REPO/<name>-trt/...             platform tensorrt_plan, when a verified TensorRT plan is cached for this model
    REPO/<name>/model-settings.json with ``--mlserver``: the same folder served by MLServer (adapters/mlserver_onnx)

Triton wants integer version folders: card version ``MAJOR.MINOR.PATCH`` becomes ``MAJOR*1000000 + MINOR*1000 +
PATCH`` (0.2.0 → 2000); ``triton_version`` is the one place that mapping lives, and the ``triton`` backend uses it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from copilot.inference.card import ModelCard, load_card
from copilot.inference.locate import ENGINES_DIR

DEFAULT_MAX_BATCH = 8
MLSERVER_RUNTIME = "copilot_mlserver_onnx.OnnxRuntimeModel"


def triton_version(card_version: str) -> str:
    """``0.2.0`` → ``2000``: the integer version folder Triton serves a card version under.

    >>> triton_version("0.2.0"), triton_version("1.12.3")
    ('2000', '1012003')
    """
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.].*)?", card_version)
    if not m:
        raise ValueError(f"card version {card_version!r} is not MAJOR.MINOR[.PATCH]")
    major, minor, patch = (int(g or 0) for g in m.groups())
    if minor >= 1000 or patch >= 1000:
        raise ValueError(f"card version {card_version!r}: minor and patch must stay below 1000")
    return str(major * 1_000_000 + minor * 1_000 + patch)


def config_pbtxt(card: ModelCard, *, name: str, platform: str = "onnxruntime_onnx", kind: str = "KIND_CPU",
                 count: int = 1, max_batch: int = DEFAULT_MAX_BATCH, queue_delay_us: int = 2000) -> str:
    """Triton's model configuration (protobuf text) for a card's network: batched, any height and width."""
    o = card.outputs
    n_classes = len(card.class_names)
    return f"""# written by `copilot engines export-triton` from card {card.name} {card.version}
name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch}
input [
  {{ name: "{o.input}" data_type: TYPE_FP32 dims: [ 1, -1, -1 ] }}
]
output [
  {{ name: "{o.probabilities}" data_type: TYPE_FP32 dims: [ {n_classes}, -1, -1 ] }},
  {{ name: "{o.embedding}" data_type: TYPE_FP32 dims: [ {o.embedding_dim} ] }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}
instance_group [
  {{ kind: {kind} count: {count} }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
parameters {{ key: "card_version" value: {{ string_value: "{card.version}" }} }}
parameters {{ key: "card_sha256" value: {{ string_value: "{card.model_sha256}" }} }}
"""


def mlserver_settings(card: ModelCard, *, name: str, version: str, threads: int = 1, max_batch: int = DEFAULT_MAX_BATCH,
                      max_batch_time_s: float = 0.005) -> dict:
    """MLServer's model-settings.json for the same folder (its adaptive batching stands in for dynamic batching)."""
    o = card.outputs
    return {
        "name": name,
        "implementation": MLSERVER_RUNTIME,
        "inputs": [{"name": o.input, "datatype": "FP32", "shape": [-1, 1, -1, -1]}],
        "outputs": [{"name": o.probabilities, "datatype": "FP32", "shape": [-1, len(card.class_names), -1, -1]},
                    {"name": o.embedding, "datatype": "FP32", "shape": [-1, o.embedding_dim]}],
        "parameters": {"uri": f"./{version}/model.onnx", "version": version, "extra": {"threads": threads}},
        "max_batch_size": max_batch,
        "max_batch_time": max_batch_time_s if max_batch > 1 else 0,
    }


def _verified_plan(card: ModelCard, state_dir: Path | None) -> Path | None:
    """The newest cached TensorRT plan of this exact ONNX file that passed verification, if any."""
    if state_dir is None:
        return None
    from copilot.inference.trt_plan import list_plans

    for path, rec in list_plans(state_dir):
        key = (rec or {}).get("key", {})
        if key.get("onnx_sha256") == card.model_sha256 and ((rec or {}).get("verification") or {}).get("accepted"):
            return path
    return None


def export_model(repo: Path, model: str, *, kind: str = "KIND_CPU", count: int = 1, max_batch: int = DEFAULT_MAX_BATCH,
                 state_dir: Path | None = None, mlserver: bool = False, threads: int = 1) -> list[Path]:
    """Write one model (and its TensorRT variant, when a verified plan exists) into ``repo``; returns the folders."""
    card, folder = load_card(model)
    version = triton_version(card.version)
    written = []
    target = Path(repo) / card.name
    (target / version).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card.model_path(folder), target / version / "model.onnx")
    shutil.copyfile(folder / "card.json", target / "card.json")
    (target / "config.pbtxt").write_text(config_pbtxt(card, name=card.name, kind=kind, count=count, max_batch=max_batch))
    if mlserver:
        settings = mlserver_settings(card, name=card.name, version=version, threads=threads, max_batch=max_batch)
        (target / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    written.append(target)
    plan = _verified_plan(card, state_dir)
    if plan is not None:
        trt = Path(repo) / f"{card.name}-trt"
        (trt / version).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan, trt / version / "model.plan")
        shutil.copyfile(folder / "card.json", trt / "card.json")
        (trt / "config.pbtxt").write_text(config_pbtxt(card, name=trt.name, platform="tensorrt_plan", kind="KIND_GPU",
                                                       count=count, max_batch=max_batch))
        written.append(trt)
    return written


def shipped_models() -> list[str]:
    return sorted(d.name for d in ENGINES_DIR.iterdir() if (d / "card.json").is_file()) if ENGINES_DIR.is_dir() else []


def export_repository(repo: Path, models: list[str] | None = None, **kwargs) -> list[Path]:
    """Every named (default: every shipped) model into one Triton model repository."""
    written: list[Path] = []
    for m in models or shipped_models():
        written += export_model(repo, m, **kwargs)
    return written
