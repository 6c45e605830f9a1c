"""``KubernetesBackend``: where the instances live when they live on a cluster.

Finds the API server the way the CLI and kubectl do (``kubeconfig``, ``KUBECONFIG``, in-cluster
service-account credentials, ``~/.kube/config``; ``context`` picks one) when first used, so that
building one is cheap and importing :mod:`plait` loads no Kubernetes libraries. Accepted wherever
sayiir takes a backend: ``WorkflowClient``, ``AsyncWorkflowClient``, ``run_durable_workflow``,
``resume_workflow``, the lifecycle functions and ``Worker``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plait._kube.connection import Connection


class KubernetesBackend:
    """The cluster of a kubeconfig context, in ``namespace`` (default: the context's namespace)."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> None:
        self._namespace = namespace
        self.kubeconfig = kubeconfig
        self.context = context
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    @property
    def connection(self) -> Connection:
        """Server, credentials and default namespace, loaded on first use (``ClusterError`` if none)."""
        with self._lock:
            if self._connection is None:
                from plait._kube.connection import load_connection

                self._connection = load_connection(self.kubeconfig, self.context)
            return self._connection

    @property
    def namespace(self) -> str:
        return self._namespace or self.connection.namespace

    def __repr__(self) -> str:
        where = [repr(self._namespace)] if self._namespace else []
        if self.kubeconfig:
            where.append(f"kubeconfig={str(self.kubeconfig)!r}")
        if self.context:
            where.append(f"context={self.context!r}")
        return f"KubernetesBackend({', '.join(where)})"
