"""Options every cluster command shares, resolved the way kubectl resolves them."""

from __future__ import annotations

import argparse

from plait._kube.connection import Connection, load_connection


def add_cluster_options(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context to use (default: the current context)")
    if namespace:
        group.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")


def connect(args: argparse.Namespace) -> Connection:
    return load_connection(args.kubeconfig, args.context)


def namespace_of(args: argparse.Namespace, connection: Connection) -> str:
    return getattr(args, "namespace", None) or connection.namespace
