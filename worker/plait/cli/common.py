"""Options every cluster command shares, resolved the way kubectl resolves them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from plait._ids import instance_name
from plait._kube.client import JSON, Kube
from plait._kube.connection import Connection, load_connection
from plait._payloads import PayloadStore, StoreSettings, refs, resolve
from plait.errors import PayloadError, PlaitError


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
    add_payload_options(parser)


def add_payload_options(parser: argparse.ArgumentParser) -> None:
    """Where values too large for an object go: the same store on the operator, workers and client."""
    group = parser.add_argument_group("payload store (docs/payloads.md)")
    group.add_argument(
        "--payload-store",
        metavar="s3://BUCKET/PREFIX",
        help="S3-compatible store for values over --inline-payload-bytes (default: $PLAIT_PAYLOAD_STORE; none: "
        "such values are refused with PayloadTooLarge)",
    )
    group.add_argument(
        "--payload-store-endpoint",
        metavar="URL",
        help="the store's endpoint, for a server that is not AWS S3 "
        "(default: $PLAIT_PAYLOAD_STORE_ENDPOINT, then boto3's $AWS_ENDPOINT_URL)",
    )
    group.add_argument(
        "--inline-payload-bytes",
        type=int,
        metavar="BYTES",
        help="values whose JSON is over this go to the store (default: $PLAIT_INLINE_PAYLOAD_BYTES or 65536)",
    )


def payload_store(args: argparse.Namespace) -> PayloadStore | None:
    """The payload store the options and environment name, if any (``CommandError`` for a bad URL)."""
    settings = StoreSettings.from_env(
        getattr(args, "payload_store", None),
        getattr(args, "payload_store_endpoint", None),
        getattr(args, "inline_payload_bytes", None),
    )
    try:
        return settings.open()
    except ValueError as error:
        raise CommandError(str(error), 2) from None


def connect(args: argparse.Namespace) -> Connection:
    return load_connection(args.kubeconfig, args.context)


def namespace_of(args: argparse.Namespace, connection: Connection) -> str:
    return getattr(args, "namespace", None) or connection.namespace


def read_value(args: argparse.Namespace, value: Any, namespace: str) -> Any:
    """A value as its readers see it: references read from the payload store (hashes checked)."""
    if not refs.refs_in(value):
        return value
    try:
        return asyncio.run(resolve(payload_store(args), value, namespace))
    except PayloadError as error:
        raise CommandError(str(error)) from None


def write_value(args: argparse.Namespace, value: Any, namespace: str, instance: str) -> Any:
    """A value as an object of ``instance`` holds it: its large parts in the payload store, if one is configured."""
    store = payload_store(args)
    if store is None:
        return value
    try:
        return asyncio.run(store.offload(value, namespace, instance))
    except PayloadError as error:
        raise CommandError(str(error)) from None


def with_output(args: argparse.Namespace, body: JSON, namespace: str) -> JSON:
    """An instance object with ``status.output`` read from the payload store, as ``-o`` prints it."""
    status = body.get("status") or {}
    if not refs.refs_in(status.get("output")):
        return body
    return {**body, "status": {**status, "output": read_value(args, status["output"], namespace)}}


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
