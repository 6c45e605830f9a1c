"""Using plait from application code: the cluster backend, the clients and the embedded worker.

:mod:`~plait._client.backend` finds the cluster (:class:`KubernetesBackend`);
:mod:`~plait._client.objects` turns ids, workflows and instance objects into each other (no I/O);
:mod:`~plait._client.aio` is the client (:class:`AsyncWorkflowClient`), and
:mod:`~plait._client.sync` the same for synchronous code, on an event loop thread of its own
(``WorkflowClient``, for local backends and the cluster alike); :mod:`~plait._client.api` has
sayiir's module functions for both;
:mod:`~plait._client.worker` runs the ``plait worker`` runtime inside the caller's process.
"""
