"""``plait upgrade``: move running instances to another version of their workflow, in place.

Sets the ``plait.dev/upgrade`` annotation (value: a definition hash, a prefix of one, or
``latest``), exactly what ``kubectl annotate`` would do. The operator takes it at the instance's
next step boundary, answers in the ``Upgraded`` condition (``Upgraded``, ``UpToDate``,
``UpgradeRefused``; ``UpgradePending`` while it waits for a boundary) and an Event, and removes
it. ``--wait`` reports that answer per instance. See docs/recovery.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from plait._ids import instance_name
from plait._kube.client import JSON, Kube
from plait._kube.models import INSTANCES, UPGRADE_ANNOTATION
from plait.cli.common import CommandError, add_cluster_options, program, session
from plait.cli.lookup import annotate, definitions, get_instance
from plait.cli.view import phase_of

FINISHED = ("Succeeded", "Failed", "Cancelled")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    upgrade = commands.add_parser(
        "upgrade",
        help="move a running, paused or waiting instance to another version of its workflow",
        description="Move a WorkflowInstance that has not finished to another published version of its "
        "workflow, at its next step boundary, keeping every result it recorded: the steps it finished "
        "stay finished, the ones running go on, and it continues on the new graph. The operator refuses "
        "when the checkpoint does not map (a step the instance is at is gone or of another kind, or a "
        "step it finished would run again) and says which step in the Upgraded condition; the instance "
        "then runs on unchanged. `plait definitions diff WORKFLOW A B` shows beforehand which steps "
        "could move. Sets the plait.dev/upgrade annotation, like "
        "`kubectl annotate wfi INSTANCE plait.dev/upgrade=HASH`.",
        epilog="examples:\n  plait upgrade order-1001 --to latest --wait\n  plait upgrade order-1001 --to 3f2a9c\n"
        "  plait upgrade -l team=payments --to latest   # every unfinished instance matching",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upgrade.add_argument(
        "instance", metavar="INSTANCE", nargs="?", type=instance_name, help="WorkflowInstance name, or the instance id"
    )
    upgrade.add_argument(
        "-l", "--selector", metavar="SELECTOR", help="upgrade every unfinished instance with these labels"
    )
    upgrade.add_argument(
        "--to",
        dest="version",
        metavar="HASH|latest",
        required=True,
        help="the version: a definition hash, a prefix of exactly one, or latest (the newest published)",
    )
    upgrade.add_argument(
        "--wait", action="store_true", help="wait for the operator's answer; exit 1 if it refused any upgrade"
    )
    upgrade.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="with --wait (default 60)")
    add_cluster_options(upgrade)
    upgrade.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    if (args.instance is None) == (args.selector is None):
        raise CommandError("name one INSTANCE, or select many with -l SELECTOR (not both)", code=2)
    with session(args) as (kube, namespace):
        if args.instance is not None:
            chosen = [get_instance(kube, namespace, args.instance)]
            phase = phase_of(chosen[0])
            if phase in FINISHED:
                raise CommandError(
                    f"{args.instance} is {phase}: only a running, paused or waiting instance can be upgraded"
                    + (f" (`{program()} retry` reruns a {phase} one)" if phase != "Succeeded" else "")
                )
        else:
            matching = kube.list(INSTANCES, namespace, label_selector=args.selector).get("items") or []
            chosen = sorted(
                (i for i in matching if phase_of(i) not in FINISHED), key=lambda i: str(i["metadata"]["name"])
            )
            if not chosen:
                print(
                    f"nothing to upgrade: of the {len(matching)} WorkflowInstance(s) matching {args.selector!r} in "
                    f"{namespace!r}, none is unfinished",
                    file=sys.stderr,
                )
                return 0
        for workflow in sorted({str((i.get("spec") or {}).get("workflow")) for i in chosen}):
            check_version(kube, namespace, workflow, args.version)
        for instance in chosen:
            _request(kube, namespace, instance["metadata"]["name"], args.version)
        if not args.wait:
            if args.instance is not None:
                print(f"follow it: {program()} get {args.instance} --watch", file=sys.stderr)
            return 0
        refused = 0
        for instance in chosen:
            try:
                print(await_answer(kube, namespace, instance["metadata"]["name"], args.timeout))
            except CommandError as error:
                print(f"error: {error}", file=sys.stderr)
                refused += 1
    return 1 if refused else 0


def check_version(kube: Kube, namespace: str, workflow: str, version: str) -> None:
    """Fail early when ``version`` names no published version of ``workflow`` (or several)."""
    if version == "latest":
        return
    hashes = [str((d.get("spec") or {}).get("hash", "")) for d in definitions(kube, namespace, workflow)]
    matches = [h for h in hashes if h.startswith(version)]
    if len(matches) > 1:
        raise CommandError(
            f"{version!r} is the start of {len(matches)} versions of {workflow!r}: give more of the hash"
        )
    if not matches:
        published = ", ".join(h[:12] for h in hashes) or "none"
        raise CommandError(
            f"workflow {workflow!r} has no published version {version!r} in namespace {namespace!r} "
            f"(published: {published}; `{program()} definitions {workflow}` lists them)"
        )


def _request(kube: Kube, namespace: str, name: str, version: str) -> None:
    annotate(kube, namespace, name, UPGRADE_ANNOTATION, version)
    print(f"workflowinstance.plait.dev/{name} annotated {UPGRADE_ANNOTATION}={version!r}")


def await_answer(kube: Kube, namespace: str, name: str, timeout: float) -> str:
    """The operator's answer once it took ``plait.dev/upgrade`` off ``name``; raises if it refused.

    The answer (the ``Upgraded`` condition) is written before the annotation goes.
    """
    deadline = time.monotonic() + timeout
    instance = get_instance(kube, namespace, name)
    while UPGRADE_ANNOTATION in (instance["metadata"].get("annotations") or {}):
        if time.monotonic() > deadline:
            waiting = _answer(instance)
            why = f": {waiting.get('message')}" if waiting.get("reason") == "UpgradePending" else "; is it running?"
            raise CommandError(f"the operator did not upgrade {name} within {timeout:g}s{why}")
        time.sleep(0.2)
        instance = get_instance(kube, namespace, name)
    answer = _answer(instance)
    if answer.get("status") != "True":
        raise CommandError(f"{name}: {answer.get('message') or 'the operator removed the request without an answer'}")
    return f"{name} {answer.get('reason')}: {answer.get('message')}"


def _answer(instance: JSON) -> JSON:
    conditions = (instance.get("status") or {}).get("conditions") or []
    found: JSON = next((c for c in conditions if c.get("type") == "Upgraded"), {})
    return found
