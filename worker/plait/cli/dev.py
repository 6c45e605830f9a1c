"""``plait dev up|down|status|env``: a local control plane with plait (CRDs, operator, worker) on it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from plait._devenv.binaries import build_script
from plait._devenv.controlplane import free_port
from plait._devenv.dev import Component, DevEnvironment
from plait._devenv.node import NODE_NAME
from plait._kube.client import Kube
from plait._kube.connection import load_connection
from plait._kube.crds import all_crds
from plait._kube.install import apply_crds


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="run a local Kubernetes control plane with plait on it",
        description=(
            "A real kube-apiserver, etcd and kube-controller-manager on loopback ports, built from Go "
            "modules and cached. State lives in $PLAIT_DEV_DIR (default ~/.local/state/plait/dev)."
        ),
    )
    dev.add_argument("--dir", type=Path, default=None, help="environment directory (default: $PLAIT_DEV_DIR)")
    actions = dev.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start the control plane, the plait CRDs, an operator and a worker, in the background",
        description="Idempotent: what already runs is left alone. The worker serves --worker "
        "(default: examples/ of the source checkout, when there is one).",
    )
    up.add_argument(
        "--worker", metavar="MODULE", default=None, help="what the worker serves (a module, file or directory)"
    )
    up.add_argument("--no-worker", action="store_true", help="start no worker")
    up.add_argument(
        "--node",
        action="store_true",
        help="add a real node (containerd, kubelet, kube-scheduler, kube-proxy) instead of the operator "
        "and worker processes: `helm install plait charts/plait` then runs plait as pods. Linux, root; "
        "build the images first with `make images`. `plait dev down` removes it and every trace on the host",
    )
    up.set_defaults(handler=_up)
    down = actions.add_parser("down", help="stop every process `up` started; data stays for the next `up`")
    down.set_defaults(handler=_down)
    status = actions.add_parser("status", help="show the processes, their state and where they log")
    status.set_defaults(handler=_status)
    env = actions.add_parser("env", help='print shell exports for KUBECONFIG and PATH: eval "$(plait dev env)"')
    env.set_defaults(handler=_env)


def _up(args: argparse.Namespace) -> int:
    environment = DevEnvironment(args.dir)
    if args.node:
        return _up_node(environment)
    components = [
        Component("plait-operator", ["operator", "--all-namespaces", "--metrics-port", str(free_port())]),
    ]
    worker = None if args.no_worker else (args.worker or _examples())
    if worker is not None:
        components.append(
            Component(
                "plait-worker", ["worker", str(worker), "--namespace", "default", "--metrics-port", str(free_port())]
            )
        )

    def install_crds() -> None:
        with Kube(load_connection(environment.kubeconfig)) as kube:
            apply_crds(kube, all_crds())

    environment.up(components, prepare=install_crds)
    print(f"control plane ready at {environment.plane.server}")
    for name, pid, alive, log in environment.status():
        if name.startswith("plait-"):
            print(f"{name} pid={pid} {'running' if alive else 'stopped'} logs={log}")
    print(f"kubeconfig: {environment.kubeconfig}")
    print('use it with: eval "$(plait dev env)"; kubectl get wfi')
    return 0


def _up_node(environment: DevEnvironment) -> int:
    started = time.monotonic()
    environment.up([], node=True)
    print(f"control plane ready at {environment.plane.server}")
    print(f"node {NODE_NAME} Ready in {time.monotonic() - started:.0f}s (logs in {environment.node.logs})")
    print(f"kubeconfig: {environment.kubeconfig}")
    print('next: eval "$(plait dev env)"; make images; helm install plait charts/plait -f examples/helm-values.yaml')
    return 0


def _examples() -> Path | None:
    script = build_script()
    candidate = script.parent.parent / "examples" if script is not None else None
    return candidate if candidate is not None and candidate.is_dir() else None


def _down(args: argparse.Namespace) -> int:
    leftovers = DevEnvironment(args.dir).down()
    if leftovers:
        print("stopped, but the host is not back as it was:", *leftovers, sep="\n  ", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    environment = DevEnvironment(args.dir)
    rows = environment.status()
    if not rows:
        print(f"nothing running (environment: {environment.directory})")
        return 1
    for name, pid, alive, log in rows:
        print(f"{name:<26} pid={pid:<8} {'running' if alive else 'stopped':<8} logs={log}")
    print(f"kubeconfig: {environment.kubeconfig}")
    return 0 if all(alive for _, _, alive, _ in rows) else 1


def _env(args: argparse.Namespace) -> int:
    for line in DevEnvironment(args.dir).env_lines():
        print(line)
    return 0
