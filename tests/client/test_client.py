"""The Python client against the real control plane and operator, with embedded workers.

Every sayiir method of ``WorkflowClient(KubernetesBackend(...))``, ``wait`` and ``list``; the
three conflict policies; what a client sees right after its own requests; instances submitted
before any worker published their workflow; ids that are not Kubernetes names.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from plait import (
    BackendError,
    InstanceAlreadyExistsError,
    KubernetesBackend,
    WorkerHandle,
    WorkflowClient,
    WorkflowError,
    cancel_workflow,
    pause_workflow,
    resume_workflow,
    run_durable_workflow,
    run_workflow,
    send_signal,
    unpause_workflow,
)
from plait._ids import INSTANCE_ID_ANNOTATION, instance_name
from plait._kube.client import Kube
from plait._kube.models import (
    INSTANCES,
    WorkflowDefinition,
    WorkflowSignal,
    WorkflowTask,
    parse_rfc3339,
)
from plait._local.status import WorkflowStatus
from tests.client import flows
from tests.k8s.support import wait_for

pytestmark = pytest.mark.cluster


def wait_status(client: WorkflowClient, instance_id: str, *statuses: str, timeout: float = 30) -> WorkflowStatus:
    def reached() -> WorkflowStatus | None:
        status = client.status(instance_id)
        return status if status.status in statuses else None

    found: WorkflowStatus = wait_for(reached, timeout, interval=0.05, what=f"{instance_id} to be {statuses}")
    return found


def test_chained_flow_through_the_client_and_an_embedded_worker(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle], kube: Kube, e2e: str
) -> None:
    start_worker()
    submitted = client.submit(flows.chained, "Order_42", 4)
    assert submitted.status == "in_progress" and submitted.instance_id == "Order_42"
    done = client.wait("Order_42", timeout=60)  # type: ignore[attr-defined]
    assert (done.status, done.output, done.is_completed()) == ("completed", 11, True)
    assert client.status("Order_42").output == 11
    assert [client.get_task_result("Order_42", t) for t in ("inc", "double", "nope")] == [11, 10, None]
    body = kube.get(INSTANCES, instance_name("Order_42"), e2e)
    assert body["metadata"]["name"].startswith("order-42-") and body["metadata"]["name"] != "Order_42"
    assert body["metadata"]["annotations"][INSTANCE_ID_ANNOTATION] == "Order_42"
    listed = client.list(workflow="chained")  # type: ignore[attr-defined]
    assert [(s.instance_id, s.status) for s in listed] == [("Order_42", "completed")]
    assert [s.instance_id for s in client.list(phase="Succeeded")] == ["Order_42"]  # type: ignore[attr-defined]
    assert client.list(phase="failed") == []  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="Snapshot not found: order_42"):
        client.status("order_42")


def test_an_id_of_200_bytes_round_trips(client: WorkflowClient, start_worker: Callable[..., WorkerHandle]) -> None:
    start_worker()
    long_id = "Tenant/ÉTÉ:" + "x" * 184 + " #7"
    assert len(long_id.encode()) == 200
    client.submit(flows.chained, long_id, 1)
    assert client.wait(long_id, timeout=60).output == 5  # type: ignore[attr-defined]
    assert len(instance_name(long_id)) <= 253
    with pytest.raises(WorkflowError, match="exceeds maximum 256 bytes"):
        client.submit(flows.chained, "y" * 257, 1)
    with pytest.raises(WorkflowError, match="must not be empty"):
        client.submit(flows.chained, "", 1)


def test_signal_pause_unpause_and_what_the_client_sees_at_once(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle]
) -> None:
    start_worker()
    client.submit(flows.approval, "a-1", 1)
    waiting = wait_status(client, "a-1", "awaiting_signal")
    assert waiting.signal_name == "approve"
    client.pause("a-1", reason="audit", paused_by="ops")
    paused = client.status("a-1")  # a waiting instance is paused at once
    assert (paused.status, paused.reason, paused.paused_by) == ("paused", "audit", "ops")
    client.send_signal("a-1", "approve", {"by": "alice"})  # buffered while paused
    time.sleep(0.5)
    assert client.status("a-1").status == "paused"
    client.unpause("a-1")
    with pytest.raises(BackendError, match="Cannot pause workflow in state: Workflow is not paused"):
        client.unpause("a-1")
    assert client.wait("a-1", timeout=60).output == "approved by alice"  # type: ignore[attr-defined]


def test_a_running_instance_pauses_at_the_next_step_boundary(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle]
) -> None:
    start_worker()
    client.submit(flows.holding, "h-1", 7)
    assert flows.RUNNING.wait(30)  # held is running
    client.pause("h-1")
    assert client.status("h-1").status == "paused"
    flows.RELEASE.set()  # the running step finishes...
    wait_for(lambda: client.get_task_result("h-1", "held") == 7, what="held to finish")
    time.sleep(0.5)
    assert client.status("h-1").status == "paused"  # ...and the next one does not start
    assert client.get_task_result("h-1", "inc") is None
    client.unpause("h-1")
    assert client.status("h-1").status != "paused"
    assert client.wait("h-1", timeout=60).output == 8  # type: ignore[attr-defined]


def test_cancel_is_seen_at_once_and_nothing_runs_on(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle]
) -> None:
    start_worker()
    client.submit(flows.holding, "c-1", 1)
    assert flows.RUNNING.wait(30)  # held is running
    client.cancel("c-1", reason="no longer needed", cancelled_by="bob")
    cancelled = client.status("c-1")
    assert (cancelled.status, cancelled.reason, cancelled.cancelled_by) == ("cancelled", "no longer needed", "bob")
    client.cancel("c-1")  # again: nothing to do, as in sayiir
    flows.RELEASE.set()
    time.sleep(0.5)
    assert client.get_task_result("c-1", "inc") is None
    assert client.status("c-1").status == "cancelled"
    with pytest.raises(BackendError, match="Cannot pause workflow in state: Cancelled"):
        client.pause("c-1")
    client.send_signal("c-1", "approve", {})  # dropped, as sayiir drops it
    for call in (client.cancel, client.pause, client.unpause):
        with pytest.raises(BackendError, match="Snapshot not found: nobody"):
            call("nobody")
    with pytest.raises(BackendError, match="Snapshot not found: nobody"):
        client.get_task_result("nobody", "inc")


def test_conflict_policies(backend: KubernetesBackend, start_worker: Callable[..., WorkerHandle], kube: Kube) -> None:
    start_worker()
    with (
        WorkflowClient(backend) as fail,  # type: ignore[attr-defined]
        WorkflowClient(backend, conflict_policy="use_existing") as reuse,  # type: ignore[attr-defined]
        WorkflowClient(backend, conflict_policy="terminate_existing") as replace,  # type: ignore[attr-defined]
    ):
        fail.submit(flows.gated, "Dup_1", 3)
        assert flows.RUNNING.wait(30)  # held is running
        with pytest.raises(InstanceAlreadyExistsError, match="Workflow instance already exists: Dup_1"):
            fail.submit(flows.gated, "Dup_1", 3)
        existing = reuse.submit(flows.chained, "Dup_1", 100)
        assert (existing.workflow_id, existing.status) == ("gated", "in_progress")
        first_uid = kube.get(INSTANCES, instance_name("Dup_1"), backend.namespace)["metadata"]["uid"]
        # held runs: this signal is buffered in the old instance's checkpoint, not consumed
        fail.send_signal("Dup_1", "approve", {"by": "carol"})
        wait_for(lambda: _signal_phases(kube, backend.namespace) == ["Buffered"], what="the signal to be buffered")
        replaced = replace.submit(flows.gated, "Dup_1", 5)
        assert replaced.status == "in_progress"
        now = kube.get(INSTANCES, instance_name("Dup_1"), backend.namespace)
        assert now["metadata"]["uid"] != first_uid and now["spec"]["input"] == 5
        flows.RELEASE.set()
        done = fail.wait("Dup_1", timeout=60)
        assert done.output == "approved by carol"  # the buffered signal went over to the new instance
        assert replace.get_task_result("Dup_1", "held") == 5


def _signal_phases(kube: Kube, namespace: str) -> list[str]:
    items = kube.list(WorkflowSignal.RESOURCE, namespace)["items"]
    return [(s.get("status") or {}).get("phase", "Pending") for s in items]


def test_an_instance_submitted_before_its_definition_starts_when_it_is_published(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle], kube: Kube, e2e: str
) -> None:
    status = client.submit(flows.chained, "early", 1)
    assert status.status == "in_progress"
    wait_for(lambda: (kube.get(INSTANCES, "early", e2e).get("status") or {}).get("phase") == "Pending")
    client.pause("early", reason="hold")  # not started: it will start paused
    assert client.status("early").status == "paused"
    start_worker()
    definitions = wait_for(lambda: kube.list(WorkflowDefinition.RESOURCE, e2e)["items"], what="a definition")
    published = min(parse_rfc3339(d["metadata"]["creationTimestamp"]) for d in definitions)
    body = wait_for(lambda: _started(kube, e2e, "early"), timeout=15, what="the instance to start")
    # creationTimestamp has whole seconds; the operator used to retry on a timer, about 10 s later
    assert parse_rfc3339(body["status"]["startedAt"]) - published < 2.5
    assert body["status"]["phase"] == "Paused"
    time.sleep(0.5)
    assert kube.list(WorkflowTask.RESOURCE, e2e)["items"] == []  # it started paused: no step was dispatched
    client.unpause("early")
    assert client.wait("early", timeout=60).output == 5  # type: ignore[attr-defined]


def _started(kube: Kube, namespace: str, name: str) -> dict[str, object] | None:
    body = kube.get(INSTANCES, name, namespace)
    return body if (body.get("status") or {}).get("startedAt") else None


def test_cancel_an_instance_whose_definition_never_came(client: WorkflowClient) -> None:
    client.submit(flows.chained, "never", 1)
    client.cancel("never", reason="wrong workflow")
    cancelled = client.status("never")
    assert (cancelled.status, cancelled.reason) == ("cancelled", "wrong workflow")


def test_run_durable_workflow_submits_and_resume_workflow_reads(
    backend: KubernetesBackend, start_worker: Callable[..., WorkerHandle], client: WorkflowClient
) -> None:
    status = run_durable_workflow(flows.approval, "r-1", 1, backend=backend)
    assert status.status == "in_progress"  # returned at once: nothing ran here
    start_worker()
    assert wait_for(lambda: resume_workflow(flows.approval, "r-1", backend).is_awaiting_signal())
    pause_workflow("r-1", backend, reason="look", paused_by="dan")
    assert client.status("r-1").paused_by == "dan"
    unpause_workflow("r-1", backend)
    send_signal("r-1", "approve", {"by": "dan"}, backend)
    assert client.wait("r-1", timeout=60).output == "approved by dan"  # type: ignore[attr-defined]
    assert run_workflow(flows.chained, 1, instance_id="rw-1", backend=backend) == 5  # submits and waits
    run_durable_workflow(flows.holding, "r-2", 1, backend=backend)
    cancel_workflow("r-2", backend, reason="enough")
    assert resume_workflow(flows.holding, "r-2", backend).status == "cancelled"


def test_graceful_shutdown_finishes_the_running_task(
    client: WorkflowClient, start_worker: Callable[..., WorkerHandle]
) -> None:
    handle = start_worker()
    client.submit(flows.napping, "n-1", 1.0)
    assert flows.RUNNING.wait(30)  # the first nap is running
    handle.shutdown()
    handle.join(timeout=30)
    assert not handle.is_alive()
    assert client.get_task_result("n-1", "nap") == 1.0  # drained: it finished and reported
    assert client.status("n-1").status == "in_progress"  # the next step waits for a worker
    start_worker("embedded-2")
    assert client.wait("n-1", timeout=60).output == 1.0  # type: ignore[attr-defined]
