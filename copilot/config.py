"""Settings: pydantic models loaded from configs/*.toml; a bad field fails at start with its name."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from copilot.adapt.settings import AdaptSettings
from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.eds.settings import EdsSettings
from copilot.errors import UserError
from copilot.inference.triton_settings import TritonSettings
from copilot.reliability.settings import VerdictThresholds
from copilot.readers.limits import InputLimits

log = logging.getLogger(__name__)
_warned: set[str] = set()

DEFAULT_INCLUDE = ["*.tif", "*.tiff", "*.dm3", "*.dm4", "*.emd", "*.ser", "*.bcf", "*.mrc", "*.png"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DaemonSettings(_Section):
    stream: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="stream name: topic suffix")
    state_dir: Path = Field(Path("state"), description="results database, quarantine, backend caches")
    quarantine: Literal["record", "copy"] = Field(
        "record", description="an unreadable or refused file: 'record' keeps its reason and fingerprint in the results "
        "store (the acquisition folder is read-only to the co-pilot); 'copy' also copies a regular file inside the "
        "watched tree to state_dir/quarantine (sparse-aware, at most limits.quarantine_copy_max_mb)")

    @field_validator("quarantine", mode="before")
    @classmethod
    def _no_move(cls, v):
        if v == "move":
            raise ValueError("'move' is gone: the acquisition folder is read-only to the co-pilot; use 'record' "
                             "(default) or 'copy'")
        return v

    session_gap_min: float = Field(60.0, ge=0, description="a restart within this many minutes of the last export "
                                   "continues the session's exports; after a longer pause a new session folder begins")
    keep_documents_days: float | None = Field(None, gt=0, description="drop result documents older than this from the "
                                              "store at start (replay then answers 'too old'); None keeps them all")


class SourceSettings(_Section):
    kind: Literal["directory", "socket"] = "directory"
    watch: Path | None = Field(None, description="acquisition folder (kind = directory)")
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))
    exclude: list[str] = Field(default_factory=lambda: [".*", "*.tmp", "*.part", "~*"])
    recursive: bool = False
    poll: bool = Field(False, description="poll instead of inotify: for SMB/NFS shares")
    poll_interval_s: float = Field(1.0, gt=0)
    settle_s: float = Field(0.5, ge=0, description="a file must be unchanged this long before it is read")
    existing: Literal["process", "skip"] = Field("process", description="files already in the folder at start")
    endpoint: str = Field("tcp://127.0.0.1:5557", description="ZeroMQ PULL endpoint (kind = socket)")
    max_message_mb: float = Field(512, gt=0)


class ModelSettings(_Section):
    name: str = "particles-stem"
    backend: Literal["auto", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt",
                     "torch-cuda", "torch-cpu", "triton"] = Field(
        "auto", description="auto: TensorRT > ORT-TensorRT > ORT-CUDA > torch-CUDA > ORT-CPU, whichever this machine "
        "has; triton: a shared inference server ([triton] section)")
    precision: Literal["fp16", "fp32"] = Field("fp16", description="GPU backends; every build is verified against "
                                                                   "ORT-CPU")
    threads: int = Field(2, ge=1, le=256)
    max_whole_px: int = Field(2048, ge=64, description="frames up to this size (working scale) run untiled")

    @model_validator(mode="before")
    @classmethod
    def _engine_alias(cls, data):
        """``engine``, the former name of ``backend``, is still read (deprecated, logged once): the same values; given
        both, they must agree."""
        if isinstance(data, dict) and "engine" in data:
            data = dict(data)
            engine = data.pop("engine")
            if "backend" in data and _canonical(data["backend"]) != _canonical(engine):
                raise ValueError(f"[model] engine = {engine!r} and [model] backend = {data['backend']!r} disagree: "
                                 "[model] engine is the deprecated name of [model] backend; remove it")
            data.setdefault("backend", engine)
            if "engine" not in _warned:
                _warned.add("engine")
                log.warning("[model] engine is now [model] backend: rename it in your config (engine is still read)")
        return data


class PublishSettings(_Section):
    pub_endpoint: str = "tcp://127.0.0.1:5555"
    snapshot_endpoint: str = "tcp://127.0.0.1:5556"
    send_labels: bool = True

    @field_validator("pub_endpoint", "snapshot_endpoint")
    @classmethod
    def _zmq_endpoint(cls, v: str) -> str:
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError("must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555")
        return v


class SecuritySettings(_Section):
    server_secret_key: Path | None = Field(None, description="the daemon's CURVE secret key file (`copilot keys`); "
                                           "with it every socket is CURVE-encrypted and authenticated")
    client_keys_dir: Path | None = Field(None, description="allow-list: folder of client public keys (*.key) that may "
                                         "connect")
    insecure: bool = Field(False, description="allow binding beyond loopback without keys (logged loudly; not "
                           "recommended)")


class MetricsSettings(_Section):
    listen: str = Field("127.0.0.1:9464", description="Prometheus endpoint host:port; empty: off")


class PipelineSettings(_Section):
    queue_size: int = Field(4, ge=1, description="frames waiting between two stages")
    measure_workers: int = Field(1, ge=1, le=64, description="threads measuring frames side by side (analysis + "
                                                              "reliability); results still leave in frame order")
    measure_mode: Literal["threads", "processes"] = Field(
        "threads", description="'processes': each measure worker is a process (arrays in shared memory; two "
                               "frames in flight each, the next one waiting), so analysis runs on as many cores as "
                               "workers; 'threads': in this process")


class Settings(_Section):
    daemon: DaemonSettings = DaemonSettings()
    source: SourceSettings = SourceSettings()
    model: ModelSettings = ModelSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    series: SeriesSettings = SeriesSettings()
    verdict: VerdictThresholds = VerdictThresholds()
    publish: PublishSettings = PublishSettings()
    pipeline: PipelineSettings = PipelineSettings()
    triton: TritonSettings = TritonSettings()
    security: SecuritySettings = SecuritySettings()
    metrics: MetricsSettings = MetricsSettings()
    limits: InputLimits = InputLimits()
    adapt: AdaptSettings = AdaptSettings()
    eds: EdsSettings | None = None  # EDS lines, k-factors and inclusion classes (configs/sem-inclusions-eds.toml)


class ConfigError(UserError):
    """A config that does not validate; the message names the file and every offending field."""


def load_settings(path: Path | None = None, overrides: dict | None = None) -> Settings:
    """Read a TOML config (or defaults) and apply dotted-free nested ``overrides`` on top."""
    data: dict = {}
    where = str(path)
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the config ({exc.strerror}); pass an existing TOML file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    given = {(section, k) for section, values in (overrides or {}).items() for k, v in values.items() if v is not None}
    for section, k in given:
        data.setdefault(section, {})[k] = overrides[section][k]
    if ("model", "backend") in given and "engine" in data.get("model", {}):  # the command line wins over the file
        data["model"]["engine"] = data["model"]["backend"]
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) + (" (from the command line)" if tuple(e["loc"][:2]) in given else "")
                             for e in exc.errors())
        raise ConfigError(f"{where + ': ' if path else ''}{problems} (the fields: `copilot config --schema`)") from exc


def _canonical(backend) -> str:
    from copilot.inference.names import ALIASES

    return ALIASES.get(backend, backend)


def _problem(error: dict) -> str:
    field = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown field"
    got = error.get("input")
    return f"{field}: {error['msg']}" + ("" if isinstance(got, dict) else f" (got {got!r})")


def settings_schema() -> str:
    return json.dumps(Settings.model_json_schema(), indent=2)
