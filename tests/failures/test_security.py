"""A user who may only create instances cannot touch the machinery: tasks, signals' status,
definitions. (The chart's operator and worker identities are tested in tests/ops/test_rbac.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from plait._kube.client import Kube
from plait._kube.connection import Connection
from plait._kube.models import WorkflowDefinition, WorkflowInstance, WorkflowTask
from plait.errors import Forbidden
from tests.k8s.support import PlaitProcess, instance_body, wait_phase


def test_a_user_who_may_only_create_instances_cannot_patch_tasks(
    kube: Kube,
    connection: Connection,
    e2e: str,
    start_worker: Callable[..., PlaitProcess],
    grant: Callable[..., None],
) -> None:
    grant(
        e2e,
        "instance-creator",
        [{"apiGroups": ["plait.dev"], "resources": ["workflowinstances"], "verbs": ["create"]}],
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
    )
    start_worker(e2e)
    with Kube(connection.as_user("alice")) as alice:
        alice.create(WorkflowInstance.RESOURCE, instance_body("mine", "sequence", 1), e2e)
        done = wait_phase(kube, e2e, "mine", "Succeeded")
        task = kube.list(WorkflowTask.RESOURCE, e2e)["items"][0]["metadata"]["name"]
        forged = {"status": {"phase": "Succeeded", "output": "forged"}}
        for attempt in (
            lambda: alice.patch(WorkflowTask.RESOURCE, task, forged, e2e, subresource="status"),
            lambda: alice.patch(
                WorkflowInstance.RESOURCE, "mine", {"status": {"output": "forged"}}, e2e, subresource="status"
            ),
            lambda: alice.create(WorkflowTask.RESOURCE, {"metadata": {"name": "fake"}, "spec": {}}, e2e),
            lambda: alice.patch(WorkflowDefinition.RESOURCE, "sequence", {"spec": {}}, e2e),
            lambda: alice.list(WorkflowTask.RESOURCE, e2e),
        ):
            with pytest.raises(Forbidden):
                attempt()
    assert done["status"]["output"] == 5
