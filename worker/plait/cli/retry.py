"""``plait retry|fork``: continuing a failed or cancelled instance instead of starting again.

``retry`` sets the ``plait.dev/retry`` annotation (value: the step to rerun from, or empty for the
steps the instance left unfinished), exactly what ``kubectl annotate`` would do; the operator
takes it and removes it. ``fork`` creates a new instance whose ``spec.forkFrom`` names the source
and step: the operator starts it from a copy of the source's checkpoint. See docs/recovery.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from plait._ids import instance_name
from plait._kube.client import JSON, Kube
from plait._kube.models import API_VERSION, INSTANCES, RETRY_ANNOTATION
from plait.cli.common import CommandError, add_cluster_options, add_instance_argument, program, session
from plait.cli.lookup import annotate, get_instance
from plait.cli.view import phase_of
from plait.errors import Conflict

RERUNNABLE = ("Failed", "Cancelled")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = commands.add_parser(
        "retry",
        help="rerun a failed or cancelled instance from its failed step (or --from an earlier one)",
        description="Continue a Failed or Cancelled WorkflowInstance where it stopped, keeping every result "
        "recorded before: the failed step runs again (with its retries renewed), and so do the steps "
        "that were running beside it; with --from STEP, that task step and everything after it run "
        "again on the input it had. Earlier attempts stay visible (their WorkflowTasks and the step "
        "attempt counts). Sets the plait.dev/retry annotation, like "
        "`kubectl annotate wfi INSTANCE plait.dev/retry=STEP`; the operator removes it once taken, or "
        "says why not in the Retried condition and a RetryRefused Event.",
        epilog="examples:\n  plait retry order-1001\n  plait retry order-1001 --from charge\n"
        "  plait retry -l team=payments        # every Failed or Cancelled instance matching",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retry.add_argument(
        "instance", metavar="INSTANCE", nargs="?", type=instance_name, help="WorkflowInstance name, or the instance id"
    )
    retry.add_argument(
        "-l", "--selector", metavar="SELECTOR", help="retry every Failed or Cancelled instance with these labels"
    )
    retry.add_argument(
        "--from", dest="step", metavar="STEP", help="rerun from this task step (default: the failed one)"
    )
    retry.add_argument(
        "--wait", action="store_true", help="wait until the operator took the request; exit 1 if it refused it"
    )
    retry.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="with --wait (default 60)")
    add_cluster_options(retry)
    retry.set_defaults(handler=_retry)

    fork = commands.add_parser(
        "fork",
        help="start a new instance from a copy of another's checkpoint",
        description="Create WorkflowInstance NEW that goes on from a copy of INSTANCE's checkpoint: the steps "
        "INSTANCE left unfinished run again in NEW (or, with --from STEP, that task step and everything "
        "after it), on the same definition version, and the results recorded before are kept. INSTANCE "
        "is not changed; it may be in any phase once started. NEW has spec.forkFrom naming the source "
        "and step, which the operator resolves when NEW starts.",
        epilog="example:\n  plait fork order-1001 --as order-1001-replay --from charge",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_instance_argument(fork)
    fork.add_argument(
        "--as", dest="new", metavar="NEW", required=True, type=instance_name, help="the new instance's name"
    )
    fork.add_argument(
        "--from", dest="step", metavar="STEP", help="rerun from this task step (default: the unfinished ones)"
    )
    add_cluster_options(fork)
    fork.set_defaults(handler=_fork)


def _retry(args: argparse.Namespace) -> int:
    if (args.instance is None) == (args.selector is None):
        raise CommandError("name one INSTANCE, or select many with -l SELECTOR (not both)", code=2)
    with session(args) as (kube, namespace):
        if args.instance is not None:
            instance = get_instance(kube, namespace, args.instance)
            phase = phase_of(instance)
            if phase not in RERUNNABLE:
                raise CommandError(f"{args.instance} is {phase}: only a Failed or Cancelled instance can be retried")
            if not _started(instance):
                message = (instance.get("status") or {}).get("message") or "no reason given"
                raise CommandError(f"{args.instance} never started ({message}): nothing to rerun; submit it again")
            _request(kube, namespace, args.instance, args.step)
            if args.wait:
                _await_answer(kube, namespace, instance, args.timeout)
            print(f"follow it: {program()} get {args.instance} --watch", file=sys.stderr)
            return 0
        matching = kube.list(INSTANCES, namespace, label_selector=args.selector).get("items") or []
        chosen = [item for item in matching if phase_of(item) in RERUNNABLE and _started(item)]
        if not chosen:
            print(
                f"nothing to retry: of the {len(matching)} WorkflowInstance(s) matching {args.selector!r} in "
                f"{namespace!r}, none is a Failed or Cancelled instance that had started",
                file=sys.stderr,
            )
            return 0
        chosen.sort(key=lambda body: str(body["metadata"]["name"]))
        for item in chosen:
            _request(kube, namespace, item["metadata"]["name"], args.step)
        refused = []
        for item in chosen if args.wait else []:
            try:
                _await_answer(kube, namespace, item, args.timeout)
            except CommandError as error:
                print(f"error: {error}", file=sys.stderr)
                refused.append(item)
    return 1 if refused else 0


def _started(instance: JSON) -> bool:
    return bool((instance.get("status") or {}).get("checkpoint"))


def _request(kube: Kube, namespace: str, name: str, step: str | None) -> None:
    annotate(kube, namespace, name, RETRY_ANNOTATION, step or "")
    what = f"from step {step}" if step else "from its failed step"
    print(f"workflowinstance.plait.dev/{name} annotated {RETRY_ANNOTATION}={step or ''!r} (rerun {what})")


def _await_answer(kube: Kube, namespace: str, before: JSON, timeout: float) -> None:
    """Wait until the operator took ``plait.dev/retry`` off the instance (as it was ``before`` the
    request); raise if it refused the rerun.

    A refusal is written (condition ``Retried=False``) before the annotation goes, a rerun's
    checkpoint (with a new ``startedAt``) right after it: an instance whose start did not move a
    moment later was not rerun.
    """
    name = before["metadata"]["name"]
    started = (before.get("status") or {}).get("startedAt")
    deadline = time.monotonic() + timeout
    instance = get_instance(kube, namespace, name)
    while RETRY_ANNOTATION in (instance["metadata"].get("annotations") or {}):
        if time.monotonic() > deadline:
            raise CommandError(f"the operator did not take the retry of {name} within {timeout:g}s; is it running?")
        time.sleep(0.2)
        instance = get_instance(kube, namespace, name)

    def rerun(body: JSON) -> bool:
        return bool((body.get("status") or {}).get("startedAt") != started)

    settle = time.monotonic() + 1.5
    while not rerun(instance) and time.monotonic() < settle:
        time.sleep(0.1)
        instance = get_instance(kube, namespace, name)
    conditions = (instance.get("status") or {}).get("conditions") or []
    answer = next((c for c in conditions if c.get("type") == "Retried"), None) or {}
    if not rerun(instance):
        raise CommandError(f"{name}: {answer.get('message') or 'the operator removed the request without a rerun'}")
    print(f"{name} is {phase_of(instance)}: {answer.get('message') or 'rerunning'}")


def _fork(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        source = get_instance(kube, namespace, args.instance)
        if not _started(source):
            raise CommandError(f"{args.instance} has not started ({phase_of(source)}): there is no checkpoint to fork")
        try:
            kube.create(INSTANCES, fork_body(source, args.new, args.step), namespace)
        except Conflict:
            raise CommandError(
                f"WorkflowInstance {args.new!r} already exists in namespace {namespace!r}; choose another --as"
            ) from None
    print(f"workflowinstance.plait.dev/{args.new} created (forked from {args.instance})")
    print(f"follow it: {program()} get {args.new} --watch", file=sys.stderr)
    return 0


def fork_body(source: JSON, name: str, step: str | None) -> JSON:
    """A new instance of ``source``'s workflow, version and input, starting from its checkpoint."""
    spec, status = source.get("spec") or {}, source.get("status") or {}
    fork_from: JSON = {"instance": source["metadata"]["name"]}
    if step:
        fork_from["step"] = step
    new_spec: JSON = {"workflow": spec["workflow"], "input": spec.get("input"), "forkFrom": fork_from}
    if status.get("definitionHash"):
        new_spec["definitionHash"] = status["definitionHash"]
    if spec.get("ttlSecondsAfterFinished") is not None:
        new_spec["ttlSecondsAfterFinished"] = spec["ttlSecondsAfterFinished"]
    return {"apiVersion": API_VERSION, "kind": "WorkflowInstance", "metadata": {"name": name}, "spec": new_spec}
