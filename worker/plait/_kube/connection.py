"""How plait reaches a Kubernetes API server: server URL, TLS, credentials, impersonation.

Reads kubeconfig files (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``, with ``--context``)
and in-cluster service-account credentials the way kubectl does, through the ``kubernetes``
package's loaders, so exec plugins, OIDC and token files all work. The clients in
:mod:`plait._kube.client` and the operator's kopf login both start from a :class:`Connection`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from plait.errors import ClusterError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Connection:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    namespace: str = "default"
    token_source: Callable[[], str | None] | None = field(default=None, compare=False)
    impersonate_user: str | None = None
    impersonate_groups: tuple[str, ...] = ()

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "plait"}
        token = self.token_source() if self.token_source else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.impersonate_user:
            headers["Impersonate-User"] = self.impersonate_user
        return headers

    def impersonation_headers(self) -> list[tuple[str, str]]:
        return [("Impersonate-Group", group) for group in self.impersonate_groups]

    def as_service_account(self, namespace: str, name: str) -> Connection:
        """The same connection, impersonating a service account (RBAC tests, `--as`)."""
        return replace(
            self,
            impersonate_user=f"system:serviceaccount:{namespace}:{name}",
            impersonate_groups=(
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )

    def as_user(self, user: str, groups: tuple[str, ...] = ("system:authenticated",)) -> Connection:
        return replace(self, impersonate_user=user, impersonate_groups=groups)


def _from_configuration(configuration: k8s_client.Configuration, namespace: str) -> Connection:
    def token() -> str | None:
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook(configuration)
        value = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        if not value:
            return None
        # the bare token: the in-cluster loader stores "bearer <token>", a kubeconfig "Bearer <token>"
        scheme, _, credentials = str(value).partition(" ")
        return credentials if credentials and scheme.lower() == "bearer" else str(value)

    return Connection(
        server=configuration.host.rstrip("/"),
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        verify=bool(configuration.verify_ssl),
        namespace=namespace,
        token_source=token if (configuration.api_key or configuration.refresh_api_key_hook) else None,
    )


def load_connection(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> Connection:
    """Credentials as kubectl would pick them: explicit file, ``KUBECONFIG``, in-cluster, ``~/.kube/config``."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    in_cluster = not explicit and (SERVICE_ACCOUNT_DIR / "token").exists() and "KUBERNETES_SERVICE_HOST" in os.environ
    configuration = k8s_client.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)
            namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
            return _from_configuration(configuration, namespace)
        # KUBECONFIG may list several files; they merge, first one wins, as with kubectl.
        path = str(explicit) if explicit else os.path.expanduser("~/.kube/config")
        existing = [p for p in path.split(os.pathsep) if p and os.path.exists(p)]
        if not existing:
            raise ClusterError(
                f"no kubeconfig at {path}: set KUBECONFIG or pass --kubeconfig "
                '(for a local cluster: `plait dev up` then `eval "$(plait dev env)"`)'
            )
        merged = os.pathsep.join(existing)
        contexts, active = k8s_config.list_kube_config_contexts(config_file=merged)
        if context:
            active = next((c for c in contexts if c["name"] == context), None)
            if active is None:
                names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
                raise ClusterError(f"no context {context!r} in {merged} (contexts: {names})")
        k8s_config.load_kube_config(
            config_file=merged, context=context, client_configuration=configuration, persist_config=False
        )
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except k8s_config.ConfigException as error:
        raise ClusterError(f"cannot load Kubernetes credentials: {error}") from error
    return _from_configuration(configuration, namespace)
