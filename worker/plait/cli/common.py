"""Options every cluster command shares, resolved the way kubectl resolves them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from plait._ids import instance_name
from plait._kube.client import Kube
from plait._kube.connection import Connection, load_connection
from plait.errors import PlaitError


def add_instance_argument(parser: argparse.ArgumentParser) -> None:
    """The INSTANCE positional: an object name, or any instance id a client submitted (``Order_42``),
    which becomes the object name derived from it."""
    parser.add_argument(
        "instance", metavar="INSTANCE", type=instance_name, help="WorkflowInstance name, or the instance id"
    )


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


class CommandError(PlaitError):
    """A user-facing failure of a command: printed as ``error: ...``, exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def program() -> str:
    """How the user called us: ``kubectl plait`` through kubectl's plugin mechanism, else ``plait``."""
    return "kubectl plait" if os.path.basename(sys.argv[0]).startswith("kubectl-plait") else "plait"


def add_output_option(parser: argparse.ArgumentParser, *choices: str, help: str | None = None) -> None:
    formats = choices or ("json", "yaml")
    parser.add_argument(
        "-o", "--output", choices=formats, default=None, help=help or f"print the object as {' or '.join(formats)}"
    )


@contextmanager
def session(args: argparse.Namespace) -> Iterator[tuple[Kube, str]]:
    """A client and the namespace to work in, resolved from the options like kubectl does."""
    connection = connect(args)
    with Kube(connection) as kube:
        yield kube, namespace_of(args, connection)
