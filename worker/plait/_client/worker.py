"""``Worker``: the ``plait worker`` runtime inside the caller's process, with sayiir's signature.

``Worker(worker_id, backend).start(workflows)`` runs :class:`plait._worker.runtime.Worker` (the
same claiming, leases, fencing and drain as worker pods) on an event loop of its own, on a
thread, and returns a :class:`WorkerHandle`: ``shutdown()`` asks it to stop claiming and drain
(running tasks finish, for up to ``drain_seconds``; the rest are released to other workers),
``join()`` waits until it has stopped and raises what stopped it, if it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterable

from plait._authoring.flow import Workflow
from plait._client.backend import KubernetesBackend

DEFAULT_CONCURRENCY = 8
# aiohttp closes TLS connections by aborting them; the transports finish closing on the loop's next
# turns, which must come before the loop closes (aiohttp's docs advise a short sleep).
CLOSE_GRACE_SECONDS = 0.1


class WorkerHandle:
    """A running embedded worker: ``shutdown()`` to stop it, ``join()`` to wait for it."""

    def __init__(self, worker_id: str, serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self.worker_id = worker_id
        self._serve = serve
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"plait-worker-{worker_id}", daemon=True)

    def shutdown(self) -> None:
        """Stop claiming and drain; returns at once (``join()`` waits)."""
        self._started.wait()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it stopped already
                self._loop.call_soon_threadsafe(self._stop.set)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the worker stopped; re-raises the error that stopped it, if any."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> WorkerHandle:
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # shown by join()
            self._error = error
        finally:
            self._started.set()

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        await self._serve(self._stop)

    def __repr__(self) -> str:
        return f"WorkerHandle({self.worker_id!r}, alive={self.is_alive()})"


class Worker:
    """Claims and runs the tasks of ``workflows`` from this process, like ``plait worker`` does.

    ``claim_ttl`` is the claim lease in seconds (renewed while a task runs; a worker that dies
    holds its tasks this long); ``max_concurrent_tasks`` bounds the tasks run at once (default 8);
    ``poll_interval`` is accepted for sayiir's signature and unused: workers follow tasks with a
    watch, so new tasks reach them at once.
    """

    def __init__(
        self,
        worker_id: str,
        backend: KubernetesBackend,
        *,
        poll_interval: float = 5.0,
        claim_ttl: float = 300.0,
        max_concurrent_tasks: int | None = None,
        drain_seconds: float = 20.0,
    ) -> None:
        if not isinstance(backend, KubernetesBackend):
            raise TypeError(f"Worker needs a KubernetesBackend, got {type(backend).__name__}")
        if claim_ttl <= 0:
            raise ValueError(f"claim_ttl must be > 0, got {claim_ttl}")
        if max_concurrent_tasks is not None and max_concurrent_tasks < 1:
            raise ValueError(f"max_concurrent_tasks must be at least 1, got {max_concurrent_tasks}")
        self.worker_id = worker_id
        self.backend = backend
        self.poll_interval = poll_interval
        self.claim_ttl = claim_ttl
        self.max_concurrent_tasks = max_concurrent_tasks
        self.drain_seconds = drain_seconds

    def start(self, workflows: Iterable[Workflow]) -> WorkerHandle:
        """Publish the workflows' definitions and start claiming their tasks, on a thread."""
        from plait._kube.client import AsyncKube
        from plait._worker.metrics import WorkerMetrics
        from plait._worker.runtime import Worker as Runtime
        from plait._worker.runtime import WorkerSettings

        served = list(workflows)
        bad = [w for w in served if not isinstance(w, Workflow)]
        if not served or bad:
            raise TypeError(f"start() takes a list of workflows from Flow(...).build(), got {bad or served!r}")
        settings = WorkerSettings(
            namespace=self.backend.namespace,
            concurrency=self.max_concurrent_tasks or DEFAULT_CONCURRENCY,
            lease_seconds=self.claim_ttl,
            drain_seconds=self.drain_seconds,
            identity=self.worker_id,
            payloads=self.backend.payloads,
        )
        connection = self.backend.connection

        async def serve(stop: asyncio.Event) -> None:
            async with AsyncKube(connection) as kube:
                await Runtime(served, kube, settings, WorkerMetrics()).run(stop)
            await asyncio.sleep(CLOSE_GRACE_SECONDS)  # closed connections finish closing on this loop

        return WorkerHandle(self.worker_id, serve).start()

    def __repr__(self) -> str:
        return f"Worker({self.worker_id!r}, {self.backend!r})"
