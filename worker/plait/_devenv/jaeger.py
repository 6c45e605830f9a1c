"""A local Jaeger (v2, built from Go modules) that receives OTLP and answers its query API.

For the tracing tests and ``make bench-tracing``: it listens on free loopback ports only, keeps
spans in memory, and is stopped (and forgotten) with the test run. The Go build carries no UI
assets, so only the JSON API is served: ``/api/traces/{id}`` and ``/api/traces?service=...``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from plait._devenv.binaries import find_jaeger
from plait._devenv.controlplane import free_port

_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class Jaeger:
    """One Jaeger process: OTLP/HTTP in at :attr:`otlp_endpoint`, the query API at :attr:`query_url`."""

    def __init__(self, directory: Path, binary: Path | None = None) -> None:
        self.directory = directory
        self.binary = binary or find_jaeger()
        self.otlp_port, self.query_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def log(self) -> Path:
        return self.directory / "jaeger.log"

    def start(self, timeout: float = 60.0) -> Jaeger:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "jaeger.yaml"
        ports = {"otlp": self.otlp_port, "query": self.query_port, "query_grpc": free_port()}
        config.write_text(_CONFIG.format(**ports))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--config", f"file:{config}"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"jaeger exited with {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.query_url}/api/services", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jaeger did not answer within {timeout}s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace ``trace_id`` (32 hex digits) as the query API returns it, or ``None`` if unknown."""
        response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json().get("data") or []
        return data[0] if data else None

    def traces(self, service: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest traces with spans of ``service``."""
        response = httpx.get(
            f"{self.query_url}/api/traces", params={"service": service, "limit": limit, "lookback": "1h"}, timeout=10
        )
        response.raise_for_status()
        return list(response.json().get("data") or [])
