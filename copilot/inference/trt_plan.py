"""TensorRT plans without TensorRT: optimization profiles, which profile runs a given shape, and the plan cache key.

Everything here is plain Python so it is tested on machines without a GPU; ``trt_backend.py`` does the building and
running.

Profiles. A plan carries one optimization profile per tile edge ``T`` (the card's ``tile_px`` × 1, 2, 4 by default):
``min = (1, 1, m, m)`` (``m`` = the card's ``multiple_of``, so any small frame fits) and ``opt = max = (B, 1, T, T)``
with the batch ``B`` that the backend really sends there: a working-grid image that fits a profile runs whole, one
per call, on the smallest such profile (so B = 1), and a larger one runs as ``T``-tiles of the largest profile,
``tile_batch`` per call (B = ``tile_batch`` for that profile only). Every (mode, profile) pair that can occur is a
*shape class* (:func:`shape_classes`); verification runs one frame through each.

Cache. A plan is valid only for the exact ONNX bytes, TensorRT version, GPU model and compute capability, driver,
precision, profiles and build recipe (:class:`BuildRecipe`: float16 conversion version, TF32, workspace) it was built
with; all of them go into the key, and the key into the file name, so a driver or TensorRT upgrade, another GPU, a
retrained model or a changed recipe builds a new plan instead of loading a wrong one::

    <state_dir>/engines/<model>/<onnx sha256[:12]>/trt<version>-<gpu>-sm<cc>-<precision>-<key[:16]>.plan
                                                                                          ….json (key + verification)
    <state_dir>/engines/timing-trt<version>-<gpu>-sm<cc>.cache   (one timing cache per GPU and TensorRT version)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
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
                     tile_batch: int = 1) -> tuple[Profile, ...]:
    """One profile per tile edge ``tile_px * s``, tuned for the batch each one is sent: 1 (whole frames) for all but
    the largest, ``tile_batch`` tiles per call for the largest (the tiled path).

    >>> [(p.tile_px, p.max) for p in default_profiles(512, 8)]
    [(512, (1, 1, 512, 512)), (1024, (1, 1, 1024, 1024)), (2048, (1, 1, 2048, 2048))]
    >>> default_profiles(512, 8, scales=(1,), tile_batch=4)[0].opt
    (4, 1, 512, 512)
    """
    if tile_px % multiple_of:
        raise ValueError(f"tile_px {tile_px} is not a multiple of {multiple_of}")
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be at least 1, got {tile_batch}")
    edges = [tile_px * s for s in sorted(set(scales))]
    out = []
    for t in edges:
        b = tile_batch if t == edges[-1] else 1
        out.append(Profile(t, (1, 1, multiple_of, multiple_of), (b, 1, t, t), (b, 1, t, t)))
    return tuple(out)


def choose_profile(profiles: tuple[Profile, ...] | list[Profile], n: int, h: int, w: int) -> int | None:
    """Index of the profile that runs an (n, 1, h, w) input: the smallest one that fits, or None.

    >>> ps = default_profiles(512, 8, tile_batch=2)
    >>> choose_profile(ps, 1, 512, 512), choose_profile(ps, 2, 512, 512), choose_profile(ps, 1, 800, 600)
    (0, 2, 1)
    >>> choose_profile(ps, 3, 2048, 2048) is None
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


def shape_classes(profiles: tuple[Profile, ...] | list[Profile], multiple_of: int) -> dict[tuple[str, int], int]:
    """Every way :func:`plan_run` can run an image, with a square working-grid edge that lands there: whole on each
    profile (an edge just under the profile's, so padding is exercised too) and tiled on the largest (an edge that
    needs two tiles per side).

    >>> shape_classes(default_profiles(512, 8), 8)
    {('whole', 0): 509, ('whole', 1): 1021, ('whole', 2): 2045, ('tiled', 2): 2304}
    """
    out: dict[tuple[str, int], int] = {}
    for p in sorted(profiles, key=lambda p: p.tile_px):
        edge = p.tile_px - 3 if p.tile_px - 3 > 0 else p.tile_px
        plan = plan_run(profiles, edge, edge, multiple_of)
        out.setdefault((plan.mode, plan.profile), edge)
    big = max(p.tile_px for p in profiles)
    edge = big + big // 8
    plan = plan_run(profiles, edge, edge, multiple_of)
    out.setdefault((plan.mode, plan.profile), edge)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


FP16_CONVERSION_VERSION = 2  # bump whenever trt_backend.fp16_onnx changes what it writes


@dataclass(frozen=True)
class BuildRecipe:
    """How a plan is built from the ONNX file, beyond precision and profiles: part of the key, so a change rebuilds.

    ``fp16_conversion``: version of the float16 graph rewrite (0 for fp32); ``tf32``: whether TensorRT may use TF32
    for float32 layers (off for ``fp32``: true FP32); ``workspace_bytes``: the builder's workspace limit.
    """

    fp16_conversion: int
    tf32: bool
    workspace_bytes: int
    strongly_typed: bool = True

    @classmethod
    def for_precision(cls, precision: str, workspace_bytes: int = 2 << 30) -> "BuildRecipe":
        fp16 = precision == "fp16"
        return cls(FP16_CONVERSION_VERSION if fp16 else 0, False, workspace_bytes)


@dataclass(frozen=True)
class PlanKey:
    """Everything a serialized TensorRT plan depends on: model bytes, TensorRT, GPU and driver, precision, profiles
    and the build recipe."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    precision: str
    profiles: tuple[Profile, ...] = field(default_factory=tuple)
    driver_version: str = "unknown"
    recipe: BuildRecipe | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profiles"] = [asdict(p) for p in self.profiles]
        d["recipe"] = asdict(self.recipe or BuildRecipe.for_precision(self.precision))
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


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a uniquely named temporary file in the same folder, then rename it into
    place: a reader sees the old file or the new one, never a mix, and two writers (the daemon and ``copilot engines
    build``) never share a temporary file. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(path: Path, record: dict) -> None:
    atomic_write(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def list_plans(state_dir: Path) -> list[tuple[Path, dict | None]]:
    """Every cached plan under ``state_dir/engines`` with its record (key + verification), newest first."""
    root = Path(state_dir) / "engines"
    plans = sorted(root.glob("*/*/*.plan"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return [(p, read_record(p.with_suffix(".json"))) for p in plans]
