"""``AsyncWorkflowClient``: every method as a coroutine, against the real operator and an embedded worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from plait import AsyncWorkflowClient, BackendError, InMemoryBackend, InstanceAlreadyExistsError, KubernetesBackend
from plait._client.worker import WorkerHandle
from tests.client import flows

pytestmark = pytest.mark.cluster


async def until(check: Callable[[], object], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[misc]
            await asyncio.sleep(0.05)


async def test_every_method_as_a_coroutine(
    backend: KubernetesBackend, start_worker: Callable[..., WorkerHandle]
) -> None:
    start_worker()
    async with AsyncWorkflowClient(backend) as client:
        submitted = await client.submit(flows.approval, "Async_1", 1)
        assert submitted.status == "in_progress"
        with pytest.raises(InstanceAlreadyExistsError):
            await client.submit(flows.approval, "Async_1", 1)

        async def awaiting() -> bool:
            return (await client.status("Async_1")).is_awaiting_signal()

        await until(awaiting)
        await client.pause("Async_1", reason="check", paused_by="eve")
        paused = await client.status("Async_1")
        assert (paused.status, paused.reason, paused.paused_by) == ("paused", "check", "eve")
        await client.unpause("Async_1")
        assert (await client.status("Async_1")).is_awaiting_signal()
        await client.send_signal("Async_1", "approve", {"by": "eve"})
        done = await client.wait("Async_1", timeout=60)
        assert done.output == "approved by eve"
        assert await client.get_task_result("Async_1", "inc") == 2
        assert [s.instance_id for s in await client.list(workflow="approval", phase="completed")] == ["Async_1"]

        await client.submit(flows.holding, "Async_2", 1)
        await client.cancel("Async_2", reason="stop", cancelled_by="eve")
        cancelled = await client.status("Async_2")
        assert (cancelled.status, cancelled.reason, cancelled.cancelled_by) == ("cancelled", "stop", "eve")
        with pytest.raises(TimeoutError):
            await client.submit(flows.holding, "Async_3", 1)
            await client.wait("Async_3", timeout=0.5)
        with pytest.raises(BackendError, match="Snapshot not found: Async_9"):
            await client.status("Async_9")


async def test_a_local_backend_works_through_the_async_client_too() -> None:
    async with AsyncWorkflowClient(InMemoryBackend()) as client:
        status = await client.submit(flows.chained, "local-1", 1)
        assert status.status == "in_progress"
        await client.pause("local-1")
        assert (await client.status("local-1")).status == "in_progress"  # locally it applies when it next runs
        with pytest.raises(BackendError, match="Snapshot not found"):
            await client.get_task_result("nope", "inc")
