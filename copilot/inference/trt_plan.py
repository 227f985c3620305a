"""TensorRT plans without TensorRT: optimization profiles, which profile runs a given shape, and the plan cache key.

Everything here is plain Python so it is tested on machines without a GPU; ``trt_engine.py`` does the building and
running.

Profiles. A plan carries one optimization profile per tile edge ``T`` (the card's ``tile_px`` × 1, 2, 4 by default):
``min = (1, 1, m, m)`` (``m`` = the card's ``multiple_of``, so any small frame fits), ``opt = max = (B_T, 1, T, T)``
with ``B_T`` tiles per call keeping the pixels per call constant (8 × 512², 2 × 1024², 1 × 2048²). A working-grid
image that fits a profile runs whole on the smallest such profile (its kernels were tuned nearest to that size);
a larger one runs as ``T``-tiles of the largest profile, ``B_T`` per call.

Cache. A plan is valid only for the exact ONNX bytes, TensorRT version, GPU model and compute capability, precision
and profiles it was built with; all of them go into the key, and the key into the file name, so a driver or
TensorRT upgrade, another GPU or a retrained model builds a new plan instead of loading a wrong one::

    <state_dir>/engines/<model>/<onnx sha256[:12]>/trt<version>-<gpu>-sm<cc>-<precision>-<key[:16]>.plan
                                                                                          ….json (key + verification)
    <state_dir>/engines/timing-trt<version>-<gpu>-sm<cc>.cache   (one timing cache per GPU and TensorRT version)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Profile:
    """One optimization profile: NCHW shapes for the network input."""

    tile_px: int
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def fits(self, n: int, h: int, w: int) -> bool:
        return (self.min[0] <= n <= self.max[0] and self.min[2] <= h <= self.max[2]
                and self.min[3] <= w <= self.max[3])


def default_profiles(tile_px: int, multiple_of: int, *, scales: tuple[int, ...] = (1, 2, 4),
                     batch_px: int | None = None) -> tuple[Profile, ...]:
    """One profile per tile edge ``tile_px * s``; batch sizes keep ``batch_px`` pixels per call (default 8 tiles of
    ``tile_px``).

    >>> [(p.tile_px, p.max) for p in default_profiles(512, 8)]
    [(512, (8, 1, 512, 512)), (1024, (2, 1, 1024, 1024)), (2048, (1, 1, 2048, 2048))]
    """
    if tile_px % multiple_of:
        raise ValueError(f"tile_px {tile_px} is not a multiple of {multiple_of}")
    batch_px = batch_px or 8 * tile_px * tile_px
    out = []
    for s in sorted(set(scales)):
        t = tile_px * s
        b = max(1, batch_px // (t * t))
        out.append(Profile(t, (1, 1, multiple_of, multiple_of), (b, 1, t, t), (b, 1, t, t)))
    return tuple(out)


def choose_profile(profiles: tuple[Profile, ...] | list[Profile], n: int, h: int, w: int) -> int | None:
    """Index of the profile that runs an (n, 1, h, w) input: the smallest one that fits, or None.

    >>> ps = default_profiles(512, 8)
    >>> choose_profile(ps, 1, 512, 512), choose_profile(ps, 4, 512, 512), choose_profile(ps, 1, 800, 600)
    (0, 0, 1)
    >>> choose_profile(ps, 2, 2048, 2048) is None
    True
    """
    fitting = [i for i, p in enumerate(profiles) if p.fits(n, h, w)]
    if not fitting:
        return None
    return min(fitting, key=lambda i: (profiles[i].max[2] * profiles[i].max[3], profiles[i].max[0]))


@dataclass(frozen=True)
class RunPlan:
    """How one working-grid image runs: whole on ``profile``, or as ``tile_px`` tiles, ``batch`` per call."""

    mode: str  # "whole" | "tiled"
    profile: int
    tile_px: int
    batch: int


def plan_run(profiles: tuple[Profile, ...] | list[Profile], h: int, w: int, multiple_of: int) -> RunPlan:
    """Whole when the padded image fits a profile, else tiles of the largest profile.

    >>> ps = default_profiles(512, 8)
    >>> plan_run(ps, 819, 819, 8)
    RunPlan(mode='whole', profile=1, tile_px=1024, batch=1)
    >>> plan_run(ps, 3000, 1500, 8)
    RunPlan(mode='tiled', profile=2, tile_px=2048, batch=1)
    """
    hp, wp = math.ceil(h / multiple_of) * multiple_of, math.ceil(w / multiple_of) * multiple_of
    i = choose_profile(profiles, 1, hp, wp)
    if i is not None:
        return RunPlan("whole", i, profiles[i].tile_px, 1)
    big = max(range(len(profiles)), key=lambda k: profiles[k].tile_px)
    return RunPlan("tiled", big, profiles[big].tile_px, profiles[big].max_batch)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


@dataclass(frozen=True)
class PlanKey:
    """Everything a serialized TensorRT plan depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    precision: str
    profiles: tuple[Profile, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profiles"] = [asdict(p) for p in self.profiles]
        return d

    def digest(self) -> str:
        """sha256 over the canonical JSON of every field."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def device_tag(self) -> str:
        return f"trt{_slug(self.tensorrt_version)}-{_slug(self.gpu_name)}-sm{self.compute_capability.replace('.', '')}"

    def plan_path(self, state_dir: Path, model_name: str) -> Path:
        folder = Path(state_dir) / "engines" / _slug(model_name) / self.onnx_sha256[:12]
        return folder / f"{self.device_tag}-{self.precision}-{self.digest()[:16]}.plan"

    def record_path(self, state_dir: Path, model_name: str) -> Path:
        return self.plan_path(state_dir, model_name).with_suffix(".json")

    def timing_cache_path(self, state_dir: Path) -> Path:
        return Path(state_dir) / "engines" / f"timing-{self.device_tag}.cache"


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def list_plans(state_dir: Path) -> list[tuple[Path, dict | None]]:
    """Every cached plan under ``state_dir/engines`` with its record (key + verification), newest first."""
    root = Path(state_dir) / "engines"
    plans = sorted(root.glob("*/*/*.plan"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return [(p, read_record(p.with_suffix(".json"))) for p in plans]
