"""`helm uninstall` leaves nothing of plait behind but what docs/operations.md says stays: the
CRDs (Helm never deletes them) and, with them, the workflow objects users created."""

from __future__ import annotations

import json

from tests.node.support import NAMESPACE, RELEASE, NodeCluster, wait_for

# every kind the chart or plait's pods create, namespaced and cluster-wide
NAMESPACED = "deployments,replicasets,pods,services,endpointslices,serviceaccounts,roles,rolebindings,configmaps,secrets,leases,poddisruptionbudgets,horizontalpodautoscalers"
CLUSTER_WIDE = "clusterroles,clusterrolebindings"
KEPT_CONFIGMAPS = {"kube-root-ca.crt"}  # every namespace has it; the cluster's, not plait's


def names(cluster: NodeCluster, kinds: str, *namespace: str) -> list[str]:
    out = cluster.kubectl(*namespace, "get", kinds, "-o", "json").stdout
    return [f"{i['kind']}/{i['metadata']['name']}" for i in json.loads(out)["items"]]


def test_helm_uninstall_leaves_only_the_crds(cluster: NodeCluster, release: str) -> None:
    crds_before = [n for n in names(cluster, "crds") if n.endswith(".plait.dev")]
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")

    def plait_leftovers() -> list[str]:
        namespaced = [
            n
            for n in names(cluster, NAMESPACED, "-n", NAMESPACE)
            if n not in {f"ConfigMap/{c}" for c in KEPT_CONFIGMAPS} and n != "ServiceAccount/default"
        ]
        return namespaced + [n for n in names(cluster, CLUSTER_WIDE) if "plait" in n]

    # the pods stop after their drain and the Leases they own go with them
    try:
        wait_for(lambda: not plait_leftovers(), 90, "nothing of the release to be left", interval=2)
    except AssertionError:
        raise AssertionError(f"helm uninstall left behind: {plait_leftovers()}") from None
    assert [n for n in names(cluster, "crds") if n.endswith(".plait.dev")] == crds_before
    assert len(crds_before) == 5
