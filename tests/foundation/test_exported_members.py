"""``plait``'s public names, pinned: adding or dropping one is a decision, made here on purpose."""

from __future__ import annotations

from types import ModuleType

import plait

EXPORTED = [
    # authoring
    "BranchBuilder", "Flow", "ForkBuilder", "LoopResult", "NodeInfo", "OnMax", "RetryPolicy", "TaskMetadata",
    "Workflow", "WorkflowFailure", "parse_duration", "task",
    # flow control
    "Concurrency", "RateLimit",
    # running in this process
    "Backend", "DurableEngine", "InMemoryBackend", "SqliteBackend", "WorkflowEngine", "WorkflowStatus",
    "TaskExecutionContext", "get_task_context",
    "cancel_workflow", "pause_workflow", "resume_workflow", "run_durable_workflow", "run_workflow",
    "send_signal", "unpause_workflow",
    # application code and the cluster
    "AsyncWorkflowClient", "KubernetesBackend", "Worker", "WorkerHandle", "WorkflowClient",
    # tracing (sayiir's names)
    "init_tracing", "shutdown_tracing",
    # errors
    "BackendError", "DefinitionError", "InstanceAlreadyExistsError", "PayloadError", "PayloadTooLarge", "PlaitError", "TaskError",
    "WorkflowError",
]  # fmt: skip


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert sorted(plait.__all__) == sorted(EXPORTED)
    assert plait.__all__ == sorted(plait.__all__, key=lambda name: (name[0].islower(), name))


def test_every_exported_name_exists() -> None:
    assert [name for name in plait.__all__ if not hasattr(plait, name)] == []
    public = {name for name in dir(plait) if not name.startswith("_")}
    assert {name for name in public - set(plait.__all__) if not isinstance(getattr(plait, name), ModuleType)} == set()
