"""The exceptions plait raises, as one small tree.

    PlaitError (RuntimeError)            anything plait raises on purpose
    ├── WorkflowError                     a workflow could not run as asked (sayiir-compatible)
    │   ├── TaskError                     a task failed, timed out or was given bad input
    │   ├── BackendError                  a local persistence backend failed or lacks the instance
    │   ├── RerunRefused                  an instance cannot be rerun or forked from the step asked
    │   └── InstanceAlreadyExistsError    the instance id is taken (conflict policy ``fail``)
    ├── DefinitionError                   a flow or definition is malformed or does not match
    ├── PayloadTooLarge                   a serialized input, output or signal is over the limit
    ├── PayloadError                      the payload store could not keep or give back a value
    └── ClusterError                      the Kubernetes API refused or failed a request
        ├── NotFound                      404
        ├── Conflict                      409: resourceVersion precondition or name taken
        ├── Forbidden                     403: RBAC said no
        └── Invalid                       422: the object failed validation

Authoring mistakes found while building a flow (a branch without tasks, an undeclared route key)
raise ``ValueError`` at the line that made them, as sayiir does.
"""

from __future__ import annotations


class PlaitError(RuntimeError):
    """Base class of every error plait raises on purpose."""


class WorkflowError(PlaitError):
    """A workflow could not run as asked."""


class TaskError(WorkflowError):
    """A task failed, timed out, or its input or output was invalid."""


class BackendError(WorkflowError):
    """A persistence backend operation failed."""


class RerunRefused(WorkflowError):
    """An instance cannot be rerun or forked as asked (not stopped, unknown step, a step it is past)."""


class InstanceAlreadyExistsError(WorkflowError):
    """A workflow instance with this id already exists."""


class DefinitionError(PlaitError):
    """A workflow definition is malformed, unknown, or not the version that was pinned."""


class PayloadTooLarge(PlaitError):
    """A serialized payload is larger than the configured inline limit."""


class PayloadError(PlaitError):
    """The payload store could not keep or give back a value. ``reason`` says why:
    ``PayloadCorrupted`` (the object is not what its reference's SHA-256 says), ``PayloadMissing``
    (no such object), ``PayloadStoreUnavailable`` (the store did not answer in time),
    ``PayloadStoreRefused`` (it said no: credentials, permissions, a bad bucket),
    ``PayloadStoreNotConfigured`` (a reference, and no ``--payload-store`` to read it from) or
    ``PayloadRefForbidden`` (a reference outside this namespace's part of the store)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ClusterError(PlaitError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(ClusterError):
    """The object does not exist (HTTP 404)."""


class Conflict(ClusterError):
    """The write lost a race: stale resourceVersion or the name is taken (HTTP 409)."""


class Forbidden(ClusterError):
    """RBAC denied the request (HTTP 403)."""


class Invalid(ClusterError):
    """The API server rejected the object as invalid (HTTP 422)."""
