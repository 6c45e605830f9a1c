"""The Helm chart: it lints clean, renders what an installation needs, the real API server accepts
every object it renders, and its schema turns away wrong values with a message that says where."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from plait._devenv.controlplane import ControlPlane
from plait._kube.client import CRDS, Kube
from plait._kube.crds import all_crds
from tests.ops.support import (
    CHART,
    KUBE_VERSION,
    Manifest,
    find,
    helm,
    kinds,
    kubectl,
    render,
    render_text,
    template_args,
    values_file,
)

# helm comes with the control-plane binaries: these tests need them like the cluster tests do
pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent

# Two pools that between them use every option of a pool, and every optional object turned on.
TWO_POOLS: dict[str, Any] = {
    "operator": {"defaultTTLSeconds": 3600, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
    "workers": {
        "pools": [
            {
                "name": "fast",
                "module": "myflows.fast",
                "replicas": 3,
                "queues": ["fast", "urgent.v2"],
                "concurrency": 16,
                "leaseSeconds": 10,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                "envFrom": [{"secretRef": {"name": "fast-secrets", "optional": True}}],
                "nodeSelector": {"pool": "fast"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "plait", "effect": "NoSchedule"}],
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {"plait.dev/pool": "fast"}},
                                },
                            }
                        ]
                    }
                },
                "podAnnotations": {"example.com/team": "payments"},
                "autoscaling": {"enabled": True, "maxReplicas": 6, "targetMemoryUtilizationPercentage": 75},
            },
            {
                "name": "batch",
                "module": "myflows.batch:flows",
                "image": {"repository": "registry.example.com/batch", "tag": "1.2.3"},
                "queues": ["batch", "batch.low"],
                "drainSeconds": 0,
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                "podDisruptionBudget": {"minAvailable": 1},
                "keda": {
                    "enabled": True,
                    "serverAddress": "http://prometheus-operated.monitoring:9090",
                    "minReplicaCount": 0,
                    "activationTasks": 1,
                    "authenticationRef": {"name": "prometheus-auth"},
                },
            },
        ]
    },
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}},
        "dashboard": {"enabled": True},
    },
}


def pool_values(**changes: Any) -> dict[str, Any]:
    pool = {"name": "p", "module": "flows", **changes}
    return {"workers": {"pools": [pool]}}


def labels(manifest: Manifest) -> dict[str, str]:
    result: dict[str, str] = manifest["metadata"].get("labels") or {}
    return result


# -- lint and render (helm only) ---------------------------------------------------------------------


def test_helm_lint_is_clean_with_default_and_two_pool_values(tmp_path: Path) -> None:
    for values in (None, TWO_POOLS):
        args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
        if values is not None:
            args += ["--values", str(values_file(tmp_path, values))]
        out = helm(*args).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in out
        assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_default_values_render_an_operator_with_secure_defaults(tmp_path: Path) -> None:
    manifests = render(tmp_path)
    operator_kinds = ["ServiceAccount", "Deployment", "Service", "Role", "RoleBinding"]  # Role: the leader Lease
    cluster_kinds = ["ClusterRole", "ClusterRoleBinding"] * 2  # the rules, and the read-only observer
    assert kinds(manifests) == sorted(operator_kinds + cluster_kinds)
    deployment = find(manifests, "Deployment", "plait-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "plait-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["args"][:2] == ["operator", "--all-namespaces"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "resources" not in container  # no default resources
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid"}
    # optional monitoring objects are off by default
    assert not {"ServiceMonitor", "PrometheusRule", "ConfigMap"} & set(kinds(manifests))


def test_labels_follow_the_kubernetes_conventions_and_selectors_stay_immutable(tmp_path: Path) -> None:
    manifests = render(tmp_path, TWO_POOLS)
    for manifest in manifests:
        found = labels(manifest)
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version"):
            assert key in found, f"{manifest['kind']} {manifest['metadata']['name']} lacks {key}"
        assert found["app.kubernetes.io/managed-by"] == "Helm"
        assert found["helm.sh/chart"] == "plait-0.1.0"
    for manifest in manifests:
        if manifest["kind"] not in ("Deployment", "Service", "PodDisruptionBudget"):
            continue
        selector = manifest["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        # selectors never carry labels that change between chart versions (a Deployment's is immutable)
        assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(selector)
        assert selector["app.kubernetes.io/instance"] == "plait"
        if manifest["kind"] == "Deployment":
            assert selector.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()


def test_two_pools_render_a_deployment_service_budget_and_autoscaler_each(tmp_path: Path) -> None:
    manifests = render(tmp_path, TWO_POOLS)
    fast = find(manifests, "Deployment", "plait-worker-fast")
    batch = find(manifests, "Deployment", "plait-worker-batch")
    assert "replicas" not in fast["spec"] and "replicas" not in batch["spec"]  # the autoscalers own them
    container = fast["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "worker",
        "myflows.fast",
        "--namespace=$(POD_NAMESPACE)",
        "--metrics-port=8081",
        "--concurrency=16",
        "--lease-seconds=10",
        "--drain-seconds=20",
        "--log-format=text",
        "--queue=fast",
        "--queue=urgent.v2",
    ]
    assert container["image"] == "ghcr.io/plait-dev/plait-worker:0.1.0"
    assert container["resources"]["limits"] == {"memory": "512Mi"}
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]
    pod = fast["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "fast"} and pod["tolerations"][0]["key"] == "dedicated"
    assert pod["terminationGracePeriodSeconds"] == 30  # drainSeconds + 10
    assert pod["serviceAccountName"] == "plait-worker"
    batch_pod = batch["spec"]["template"]["spec"]
    assert batch_pod["containers"][0]["image"] == "registry.example.com/batch:1.2.3"
    assert batch_pod["terminationGracePeriodSeconds"] == 10
    assert {"name": "scratch", "mountPath": "/scratch"} in batch_pod["containers"][0]["volumeMounts"]

    assert find(manifests, "PodDisruptionBudget", "plait-worker-fast")["spec"]["maxUnavailable"] == 1
    assert find(manifests, "PodDisruptionBudget", "plait-worker-batch")["spec"]["minAvailable"] == 1
    hpa = find(manifests, "HorizontalPodAutoscaler", "plait-worker-fast")
    assert hpa["spec"]["maxReplicas"] == 6
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert find(manifests, "Service", "plait-worker-fast-metrics")["spec"]["ports"][0]["port"] == 8081

    scaled = find(manifests, "ScaledObject", "plait-worker-batch")
    assert scaled["spec"]["minReplicaCount"] == 0
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["threshold"] == "8"  # the pool's concurrency
    assert trigger["authenticationRef"] == {"name": "prometheus-auth"}
    # the generated query is valid PromQL and selects exactly the pool's queues in this release
    query = trigger["metadata"]["query"]
    selectors = selectors_in(query)
    assert {name for name, _ in selectors} == {"plait_queue_depth", "plait_worker_tasks_in_flight"}
    for _, matchers in selectors:
        assert matchers["queue"] == ("=~", r"batch|batch\.low")
        assert matchers["namespace"] == ("=", "plait")

    binding = find(manifests, "RoleBinding", "plait-worker")
    assert [s["name"] for s in binding["subjects"]] == ["plait-worker"]


def test_tracing_and_the_log_format_reach_the_operator_and_each_pool_with_the_pools_overrides(tmp_path: Path) -> None:
    values = {
        "tracing": {
            "endpoint": "http://collector.monitoring:4318",
            "sampler": "parentbased_traceidratio",
            "samplerArg": 0.25,
            "resourceAttributes": {"deployment.environment": "prod"},
        },
        "logFormat": "json",
        "workers": {
            "pools": [
                {
                    "name": "traced",
                    "module": "flows",
                    "tracing": {"samplerArg": "1", "resourceAttributes": {"team": "a"}},
                },
                {"name": "quiet", "module": "flows", "tracing": {"endpoint": ""}, "logFormat": "text"},
            ]
        },
    }
    manifests = render(tmp_path, values)

    def env_and_args(name: str) -> tuple[dict[str, str], list[str]]:
        container = find(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}, container["args"]

    env, args = env_and_args("plait-operator")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.monitoring:4318"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    attributes = env["OTEL_RESOURCE_ATTRIBUTES"]
    assert attributes == "deployment.environment=prod,k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
    assert list(env).index("POD_NAME") < list(env).index("OTEL_RESOURCE_ATTRIBUTES")  # $(POD_NAME) expands
    assert "--log-format=json" in args
    env, args = env_and_args("plait-worker-traced")
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "1" and env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert "plait.pool=traced" in env["OTEL_RESOURCE_ATTRIBUTES"] and "team=a" in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert "--log-format=json" in args
    env, args = env_and_args("plait-worker-quiet")
    assert not any(name.startswith("OTEL_") for name in env) and "--log-format=text" in args
    assert not any(e["name"].startswith("OTEL_") for e in env_of(render(tmp_path, pool_values()), "plait-operator"))


def env_of(manifests: list[Any], name: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = find(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_a_pool_may_run_as_its_own_service_account(tmp_path: Path) -> None:
    manifests = render(tmp_path, pool_values(serviceAccountName="team-a"))
    deployment = find(manifests, "Deployment", "plait-worker-p")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "team-a"
    binding = find(manifests, "RoleBinding", "plait-worker")
    assert sorted(s["name"] for s in binding["subjects"]) == ["plait-worker", "team-a"]


def test_watched_namespaces_turn_the_cluster_role_into_roles(tmp_path: Path) -> None:
    manifests = render(tmp_path, {"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    roles = [m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"] == "plait-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    cluster_roles = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ClusterRole"}
    assert list(cluster_roles) == ["plait-operator-observer"]  # read-only: CRDs and namespaces
    for rule in cluster_roles["plait-operator-observer"]["rules"]:
        assert set(rule["verbs"]) <= {"list", "watch"}
    args = find(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["operator", "--namespace=team-a", "--namespace=team-b"]


def test_a_payload_store_reaches_the_operator_and_every_pool_with_its_credentials(tmp_path: Path) -> None:
    payloads = {"store": "s3://acme-plait/prod", "endpoint": "https://s3.example.test", "inlineBytes": 32768,
                "orphanGraceSeconds": 600, "credentials": {"secretName": "plait-s3"}}  # fmt: skip
    manifests = render(tmp_path, {"payloads": payloads, "workers": TWO_POOLS["workers"]})
    expected_env = {
        "PLAIT_PAYLOAD_STORE": "s3://acme-plait/prod",
        "PLAIT_INLINE_PAYLOAD_BYTES": "32768",
        "PLAIT_PAYLOAD_STORE_ENDPOINT": "https://s3.example.test",
    }
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert len(deployments) == 3
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in expected_env} == expected_env
        assert {"secretRef": {"name": "plait-s3"}} in container["envFrom"]
        assert not any("SECRET" in e["name"] for e in container["env"])  # only by reference
    operator = find(manifests, "Deployment", "plait-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "--payload-orphan-grace=600" in operator["args"]
    fast = find(manifests, "Deployment", "plait-worker-fast")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "fast-secrets", "optional": True}} in fast["envFrom"]  # the pool's own stay
    bare = find(render(tmp_path, {}), "Deployment", "plait-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in bare and not any(e["name"].startswith("PLAIT_PAYLOAD") for e in bare["env"])


def test_monitoring_objects_select_this_release(tmp_path: Path) -> None:
    manifests = render(tmp_path, TWO_POOLS, namespace="observed")
    monitor = find(manifests, "ServiceMonitor")
    assert labels(monitor)["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [m for m in manifests if m["kind"] == "Service"]
    assert len(services) == 3 and all(selector.items() <= labels(s).items() for s in services)
    assert all(s["spec"]["ports"][0]["name"] == "metrics" for s in services)
    rule = find(manifests, "PrometheusRule")
    for alert in rule["spec"]["groups"][0]["rules"]:
        assert alert["labels"]["team"] == "platform"
        for _, matchers in selectors_in(alert["expr"]):
            assert matchers["namespace"] == ("=", "observed"), alert["alert"]
    dashboard = find(manifests, "ConfigMap", "plait-dashboard")
    assert labels(dashboard)["grafana_dashboard"] == "1"
    assert yaml.safe_load(dashboard["data"]["plait.json"])["uid"] == "plait-overview"


UI = {"ui": {"enabled": True}}
UI_WRITABLE = {"ui": {"enabled": True, "readOnly": False, "traceURL": "https://jaeger.example.com/trace/{trace_id}"}}
UI_READS = {"get", "list", "watch"}


def granted(role: Manifest) -> set[tuple[str, str]]:
    """(resource, verb) pairs a Role or ClusterRole grants."""
    return {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}


def test_the_ui_runs_as_its_own_account_and_may_only_read_unless_read_only_is_off(tmp_path: Path) -> None:
    assert not [m for m in render(tmp_path) if "ui" in m["metadata"]["name"]]  # off by default
    manifests = render(tmp_path, UI)
    deployment = find(manifests, "Deployment", "plait-ui")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "plait-ui"
    assert find(manifests, "ServiceAccount", "plait-ui")["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is True  # the UI's pod alone gets the token
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/plait-dev/plait-operator:0.1.0"  # the operator's: it has `plait`
    assert container["args"] == ["ui", "--address=0.0.0.0", "--port=8484", "--namespace=plait", "--read-only"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find(manifests, "Service", "plait-ui")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    assert (
        not service["spec"]["selector"].items() <= pod_labels(find(manifests, "Deployment", "plait-operator")).items()
    )
    role = find(manifests, "ClusterRole", "plait-ui")
    assert {verb for _, verb in granted(role)} == UI_READS  # read-only: no write verb at all
    assert ("namespaces", "list") in granted(role) and ("events", "watch") in granted(role)
    binding = find(manifests, "ClusterRoleBinding", "plait-ui")
    assert binding["roleRef"]["name"] == "plait-ui"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "plait-ui", "namespace": "plait"}]

    writable = render(tmp_path, UI_WRITABLE)
    writes = {(r, v) for r, v in granted(find(writable, "ClusterRole", "plait-ui")) if v not in UI_READS}
    assert writes == {("workflowinstances", "patch"), ("workflowsignals", "create")}  # the actions, nothing more
    args = find(writable, "Deployment", "plait-ui")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--read-only" not in args and "--trace-url=https://jaeger.example.com/trace/{trace_id}" in args


def test_ui_namespaces_turn_its_cluster_role_into_roles(tmp_path: Path) -> None:
    manifests = render(tmp_path, {"ui": {"enabled": True, "namespaces": ["team-a", "team-b"]}})
    roles = [m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"] == "plait-ui"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all({verb for _, verb in granted(r)} == UI_READS for r in roles)
    assert not [m for m in manifests if m["kind"].startswith("Cluster") and m["metadata"]["name"] == "plait-ui"]
    args = find(manifests, "Deployment", "plait-ui")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args  # opens on the first namespace it may read


def pod_labels(deployment: Manifest) -> dict[str, str]:
    result: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return result


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pool_values(replicas="two"), "replicas"),
        (pool_values(queues="fast"), "queues"),
        (pool_values(concurrency=0), "concurrency"),
        (pool_values(name="Not_A_Label"), "name"),
        ({"workers": {"pools": [{"name": "p"}]}}, "module"),
        ({"operator": {"watchNamespaces": "default"}}, "watchNamespaces"),
        ({"operator": {"replicas": 2}}, "replicas"),  # not a value of this chart: one operator
        ({"operator": {"defaultTTLSeconds": "1h"}}, "defaultTTLSeconds"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "enabled"),
        ({"payloads": {"store": "my-bucket/prefix"}}, "store"),  # a URL: s3://my-bucket/prefix
        ({"payloads": {"credentials": {"accessKey": "AKIA..."}}}, "accessKey"),  # by Secret only
        ({"ui": {"readOnly": "no"}}, "readOnly"),
        ({"ui": {"namespaces": ["Team_A"]}}, "namespaces"),
        ({"ui": {"adress": "0.0.0.0"}}, "adress"),
        ({"tracing": {"sampler": "sometimes"}}, "sampler"),
        ({"logFormat": "xml"}, "logFormat"),
    ],
)
def test_wrong_values_are_rejected_by_the_schema(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    result = helm(*template_args("plait", "plait", values_file(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"workers": {"pools": [{"name": "p", "module": "a"}, {"name": "p", "module": "b"}]}}, "used twice"),
        (pool_values(autoscaling={"enabled": True}, keda={"enabled": True, "serverAddress": "x"}), "not both"),
        (pool_values(keda={"enabled": True, "serverAddress": "http://p:9090"}), "list the pool's queues"),
        (pool_values(queues=["q"], keda={"enabled": True}), "serverAddress"),
    ],
)
def test_inconsistent_pools_fail_with_a_message(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    result = helm(*template_args("plait", "plait", values_file(tmp_path, values)), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_every_value_is_documented_in_place() -> None:
    """Each key of values.yaml has a comment right above it, or sits inside a documented key."""
    undocumented = []
    documented_at: list[int] = []  # indents of the documented ancestors of the current line
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^( *)(?:- )?([A-Za-z][\w.-]*):", line)
        if match:
            indent = len(match.group(1))
            documented_at = [i for i in documented_at if i < indent]
            if previous.lstrip().startswith("#"):
                documented_at.append(indent)
            elif not documented_at and not re.match(r"^ *\w+:\s*$", line):
                undocumented.append(line.strip())
        if line.strip():
            previous = line
    assert not undocumented, f"values without a comment: {undocumented}"

    def walk(schema: dict[str, Any], path: str) -> list[str]:
        missing = [] if "description" in schema or not path else [path]
        for key, sub in (schema.get("properties") or {}).items():
            missing += walk(sub, f"{path}.{key}")
        if isinstance(schema.get("items"), dict) and schema["items"].get("properties"):
            missing += walk(schema["items"], f"{path}[]")
        return missing

    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert walk(schema, "") == []


def test_the_chart_crds_are_the_generated_ones(tmp_path: Path) -> None:
    rendered = [d for d in yaml.safe_load_all(render_text(tmp_path)) if d and d["kind"] == "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in rendered) == sorted(c["metadata"]["name"] for c in all_crds())
    for crd in rendered:
        generated = next(c for c in all_crds() if c["metadata"]["name"] == crd["metadata"]["name"])
        assert crd == generated


# -- the real API server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def third_party_crds(control_plane: ControlPlane, connection: Any) -> None:
    """ServiceMonitor, PrometheusRule and ScaledObject CRDs, so their objects can be validated."""
    from plait._kube.install import apply_crds

    documents = [d for d in yaml.safe_load_all((HERE / "third_party_crds.yaml").read_text()) if d]
    with Kube(connection) as kube:
        apply_crds(kube, documents)


@pytest.mark.parametrize(
    "values", [None, TWO_POOLS, UI, UI_WRITABLE], ids=["default", "two-pools", "ui-read-only", "ui-writable"]
)
def test_the_api_server_accepts_every_rendered_object(
    control_plane: ControlPlane,
    plait_crds: None,
    third_party_crds: None,
    namespace: str,
    tmp_path: Path,
    values: dict[str, Any] | None,
) -> None:
    # a release name of its own: cluster-scoped objects (ClusterRoles) must not clash between tests
    release = f"r{uuid.uuid4().hex[:6]}"
    rendered = render_text(tmp_path, values, release=release, namespace=namespace)
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    out = kubectl(control_plane, "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=rendered).stdout
    accepted = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(documents), out
    expected = {"CustomResourceDefinition", "Deployment", "ClusterRole", "Role", "Service", "ServiceAccount"}
    if values is TWO_POOLS:
        expected |= {"HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget"}
        expected |= {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    assert expected <= {d["kind"] for d in documents}
    if values in (UI, UI_WRITABLE):
        ui = {(kind, f"{release}-plait-ui") for kind in ("Deployment", "Service", "ServiceAccount", "ClusterRole")}
        assert ui <= {(d["kind"], d["metadata"]["name"]) for d in documents}


def test_the_api_server_rejects_a_misspelt_field_in_a_stub_validated_kind(
    control_plane: ControlPlane, third_party_crds: None, namespace: str, tmp_path: Path
) -> None:
    """The stand-in CRDs do validate: the dry run above could not pass by accepting anything."""
    manifests = render(tmp_path, TWO_POOLS, release=f"r{uuid.uuid4().hex[:6]}", namespace=namespace)
    monitor = copy.deepcopy(find(manifests, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    result = kubectl(
        control_plane,
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=yaml.safe_dump(monitor),
        check=False,
    )
    assert result.returncode != 0
    assert 'unknown field "spec.endpoints[0].scrapeTimout"' in result.stderr, result.stderr


def test_install_and_uninstall_keep_the_crds(
    control_plane: ControlPlane, plait_crds: None, kube: Kube, namespace: str
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    common = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace]
    installed = helm("install", release, str(CHART), *common, "--set", f"operator.watchNamespaces={{{namespace}}}")
    assert "STATUS: deployed" in installed.stdout
    assert f"drives workflow instances in these namespaces: {namespace}." in installed.stdout  # NOTES.txt
    assert "No worker pool is configured" in installed.stdout
    assert helm("status", release, *common).returncode == 0
    helm("uninstall", release, *common)
    for crd in all_crds():
        assert kube.get(CRDS, crd["metadata"]["name"])["metadata"]["name"] == crd["metadata"]["name"]


# -- helpers -----------------------------------------------------------------------------------------


def selectors_in(query: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Every vector selector of a PromQL query: (metric name, {label: (op, value)})."""
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: (_op(m.op), m.value) for m in node.matchers.matchers}
            found.append((node.name, matchers))

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


def _op(op: Any) -> str:
    return {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}.get(str(op).split(".")[-1], str(op))
