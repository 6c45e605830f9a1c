"""``plait definitions [WORKFLOW]``: the workflows worker pools have published, and their versions."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from plait._core.definition import Definition
from plait._core.upgrade import UpgradeRefused, diff_steps, moves
from plait._kube.client import JSON, list_items
from plait._kube.models import INSTANCES, definition_hash_of
from plait.cli.common import CommandError, add_cluster_options, add_output_option, program, session
from plait.cli.format import age, clean, document, emit, table, unicode_ok
from plait.cli.lookup import definitions
from plait.cli.steptree import render_rows, step_rows

_LEAVES = ("task", "delay", "signal")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "definitions",
        aliases=["defs"],
        usage="%(prog)s [WORKFLOW] [--version HASH] [options]\n       %(prog)s diff WORKFLOW A B [options]",
        help="list published workflows; with WORKFLOW: its versions and its step tree; diff: compare two versions",
        description="WorkflowDefinitions are published by worker pools when they start (one object per "
        "version, named WORKFLOW-HASH). New instances run the latest version unless they pin "
        "spec.definitionHash. INSTANCES counts the instances on each version: a version no instance uses and "
        "no live worker serves is deleted by the operator after its retention period (--definition-retention, "
        "7 days), the newest of each workflow excepted. With WORKFLOW, show its versions and the steps of the latest (or --version) "
        "with their retry, timeout and queue options. `definitions diff WORKFLOW A B` compares versions A and B "
        "(hashes, prefixes of one, or latest): the steps B adds, removes and changes, and for each step of A whether "
        "an instance at that step could move to B with `plait upgrade` (and if not, why).",
    )
    parser.add_argument("workflow", metavar="WORKFLOW", nargs="?", help="a workflow name (or diff)")
    parser.add_argument(
        "versions", metavar="A B", nargs="*", help="with diff: WORKFLOW and the two versions to compare"
    )
    parser.add_argument("--version", metavar="HASH", help="with WORKFLOW: show this version (a hash prefix is enough)")
    add_cluster_options(parser)
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="list definitions in every namespace")
    add_output_option(parser, help="print the WorkflowDefinition objects as json or yaml")
    parser.set_defaults(handler=_definitions)


def definition_lines(
    items: list[JSON], instances: list[JSON], now: float, *, all_namespaces: bool = False
) -> list[str]:
    """One row per version, with the number of instances that run on it (or pin it)."""
    using: Counter[tuple[str, str]] = Counter()
    for instance in instances:
        using[(instance["metadata"].get("namespace", ""), definition_hash_of(instance) or "")] += 1
    latest: dict[tuple[str, str], str] = {}
    for item in items:  # oldest first: the last one wins
        latest[(item["metadata"].get("namespace", ""), item["spec"]["workflow"])] = item["metadata"]["name"]
    rows = []
    for item in sorted(items, key=lambda d: (d["spec"]["workflow"], d["metadata"].get("creationTimestamp", ""))):
        meta, spec = item["metadata"], item["spec"]
        steps = sum(1 for n in spec.get("nodes") or [] if n.get("kind") in _LEAVES)
        row = [
            spec["workflow"],
            spec.get("hash", "")[:12],
            spec.get("queue", ""),
            str(steps),
            str(using[(meta.get("namespace", ""), spec.get("hash", ""))]),
            age(meta.get("creationTimestamp"), now),
            "yes" if latest[(meta.get("namespace", ""), spec["workflow"])] == meta["name"] else "",
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace", ""))
        rows.append(row)
    header = ["WORKFLOW", "VERSION", "QUEUE", "STEPS", "INSTANCES", "AGE", "LATEST"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    return table(header, rows)


def _definitions(args: argparse.Namespace) -> int:
    if args.workflow == "diff" and args.versions:
        return _diff(args)
    if args.versions:
        raise CommandError(
            f"unexpected arguments {' '.join(args.versions)!r} (compare versions with `definitions diff WORKFLOW A B`)",
            code=2,
        )
    if args.version and not args.workflow:
        raise CommandError("--version needs a WORKFLOW")
    with session(args) as (kube, namespace):
        scope = None if args.all_namespaces else namespace
        items = definitions(kube, scope, args.workflow)
        instances = list_items(kube.list(INSTANCES, scope)) if items and not args.output else []
    where = "any namespace" if args.all_namespaces else f"namespace {namespace!r}"
    if args.version:
        items = [d for d in items if d["spec"].get("hash", "").startswith(args.version)]
        if not items:
            raise CommandError(f"workflow {args.workflow!r} has no version {args.version!r} in {where}")
    if args.output:
        emit(document({"apiVersion": "v1", "kind": "List", "items": [clean(d) for d in items]}, args.output))
        return 0
    if not items:
        what = f"workflow {args.workflow!r}" if args.workflow else "workflows"
        raise CommandError(
            f"no published {what} in {where}: worker pools publish their workflows when they start "
            f"(`plait worker MODULE -n NAMESPACE`); `{program()} definitions -A` lists every namespace"
        )
    now = time.time()
    emit("\n".join(definition_lines(items, instances, now, all_namespaces=args.all_namespaces)))
    if args.workflow:
        chosen = items[-1]
        print(f"\nsteps of version {chosen['spec']['hash'][:12]}:")
        emit("\n".join(render_rows(step_rows(chosen["spec"]), now, states=False, fancy=unicode_ok(sys.stdout))))
    return 0


def _diff(args: argparse.Namespace) -> int:
    if len(args.versions) != 3:
        raise CommandError("usage: definitions diff WORKFLOW A B (A and B: hashes, prefixes of one, or latest)", code=2)
    workflow, a, b = args.versions
    with session(args) as (kube, namespace):
        items = definitions(kube, namespace, workflow)
    if not items:
        raise CommandError(f"no published workflow {workflow!r} in namespace {namespace!r}")
    old, new = _version(items, workflow, a), _version(items, workflow, b)
    emit("\n".join(diff_lines(old, new)))
    return 0


def _version(items: list[JSON], workflow: str, version: str) -> Definition:
    """The published version ``version`` names (the last of ``items``, oldest first, is ``latest``)."""
    hashes = [str(d["spec"].get("hash", "")) for d in items]
    if version == "latest":
        return Definition.from_data(items[-1]["spec"])
    matches = [d for d in items if str(d["spec"].get("hash", "")).startswith(version)]
    if len(matches) != 1:
        what = f"{len(matches)} versions start with {version!r}" if matches else f"no version {version!r}"
        raise CommandError(
            f"workflow {workflow!r} has {what} (published: {', '.join(h[:12] for h in hashes)}; or latest)"
        )
    return Definition.from_data(matches[0]["spec"])


def diff_lines(old: Definition, new: Definition) -> list[str]:
    """What changed from ``old`` to ``new``, and whether an instance at each step of ``old`` could move."""
    added, removed, changed = diff_steps(old, new)
    lines = [
        f"workflow {old.name!r}: {old.hash[:12]} -> {new.hash[:12]}",
        f"added:    {', '.join(added) or '-'}",
        f"removed:  {', '.join(removed) or '-'}",
        f"changed:  {', '.join(changed) or '-'}",
        "",
    ]
    rows = []
    for step, plan in moves(old, new):
        if isinstance(plan, UpgradeRefused):
            rows.append([step, "no", plan.reason])
        else:
            rows.append([step, "yes", f"skips {', '.join(plan.skipped)}" if plan.skipped else ""])
    return lines + table(["AT STEP", "CAN MOVE", "WHY"], rows)
