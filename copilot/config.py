"""Settings: pydantic models loaded from configs/*.toml; a bad field fails at start with its name."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from copilot.analysis.settings import AnalysisSettings, SeriesSettings
from copilot.errors import CopilotError
from copilot.readers.limits import InputLimits
from copilot.reliability.score import VerdictThresholds

DEFAULT_INCLUDE = ["*.tif", "*.tiff", "*.dm3", "*.dm4", "*.emd", "*.ser", "*.bcf", "*.mrc", "*.png"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DaemonSettings(_Section):
    stream: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="stream name: topic suffix")
    state_dir: Path = Field(Path("state"), description="results database, quarantine, engine caches")
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
    engine: Literal["auto", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt",
                    "torch-cuda", "torch-cpu"] = Field("auto", description="auto: TensorRT > ORT-TensorRT > ORT-CUDA > "
                                                       "torch-CUDA > ORT-CPU, whichever this machine has")
    precision: Literal["fp16", "fp32"] = Field("fp16", description="GPU engines; every build is verified against ORT-CPU")
    threads: int = Field(2, ge=1, le=256)
    max_whole_px: int = Field(2048, ge=64, description="frames up to this size (working scale) run untiled")


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


class PipelineSettings(_Section):
    queue_size: int = Field(4, ge=1, description="frames waiting between two stages")


class Settings(_Section):
    daemon: DaemonSettings = DaemonSettings()
    source: SourceSettings = SourceSettings()
    model: ModelSettings = ModelSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    series: SeriesSettings = SeriesSettings()
    verdict: VerdictThresholds = VerdictThresholds()
    publish: PublishSettings = PublishSettings()
    pipeline: PipelineSettings = PipelineSettings()
    limits: InputLimits = InputLimits()


class ConfigError(CopilotError):
    """A config that does not validate; the message names the file and every offending field."""


def load_settings(path: Path | None = None, overrides: dict | None = None) -> Settings:
    """Read a TOML config (or defaults) and apply dotted-free nested ``overrides`` on top."""
    data: dict = {}
    where = str(path) if path else "defaults"
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{where}: invalid config\n  " + "\n  ".join(lines)) from exc


def settings_schema() -> str:
    return json.dumps(Settings.model_json_schema(), indent=2)
