"""Least privilege, for real: the chart's ServiceAccounts and Roles are applied to the test API
server, a real operator and a real worker run a workflow end to end each with a token of its own
chart identity, and both identities are refused what they must not do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait._devenv.controlplane import ControlPlane, free_port
from plait._kube.client import CORE_EVENTS, LEASES, NAMESPACES, Kube, Resource
from plait._kube.models import (
    CANCEL_ANNOTATION,
    DEFINITIONS,
    HELD_LABEL,
    INSTANCES,
    PAUSE_ANNOTATION,
    SCHEDULES,
    SIGNALS,
    TASKS,
)
from plait.errors import ClusterError, Forbidden, NotFound
from tests.k8s.support import PlaitProcess, instance_body, marks, send_signal, submit, wait_for, wait_phase
from tests.ops.support import (
    RBAC_KINDS,
    Manifest,
    applied,
    container_args,
    find,
    render,
    service_account_token,
    token_kubeconfig,
    with_option,
)
from tests.ui.support import answering

pytestmark = pytest.mark.cluster

SECRETS = Resource("", "v1", "secrets", "Secret")
PODS = Resource("", "v1", "pods", "Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
INSTANCE_STATUS = "status"
REFUSALS_IN_LOGS = ("Forbidden", " 403", "Not enough permissions", "forbidden")


@dataclass
class Release:
    name: str
    namespace: str
    manifests: list[Manifest]

    @property
    def operator_account(self) -> str:
        return f"{self.name}-plait-operator"

    @property
    def worker_account(self) -> str:
        return f"{self.name}-plait-worker"


def chart_release(tmp_path: Path, namespace: str, watch: list[str]) -> Release:
    name = f"r{uuid.uuid4().hex[:6]}"  # cluster-scoped objects are named after it: unique per test
    values = {
        "operator": {"watchNamespaces": watch},
        "workers": {"pools": [{"name": "flows", "module": "tests.k8s.flows"}]},
    }
    return Release(name, namespace, render(tmp_path, values, release=name, namespace=namespace))


@pytest.fixture
def namespaced(control_plane: ControlPlane, plait_crds: None, namespace: str, tmp_path: Path) -> Iterator[Release]:
    """The chart's RBAC with operator.watchNamespaces=[namespace], applied for real."""
    release = chart_release(tmp_path, namespace, [namespace])
    with applied(control_plane, [m for m in release.manifests if m["kind"] in RBAC_KINDS]):
        yield release


@pytest.fixture
def other_namespace(kube: Kube) -> Iterator[str]:
    name = f"elsewhere-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(NAMESPACES, name)


def start_as(
    release: Release, kind: str, name: str, kubeconfig: Path, log: Path, extra_env: dict[str, str] | None = None
) -> PlaitProcess:
    """Run the container of the chart's Deployment ``name`` as a local process, with its args."""
    pod_env = {"POD_NAME": f"{name}-0", "POD_NAMESPACE": release.namespace}
    args = container_args(find(release.manifests, "Deployment", name), pod_env)
    args = with_option(args, "--metrics-port", str(free_port()))
    env = {**pod_env, "KUBECONFIG": str(kubeconfig), **(extra_env or {})}
    process = PlaitProcess(args, log, env=env).start()
    assert args[0] == kind
    return process


def refused(call: Callable[[], Any]) -> bool:
    """True when RBAC refuses the request (403); any other answer means it was authorised."""
    try:
        call()
    except Forbidden:
        return True
    except ClusterError:  # 404, 409, 422: authorised, then failed for another reason
        return False
    return False


def test_operator_and_worker_run_workflows_with_only_their_chart_identities(
    control_plane: ControlPlane, kube: Kube, namespaced: Release, tmp_path: Path
) -> None:
    ns = namespaced.namespace
    operator_config = token_kubeconfig(
        control_plane,
        tmp_path / "operator.kubeconfig",
        service_account_token(kube, ns, namespaced.operator_account),
        ns,
    )
    worker_config = token_kubeconfig(
        control_plane, tmp_path / "worker.kubeconfig", service_account_token(kube, ns, namespaced.worker_account), ns
    )
    marks_dir = tmp_path / "marks"
    operator = start_as(
        namespaced, "operator", f"{namespaced.name}-plait-operator", operator_config, tmp_path / "op.log"
    )
    worker = start_as(
        namespaced,
        "worker",
        f"{namespaced.name}-plait-worker-flows",
        worker_config,
        tmp_path / "worker.log",
        {"PLAIT_TEST_MARKS": str(marks_dir)},
    )
    try:
        submit(kube, ns, "seq", "sequence", 1)
        submit(kube, ns, "approval", "signal", 1)
        submit(kube, ns, "doomed", "exhausted", 1)
        submit(kube, ns, "ephemeral", "sequence", 2, ttlSecondsAfterFinished=0)
        kube.create(INSTANCES, instance_body("stopped", "slow", 30), ns)
        submit(kube, ns, "limited-1", "limited", 1)  # flow control: one of the two tasks is held
        submit(kube, ns, "limited-2", "limited", 2)

        assert wait_phase(kube, ns, "seq", "Succeeded", "Failed")["status"]["output"] == 5
        wait_phase(kube, ns, "approval", "AwaitingSignal")
        send_signal(kube, ns, "approval", "approve", {"by": "ops"})
        assert wait_phase(kube, ns, "approval", "Succeeded", "Failed")["status"]["output"] == "approved by ops"
        assert wait_phase(kube, ns, "doomed", "Failed", "Succeeded")["status"]["phase"] == "Failed"
        assert wait_phase(kube, ns, "limited-1", "Succeeded", "Failed")["status"]["output"] == 2
        assert wait_phase(kube, ns, "limited-2", "Succeeded", "Failed")["status"]["output"] == 3

        wait_for(lambda: any(m.startswith("nap-start") for m in marks(marks_dir, "stopped")), what="nap to start")
        kube.patch(INSTANCES, "stopped", {"metadata": {"annotations": {CANCEL_ANNOTATION: "rbac test"}}}, ns)
        assert wait_phase(kube, ns, "stopped", "Cancelled")["status"]["phase"] == "Cancelled"

        def deleted() -> bool:  # the operator deleted it after its TTL
            try:
                kube.get(INSTANCES, "ephemeral", ns)
            except NotFound:
                return True
            return False

        wait_for(deleted, timeout=30, what="the finished instance to be deleted after its TTL")
    finally:
        operator.terminate()
        worker.terminate()

    # what each identity wrote is there: the Lease, Events, signal and task status, definitions
    lease = kube.get(LEASES, namespaced.operator_account, ns)
    assert lease["spec"]["holderIdentity"] == f"{namespaced.name}-plait-operator-0"
    reasons = {e["reason"] for e in kube.list(CORE_EVENTS, ns)["items"]}
    assert {"Succeeded", "Failed", "Cancelled"} <= reasons
    (signal,) = kube.list(SIGNALS, ns)["items"]
    assert signal["status"]["phase"] == "Delivered"
    assert {d["spec"]["workflow"] for d in kube.list(DEFINITIONS, ns)["items"]} >= {"sequence", "signal", "slow"}
    for process in (operator, worker):
        refusals = [line for line in process.output().splitlines() if any(word in line for word in REFUSALS_IN_LOGS)]
        assert not refusals, "\n".join(refusals[:20])


def test_the_worker_identity_is_refused_what_it_must_not_do(
    namespaced: Release, impersonate: Callable[[str, str], Kube], other_namespace: str
) -> None:
    ns = namespaced.namespace
    worker = impersonate(ns, namespaced.worker_account)
    patch = {"metadata": {"labels": {"touched": "yes"}}}
    # what it does: find, claim and report tasks of its namespace; publish definitions there
    assert not refused(lambda: worker.list(TASKS, ns))
    assert not refused(lambda: worker.get(TASKS, "t", ns))
    assert not refused(lambda: worker.patch(TASKS, "t", {"status": {"phase": "Running"}}, ns, subresource="status"))
    assert not refused(lambda: worker.patch(DEFINITIONS, "d", {"spec": {}}, ns))
    assert not refused(lambda: worker.list(LEASES, ns))  # its peers
    # never instances
    assert refused(lambda: worker.get(INSTANCES, "i", ns))
    assert refused(lambda: worker.create(INSTANCES, instance_body("i", "sequence", 1), ns))
    assert refused(lambda: worker.patch(INSTANCES, "i", patch, ns))
    assert refused(lambda: worker.patch(INSTANCES, "i", {"status": {"phase": "Succeeded"}}, ns, subresource="status"))
    assert refused(lambda: worker.delete(INSTANCES, "i", ns))
    # tasks: no creating, deleting or changing anything but their status
    assert refused(lambda: worker.delete(TASKS, "t", ns))
    assert refused(lambda: worker.patch(TASKS, "t", patch, ns))
    assert refused(lambda: worker.create(TASKS, {"metadata": {"name": "t"}}, ns))
    # signals, secrets, other namespaces
    assert refused(lambda: worker.list(SIGNALS, ns))
    assert refused(lambda: worker.get(SECRETS, "s", ns))
    assert refused(lambda: worker.list(TASKS, other_namespace))
    assert refused(lambda: worker.patch(TASKS, "t", {"status": {}}, other_namespace, subresource="status"))
    assert refused(lambda: worker.patch(DEFINITIONS, "d", {"spec": {}}, other_namespace))
    assert refused(lambda: worker.list(TASKS))  # every namespace


def test_the_operator_identity_is_refused_what_it_must_not_do(
    namespaced: Release, impersonate: Callable[[str, str], Kube], other_namespace: str
) -> None:
    ns = namespaced.namespace
    operator = impersonate(ns, namespaced.operator_account)
    # what it does, in the namespaces it watches
    assert not refused(lambda: operator.list(INSTANCES, ns))
    assert not refused(lambda: operator.patch(INSTANCES, "i", {"metadata": {"finalizers": []}}, ns))
    assert not refused(lambda: operator.patch(INSTANCES, "i", {"status": {}}, ns, subresource="status"))
    assert not refused(lambda: operator.delete(INSTANCES, "i", ns))
    assert not refused(lambda: operator.create(TASKS, {"metadata": {"name": "t"}}, ns, dry_run=True))
    assert not refused(lambda: operator.patch(SIGNALS, "s", {"status": {}}, ns, subresource="status"))
    assert not refused(lambda: operator.get(LEASES, namespaced.operator_account, ns))
    # schedules: watch them, write their status and finalizer, create their runs
    assert not refused(lambda: operator.list(SCHEDULES, ns))
    assert not refused(lambda: operator.patch(SCHEDULES, "s", {"status": {}}, ns, subresource="status"))
    assert not refused(lambda: operator.patch(SCHEDULES, "s", {"metadata": {"finalizers": []}}, ns))
    assert not refused(lambda: operator.create(INSTANCES, instance_body("run", "sequence", 1), ns, dry_run=True))
    # version retention: marks an unused definition, deletes it later, sees which versions workers serve
    assert not refused(lambda: operator.patch(DEFINITIONS, "d", {"metadata": {"annotations": {}}}, ns))
    assert not refused(lambda: operator.delete(DEFINITIONS, "d", ns))
    assert not refused(lambda: operator.list(LEASES, ns))
    # not: secrets, pods, config maps, or creating definitions (the workers publish them)
    assert refused(lambda: operator.get(SECRETS, "s", ns))
    assert refused(lambda: operator.list(SECRETS, ns))
    assert refused(lambda: operator.list(PODS, ns))
    assert refused(lambda: operator.patch(CONFIGMAPS, "c", {"data": {}}, ns))
    assert refused(lambda: operator.create(DEFINITIONS, {"metadata": {"name": "d"}}, ns, dry_run=True))
    # tasks are never deleted by the operator (garbage collection deletes them); it patches only their
    # labels and annotations (flow control lets a held task through), their spec being immutable
    assert refused(lambda: operator.delete(TASKS, "t", ns))
    assert not refused(lambda: operator.patch(TASKS, "t", {"metadata": {"labels": {HELD_LABEL: None}}}, ns))
    # signals are the user's: the operator only writes their status
    assert refused(lambda: operator.patch(SIGNALS, "s", {"spec": {}}, ns))
    # only its own Lease
    assert refused(lambda: operator.get(LEASES, "someone-else", ns))
    # with watchNamespaces set, nothing outside them
    assert refused(lambda: operator.list(INSTANCES, other_namespace))
    assert refused(lambda: operator.list(INSTANCES))
    assert refused(lambda: operator.create(TASKS, {"metadata": {"name": "t"}}, other_namespace, dry_run=True))


def test_watching_every_namespace_grants_cluster_wide_the_same_verbs(
    control_plane: ControlPlane,
    plait_crds: None,
    namespace: str,
    other_namespace: str,
    impersonate: Callable[[str, str], Kube],
    tmp_path: Path,
) -> None:
    release = chart_release(tmp_path, namespace, [])
    with applied(control_plane, [m for m in release.manifests if m["kind"] in RBAC_KINDS]):
        operator = impersonate(namespace, release.operator_account)
        assert not refused(lambda: operator.list(INSTANCES))
        assert not refused(lambda: operator.list(TASKS, other_namespace))
        assert not refused(
            lambda: operator.patch(INSTANCES, "i", {"status": {}}, other_namespace, subresource="status")
        )
        assert refused(lambda: operator.get(SECRETS, "s", other_namespace))
        assert refused(lambda: operator.delete(TASKS, "t", other_namespace))
        # the workers stay confined to the release namespace either way
        worker = impersonate(namespace, release.worker_account)
        assert not refused(lambda: worker.list(TASKS, namespace))
        assert refused(lambda: worker.list(TASKS, other_namespace))
        assert refused(lambda: worker.patch(INSTANCES, "i", {"status": {}}, namespace, subresource="status"))


UI_PAGES = ("/instances", "/instances/{ns}/ui-1", "/definitions", "/signals", "/schedules", "/queues")


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
def test_the_ui_reads_every_page_with_its_chart_identity_and_writes_only_when_allowed(
    control_plane: ControlPlane, kube: Kube, plait_crds: None, namespace: str, tmp_path: Path, read_only: bool
) -> None:
    """`plait ui` as the chart runs it, with a token of the chart's UI ServiceAccount: every page
    reads what it shows, and an action is written only when ui.readOnly=false granted the verb (the
    UI runs here without --read-only, so RBAC alone decides)."""
    name = f"r{uuid.uuid4().hex[:6]}"
    manifests = render(tmp_path, {"ui": {"enabled": True, "readOnly": read_only}}, release=name, namespace=namespace)
    kube.create(INSTANCES, instance_body("ui-1", "sequence", 1), namespace)
    with applied(control_plane, [m for m in manifests if m["kind"] in RBAC_KINDS]):
        token = service_account_token(kube, namespace, f"{name}-plait-ui")
        config = token_kubeconfig(control_plane, tmp_path / "ui.kubeconfig", token, namespace)
        port = free_port()
        args = container_args(find(manifests, "Deployment", f"{name}-plait-ui"), {})
        args = with_option(with_option(args, "--address", "127.0.0.1"), "--port", str(port))
        assert ("--read-only" in args) == read_only
        args = [a for a in args if a != "--read-only"]
        process = PlaitProcess(args, tmp_path / "ui.log", env={"KUBECONFIG": str(config)}).start()
        try:
            base = answering(process, port).url("")
            for path in UI_PAGES:
                page = httpx.get(f"{base}{path.format(ns=namespace)}?ns={namespace}", timeout=10)
                assert page.status_code == 200, page.text
                assert "cannot read" not in page.text, f"{path}: {page.text}"  # a feed RBAC refused
            assert 'data-instance="ui-1"' in httpx.get(f"{base}/instances?ns={namespace}", timeout=10).text
            instance_page = httpx.get(f"{base}/instances/{namespace}/ui-1", timeout=10).text
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', instance_page)
            assert csrf is not None
            pause = httpx.post(f"{base}/instances/{namespace}/ui-1/pause", data={"csrf": csrf[1]}, timeout=10)
            signal = httpx.post(
                f"{base}/instances/{namespace}/ui-1/signal",
                data={"csrf": csrf[1], "signal": "go", "payload": "{}"},
                timeout=10,
            )
        finally:
            process.terminate()
    annotations = kube.get(INSTANCES, "ui-1", namespace)["metadata"].get("annotations") or {}
    signals = kube.list(SIGNALS, namespace)["items"]
    if read_only:
        for answer in (pause, signal):
            assert answer.status_code == 403 and "refused by the API server (RBAC)" in answer.text, answer.text
        assert PAUSE_ANNOTATION not in annotations and not signals
    else:
        assert pause.status_code == 200 and signal.status_code == 200, pause.text + signal.text
        assert PAUSE_ANNOTATION in annotations
        assert [s["spec"]["name"] for s in signals] == ["go"]
