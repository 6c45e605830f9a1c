"""``KubernetesBackend``: where the instances live when they live on a cluster.

Finds the API server the way the CLI and kubectl do (``kubeconfig``, ``KUBECONFIG``, in-cluster
service-account credentials, ``~/.kube/config``; ``context`` picks one) when first used, so that
building one is cheap and importing :mod:`plait` loads no Kubernetes libraries. Accepted wherever
sayiir takes a backend: ``WorkflowClient``, ``AsyncWorkflowClient``, ``run_durable_workflow``,
``resume_workflow``, the lifecycle functions and ``Worker``.

``payload_store`` (``s3://bucket/prefix``; default ``PLAIT_PAYLOAD_STORE``) is where values over
``inline_payload_bytes`` go, the same store the operator and the workers use (docs/payloads.md):
the client writes large inputs and signal payloads there and reads outputs back from it.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plait._kube.connection import Connection
    from plait._payloads import PayloadStore


class KubernetesBackend:
    """The cluster of a kubeconfig context, in ``namespace`` (default: the context's namespace)."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        payload_store: str | None = None,
        payload_store_endpoint: str | None = None,
        inline_payload_bytes: int | None = None,
    ) -> None:
        from plait._payloads.store import StoreSettings, parse_url

        self._namespace = namespace
        self.kubeconfig = kubeconfig
        self.context = context
        self.payload_settings = StoreSettings.from_env(payload_store, payload_store_endpoint, inline_payload_bytes)
        if self.payload_settings.url is not None:
            parse_url(self.payload_settings.url)  # a bad URL fails here, not at the first large value
        self._connection: Connection | None = None
        self._payloads: PayloadStore | None = None
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
    def payloads(self) -> PayloadStore | None:
        """The payload store, if one is configured (made on first use)."""
        with self._lock:
            if self._payloads is None:
                self._payloads = self.payload_settings.open()
            return self._payloads

    @property
    def namespace(self) -> str:
        return self._namespace or self.connection.namespace

    def __repr__(self) -> str:
        where = [repr(self._namespace)] if self._namespace else []
        if self.kubeconfig:
            where.append(f"kubeconfig={str(self.kubeconfig)!r}")
        if self.context:
            where.append(f"context={self.context!r}")
        if self.payload_settings.url:
            where.append(f"payload_store={self.payload_settings.url!r}")
        return f"KubernetesBackend({', '.join(where)})"
