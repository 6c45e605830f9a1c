"""plait: durable workflows on Kubernetes, written as plain Python.

The authoring API and local execution are compatible with the ``sayiir`` package: code written
for sayiir runs on plait by changing the import. Build a flow with :class:`Flow` and
:func:`task`, run it in-process with :func:`run_workflow` or :func:`run_durable_workflow`, and
serve it on a cluster with ``plait worker MODULE``. On a cluster, application code submits and
controls instances with ``WorkflowClient(KubernetesBackend())`` (or :class:`AsyncWorkflowClient`)
and can run tasks in its own process with :class:`Worker`. :func:`init_tracing` and
:func:`shutdown_tracing` turn on OpenTelemetry export where the ``OTEL_*`` variables ask for it.
"""

from plait._authoring.failure import WorkflowFailure
from plait._authoring.flow import BranchBuilder, Flow, ForkBuilder, NodeInfo, Workflow
from plait._authoring.loop import LoopResult, OnMax
from plait._authoring.tasks import RetryPolicy, TaskMetadata, parse_duration, task
from plait._client.aio import AsyncWorkflowClient
from plait._client.api import (
    cancel_workflow,
    pause_workflow,
    resume_workflow,
    run_durable_workflow,
    run_workflow,
    send_signal,
    unpause_workflow,
)
from plait._client.backend import KubernetesBackend
from plait._client.sync import WorkflowClient
from plait._client.worker import Worker, WorkerHandle
from plait._core.flowcontrol import Concurrency, RateLimit
from plait._execution.context import TaskExecutionContext, get_task_context
from plait._local.api import DurableEngine, WorkflowEngine
from plait._local.backends import Backend, InMemoryBackend, SqliteBackend
from plait._local.status import WorkflowStatus
from plait._tracing import init_tracing, shutdown_tracing
from plait.errors import (
    BackendError,
    DefinitionError,
    InstanceAlreadyExistsError,
    PayloadError,
    PayloadTooLarge,
    PlaitError,
    TaskError,
    WorkflowError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncWorkflowClient",
    "Backend",
    "BackendError",
    "BranchBuilder",
    "Concurrency",
    "DefinitionError",
    "DurableEngine",
    "Flow",
    "ForkBuilder",
    "InMemoryBackend",
    "InstanceAlreadyExistsError",
    "KubernetesBackend",
    "LoopResult",
    "NodeInfo",
    "OnMax",
    "PayloadError",
    "PayloadTooLarge",
    "PlaitError",
    "RateLimit",
    "RetryPolicy",
    "SqliteBackend",
    "TaskError",
    "TaskExecutionContext",
    "TaskMetadata",
    "Worker",
    "WorkerHandle",
    "Workflow",
    "WorkflowClient",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowFailure",
    "WorkflowStatus",
    "cancel_workflow",
    "get_task_context",
    "init_tracing",
    "parse_duration",
    "pause_workflow",
    "resume_workflow",
    "run_durable_workflow",
    "run_workflow",
    "send_signal",
    "shutdown_tracing",
    "task",
    "unpause_workflow",
]
