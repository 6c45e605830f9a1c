"""``plait signal|pause|resume|cancel``: acting on a running instance.

A signal is a new ``WorkflowSignal`` object; pause, resume and cancel set or remove the
``plait.dev/pause`` and ``plait.dev/cancel`` annotations, exactly what ``kubectl annotate`` would
do. The operator acts on them at the next task boundary.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from plait._client.objects import signal_body
from plait._kube.client import JSON, Kube
from plait._kube.models import CANCEL_ANNOTATION, FINISHED_PHASES, PAUSE_ANNOTATION, SIGNALS
from plait.cli.common import (
    CommandError,
    add_cluster_options,
    add_instance_argument,
    add_output_option,
    session,
    write_value,
)
from plait.cli.follow import follow, timed_out
from plait.cli.format import clean, document, emit
from plait.cli.inputs import parse_json
from plait.cli.lookup import annotate, definition_for, get_instance
from plait.cli.view import phase_of
from plait.errors import Conflict


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    signal = commands.add_parser(
        "signal",
        help="send a named signal with a JSON payload to an instance",
        description="Create a WorkflowSignal for INSTANCE. The payload becomes the input of the step after "
        "the workflow's wait_for_signal(NAME). Signals are kept first-in first-out per name: one sent "
        "before the workflow waits is consumed when it gets there.",
        epilog='example:\n  plait signal order-a-1001 approval \'{"approved": true, "by": "alice"}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_instance_argument(signal)
    signal.add_argument("name", metavar="NAME", help="signal name, as in wait_for_signal(NAME)")
    signal.add_argument(
        "payload",
        metavar="PAYLOAD_JSON",
        nargs="?",
        default=None,
        help="a JSON value ('-' stdin, '@file'); default null",
    )
    signal.add_argument(
        "--signal-name",
        metavar="OBJECT_NAME",
        help="name of the WorkflowSignal object (default: generated); sending the same name twice is refused",
    )
    signal.add_argument("--force", action="store_true", help="send even if the workflow never waits for NAME")
    add_cluster_options(signal)
    add_output_option(signal, help="print the created WorkflowSignal as json or yaml")
    signal.set_defaults(handler=_signal)

    for verb, key, wanted, text in (
        ("pause", PAUSE_ANNOTATION, "Paused", "pause an instance at the next task boundary (running tasks finish first)"),
        ("cancel", CANCEL_ANNOTATION, "Cancelled", "cancel an instance: no new steps start and running tasks are asked to stop"),
    ):  # fmt: skip
        parser = commands.add_parser(
            verb,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Sets the plait.dev/{verb} annotation "
            f"(its value is the reason), like `kubectl annotate wfi INSTANCE plait.dev/{verb}=REASON`."
            + (" Undo it with `plait resume`." if verb == "pause" else " Cancelling cannot be undone."),
        )
        add_instance_argument(parser)
        parser.add_argument("--reason", default="", help="why (shown in status, conditions and Events)")
        parser.add_argument("--wait", action="store_true", help=f"wait until the instance is {wanted}")
        parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="with --wait (default 60)")
        add_cluster_options(parser)
        parser.set_defaults(handler=partial(_request, key=key, wanted=wanted, verb=verb))

    resume = commands.add_parser(
        "resume",
        help="resume a paused instance",
        description="Remove the plait.dev/pause annotation; the instance goes on where it stopped.",
    )
    add_instance_argument(resume)
    add_cluster_options(resume)
    resume.set_defaults(handler=_resume)


def _waited_signals(kube: Kube, namespace: str, instance: JSON) -> list[str] | None:
    definition = definition_for(kube, namespace, instance)
    if definition is None:
        return None
    nodes = (definition.get("spec") or {}).get("nodes") or []
    return sorted({str(n.get("signal")) for n in nodes if n.get("kind") == "signal"})


def _signal(args: argparse.Namespace) -> int:
    payload = parse_json(args.payload, "PAYLOAD_JSON") if args.payload is not None else None
    with session(args) as (kube, namespace):
        instance = get_instance(kube, namespace, args.instance)
        phase = phase_of(instance)
        if phase in FINISHED_PHASES:
            raise CommandError(f"{args.instance!r} already finished ({phase}): no step can take signal {args.name!r}")
        waited = _waited_signals(kube, namespace, instance)
        if waited is not None and args.name not in waited and not args.force:
            workflow = (instance.get("spec") or {}).get("workflow")
            raise CommandError(
                f"workflow {workflow!r} never waits for a signal named {args.name!r} "
                f"(it waits for: {', '.join(waited) or 'no signal at all'}); the operator would reject it. "
                "Check the name, or send it anyway with --force"
            )
        try:
            stored = write_value(args, payload, namespace, args.instance)
            created = kube.create(SIGNALS, signal_body(args.instance, args.name, stored, args.signal_name), namespace)
        except Conflict:
            raise CommandError(
                f"a WorkflowSignal named {args.signal_name!r} already exists in {namespace!r}: it was sent before"
            ) from None
    if args.output:
        emit(document(clean(created), args.output))
        return 0
    when = "it waits for it now" if phase == "AwaitingSignal" else f"it is {phase}; the signal waits for it"
    emit(
        f"workflowsignal.plait.dev/{created['metadata']['name']} created: signal {args.name!r} for {args.instance} ({when})"
    )
    return 0


def _request(args: argparse.Namespace, key: str, wanted: str, verb: str) -> int:
    with session(args) as (kube, namespace):
        instance = get_instance(kube, namespace, args.instance)
        phase = phase_of(instance)
        if phase in FINISHED_PHASES:
            print(f"{args.instance} already finished ({phase}): nothing to {verb}", file=sys.stderr)
            return 0
        annotate(kube, namespace, args.instance, key, args.reason)
        emit(f"workflowinstance.plait.dev/{args.instance} annotated {key}={args.reason!r}")
        if not args.wait:
            return 0
        outcome = follow(kube, namespace, args.instance, None, until=[wanted], timeout=args.timeout)
        if not outcome.reached:
            raise timed_out(args.instance, outcome, wanted)
        emit(f"{args.instance} is {phase_of(outcome.instance)}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        instance = get_instance(kube, namespace, args.instance)
        if PAUSE_ANNOTATION not in (instance["metadata"].get("annotations") or {}):
            print(f"{args.instance} is not paused ({phase_of(instance)}): nothing to resume", file=sys.stderr)
            return 0
        annotate(kube, namespace, args.instance, PAUSE_ANNOTATION, None)
    emit(f"workflowinstance.plait.dev/{args.instance} resumed (annotation {PAUSE_ANNOTATION} removed)")
    return 0
