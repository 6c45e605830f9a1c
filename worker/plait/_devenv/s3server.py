"""A local S3-compatible server for the payload store: versitygw over a directory.

Built from Go modules by ``hack/build-binaries.sh --s3`` (cached in ``~/.cache/plait/bin``), started
on a free loopback port with a root access key. The payload tests start it (and stop and start it
again for an outage), and so does the payload benchmark.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from plait._devenv.binaries import S3_TAG, BinariesMissing, build_script, cache_dir
from plait._devenv.controlplane import free_port

ACCESS_KEY = "plait-test"
SECRET_KEY = "plait-test-secret-key"
BUCKET = "plait"


def versitygw() -> Path:
    """The versitygw binary, built first if it is not cached."""
    path = cache_dir() / "bin" / S3_TAG / "versitygw"
    if not os.access(path, os.X_OK):
        script = build_script()
        if script is None:
            raise BinariesMissing(f"versitygw is not built in {path.parent}: run hack/build-binaries.sh --s3")
        subprocess.run([str(script), "--s3"], check=True, env={**os.environ, "PLAIT_CACHE_DIR": str(cache_dir())})
    return path


class S3Server:
    """versitygw serving ``root`` (each directory a bucket) on ``127.0.0.1:port``."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        (root / BUCKET).mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        """What a plait process needs to reach it (credentials the way boto3 reads them)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "PLAIT_PAYLOAD_STORE_ENDPOINT": self.endpoint,
        }

    def start(self) -> S3Server:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(versitygw()), "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--port", f"127.0.0.1:{self.port}",
             "--quiet", "posix", str(self.root)],
            stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
        handle.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.endpoint, timeout=1)  # any answer (403 without a signature) means it serves
                return self
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"versitygw did not start:\n{self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def objects(self, prefix: str = "") -> dict[str, Path]:
        """The objects stored, by key (the posix backend keeps one file per object)."""
        base = self.root / BUCKET
        found: dict[str, Path] = {}
        for directory, _, files in os.walk(base):  # unlike rglob, a directory the server deletes meanwhile is skipped
            for file in files:
                path = Path(directory) / file
                found[str(path.relative_to(base))] = path
        return {key: path for key, path in found.items() if key.startswith(prefix) and not key.startswith(".")}
