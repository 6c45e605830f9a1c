"""Running ``plait ui`` as a child process in tests (tests/ui, and tests/ops with the chart's account)."""

from __future__ import annotations

import httpx

from tests.k8s.support import PlaitProcess, wait_for


class UIProcess:
    """``plait ui`` running as a child process; ``url(path)`` is where its pages are."""

    def __init__(self, process: PlaitProcess, port: int) -> None:
        self.process = process
        self.port = port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def answering(process: PlaitProcess, port: int) -> UIProcess:
    """``process`` (a started ``plait ui`` on ``port``) once it answers."""
    ui = UIProcess(process, port)

    def answers() -> bool:
        assert process.alive(), process.output()[-3000:]
        try:
            return httpx.get(ui.url("/healthz"), timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, timeout=30, interval=0.2, what="plait ui to answer")
    return ui
