"""Run MLServer (a V2 / Open Inference Protocol server that installs with pip) on free loopback ports.

For tests and benchmarks of the ``triton`` backend, and for a lab that wants a shared inference server without
Triton. The repository is what ``copilot engines export-triton REPO --mlserver`` writes; the runtime is
``adapters/mlserver_onnx`` (put on the server's Python path here).

>>> srv = MLServer(repo).start()            # doctest: +SKIP
>>> srv.grpc_url                             # doctest: +SKIP
'127.0.0.1:40123'
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ADAPTER_DIR = Path(__file__).resolve().parents[2] / "adapters" / "mlserver_onnx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLServer:
    """One MLServer process serving ``repo``; ``start`` waits until every model is ready.

    Ports are chosen once and kept across ``kill``/``start``, so clients reconnect to the same address after a
    restart. ``log`` collects the server's output (a file beside the repository).
    """

    def __init__(self, repo: Path, *, python: str | None = None, adapter_dir: Path = ADAPTER_DIR):
        self.repo = Path(repo)
        self.python = python or sys.executable
        self.adapter_dir = Path(adapter_dir)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log = self.repo / "mlserver.log"
        self.proc: subprocess.Popen | None = None
        (self.repo / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": self.http_port, "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port, "parallel_workers": 0, "debug": False,
            "grpc_max_message_length": 1 << 30, "load_models_at_startup": True,
        }, indent=2))

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def models(self) -> list[str]:
        return sorted(json.loads(p.read_text())["name"] for p in self.repo.glob("*/model-settings.json"))

    def start(self, timeout_s: float = 120.0) -> "MLServer":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(self.adapter_dir), os.environ.get("PYTHONPATH", "")]),
                   MLSERVER_METRICS_ENABLED="false", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([self.python, "-c", "import sys; from mlserver.cli import main; sys.exit(main())",
                                      "start", str(self.repo)], cwd=self.repo, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import tritonclient.grpc as tc

        deadline = time.monotonic() + timeout_s
        client = tc.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"MLServer exited with {self.proc.returncode}; see {self.log}:\n"
                                       + self.log.read_text(errors="replace")[-2000:])
                try:
                    if all(client.is_model_ready(m, client_timeout=1.0) for m in self.models()):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise TimeoutError(f"MLServer not ready within {timeout_s:.0f} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as a crashed server would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "MLServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
