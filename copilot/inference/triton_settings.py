"""``[triton]`` config section: where the shared inference server is and what to do when it is down or slow.

Importable without tritonclient (the config loads it on every start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TritonSettings(BaseModel):
    """The ``triton`` backend: an Open Inference Protocol (KServe v2) server, Triton in production."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    url: str = Field("127.0.0.1:8001", description="host:port of the server (gRPC port, or HTTP port with "
                                                     "protocol = 'http')")
    protocol: Literal["grpc", "http"] = "grpc"
    model_name: str | None = Field(None, description="the model's name on the server (default: model.name)")
    model_version: str | None = Field(None, description="the version folder to use; default: the card's version "
                                      "as `copilot engines export-triton` writes it (0.2.0 → 2000); '' = the "
                                      "server's latest")
    timeout_s: float = Field(30.0, gt=0, description="one request, sending to answer")
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, description="attempts after a failed request before falling back (fallback = "
                                              "'local'); without fallback frames keep waiting up to max_wait_s")
    backoff_s: float = Field(0.2, gt=0, description="first wait between attempts; doubles up to backoff_max_s")
    backoff_max_s: float = Field(5.0, gt=0)
    max_wait_s: float = Field(300.0, gt=0, description="how long a frame waits for the server before it fails")
    fallback: Literal["none", "local"] = Field("none", description="'local': run ONNX Runtime CPU here while the "
                                                "server is unreachable (the result's model.backend says so)")
    recheck_s: float = Field(5.0, gt=0, description="while falling back, try the server again after this long")
    tile_batch: int = Field(4, ge=1, description="tiles per request for frames larger than model.max_whole_px")
    verify: bool = Field(True, description="check the server's answers against ONNX Runtime CPU on start "
                                           "(mIoU >= 0.99 on the card's validation frames)")
    ssl: bool = Field(False, description="TLS to the server")
    root_certificates: Path | None = Field(None, description="CA bundle (PEM) that signed the server's certificate")
    private_key: Path | None = Field(None, description="client key (PEM), for servers that want mutual TLS")
    certificate_chain: Path | None = Field(None, description="client certificate (PEM)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (gRPC metadata)")
    token_env: str | None = Field(None, description="environment variable holding a bearer token "
                                                    "(sent as 'Authorization: Bearer …'; keeps secrets out of configs)")
    http_binary: bool = Field(True, description="HTTP only: send tensors with the binary extension (Triton); "
                                                "false for servers that only take JSON")
