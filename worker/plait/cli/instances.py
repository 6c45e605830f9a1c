"""``plait submit|get|status|result|list|logs``: starting workflow instances and looking at them."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

import jsonschema

from plait import _tracing
from plait._ids import INSTANCE_ID_ANNOTATION, instance_name
from plait._kube import idempotency
from plait._kube.client import JSON, Kube
from plait._kube.models import (
    API_VERSION,
    FINISHED_PHASES,
    IDEMPOTENCY_LABEL,
    INSTANCES,
    TRACEPARENT_ANNOTATION,
    definition_hash_of,
    object_name,
    payload_size,
)
from plait.cli.common import (
    CommandError,
    add_cluster_options,
    add_instance_argument,
    add_output_option,
    payload_store,
    program,
    read_value,
    session,
    with_output,
    write_value,
)
from plait.cli.follow import Display, Outcome, display_for, follow, timed_out, watch_instance
from plait.cli.format import age, clean, clock, document, duration, emit, span, table, unicode_ok, use_colour
from plait.cli.inputs import load_manifest, parse_json
from plait.cli.lookup import (
    definition_for,
    definitions,
    event_time,
    events_of,
    get_instance,
    tasks_of,
)
from plait.cli.view import Style, instance_lines, phase_of
from plait.errors import Conflict

PHASES = ("Pending", "Queued", "Running", "Waiting", "AwaitingSignal", "Paused", "Succeeded", "Failed", "Cancelled")
EXIT_FAILED = 1  # the instance failed or was cancelled
EXIT_NOT_FINISHED = 3  # `result` on an instance still running


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_submit(commands)
    _register_get(commands)

    status = commands.add_parser(
        "status",
        help="show an instance's phase, progress, timing and conditions",
        description="The status of one WorkflowInstance in a few lines. Exits 0 whatever the phase.",
    )
    add_instance_argument(status)
    add_cluster_options(status)
    add_output_option(status, help="print status (without the internal checkpoint) as json or yaml")
    status.set_defaults(handler=_status)

    result = commands.add_parser(
        "result",
        help="print an instance's output as JSON (exit 1 with the error if it failed)",
        description="Print status.output of a Succeeded instance. Exit codes: 0 succeeded, "
        f"{EXIT_FAILED} failed or cancelled (the error goes to stderr), {EXIT_NOT_FINISHED} not finished yet "
        "(use --wait to wait for it).",
    )
    add_instance_argument(result)
    add_cluster_options(result)
    add_output_option(result)
    result.add_argument("--wait", action="store_true", help="wait until the instance finishes")
    result.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="with --wait: give up after")
    result.set_defaults(handler=_result)

    listing = commands.add_parser(
        "list",
        aliases=["ls"],
        help="list workflow instances, newest last",
        description="List WorkflowInstances with their workflow, phase, current step, progress and age.",
    )
    add_cluster_options(listing)
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="list instances in every namespace")
    listing.add_argument("--workflow", help="only instances of this workflow")
    listing.add_argument(
        "-p",
        "--phase",
        action="append",
        default=[],
        metavar="PHASE",
        help=f"only instances in this phase (repeatable, or comma-separated): {', '.join(PHASES)}",
    )
    add_output_option(listing, "json", "yaml", "name", help="print the objects as json or yaml, or only names")
    listing.set_defaults(handler=_list)

    logs = commands.add_parser(
        "logs",
        aliases=["events"],
        help="show the Kubernetes Events of an instance, its tasks and its signals, oldest first",
        description="The Events the operator posted about an instance (Started, Paused, Resumed, "
        "LeaseExpired, Succeeded, Failed, ...), its tasks and its signals, in time order. "
        "Task output goes to the worker's log, not here.",
    )
    add_instance_argument(logs)
    add_cluster_options(logs)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new Events until it finishes")
    add_output_option(logs)
    logs.set_defaults(handler=_logs)


# -- submit ----------------------------------------------------------------------------------------


def _register_submit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser(
        "submit",
        help="start a workflow instance: from a workflow name and JSON input, or from a manifest",
        description="Create a WorkflowInstance. Either name a WORKFLOW and give its INPUT_JSON "
        "(a JSON value; '-' reads stdin, '@file.json' reads a file), or pass -f with a "
        "WorkflowInstance manifest (YAML or JSON). The input is checked against the workflow's "
        "published input schema before anything is created.",
        epilog="examples:\n"
        '  plait submit nightly-etl \'{"source": "s3://bucket/export", "pages": 3}\' --wait\n'
        "  plait submit -f examples/order-instance.yaml\n"
        "  plait submit -f examples/order-instance.yaml --generate-name   # another run of it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("workflow", metavar="WORKFLOW", nargs="?", help="name of the workflow to run")
    submit.add_argument("input", metavar="INPUT_JSON", nargs="?", default=None, help="the input (default: null)")
    submit.add_argument("-f", "--filename", metavar="FILE", help="a WorkflowInstance manifest ('-' for stdin)")
    naming = submit.add_mutually_exclusive_group()
    naming.add_argument("--name", help="instance id (the object name, or derived from it; default: WORKFLOW-<random>)")
    naming.add_argument(
        "--generate-name",
        action="store_true",
        help="let the API server add a random suffix (with -f: to the manifest's name, for another run)",
    )
    submit.add_argument("--ttl", type=int, metavar="SECONDS", help="delete it this long after it finishes")
    submit.add_argument("--definition-hash", metavar="HASH", help="pin a published version of the workflow")
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="submit at most once per KEY: when an instance with this key was submitted within the operator's "
        "window (a day by default), nothing is created and that instance is shown (or followed with --wait)",
    )
    submit.add_argument(
        "--traceparent",
        metavar="TRACEPARENT",
        default=os.environ.get("TRACEPARENT"),
        help="W3C trace context of the span to trace the instance under (00-<trace id>-<span id>-<flags>; "
        "default: $TRACEPARENT); see docs/tracing.md",
    )
    add_cluster_options(submit)
    add_output_option(submit, help="print the created object as json or yaml")
    submit.add_argument(
        "--wait", action="store_true", help="wait until it finishes (showing progress on a terminal), print its result"
    )
    submit.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="with --wait: give up after")
    submit.set_defaults(handler=_submit)


def build_instance(args: argparse.Namespace) -> JSON:
    """The WorkflowInstance to create, from the command line (pure; exits with a clear error)."""
    if args.filename:
        if args.workflow or args.input:
            raise CommandError("give either WORKFLOW [INPUT_JSON] or -f FILE, not both")
        body = load_manifest(args.filename)
        metadata = dict(body.get("metadata") or {})
        spec = dict(body["spec"])
    else:
        if not args.workflow:
            raise CommandError(f"name the workflow to run, or pass -f FILE; see `{program()} definitions`")
        metadata = {}
        spec = {"workflow": args.workflow}
        if args.input is not None:
            spec["input"] = parse_json(args.input, "INPUT_JSON")
    if args.name:
        metadata.pop("generateName", None)
        metadata["name"] = instance_name(args.name)
        if metadata["name"] != args.name:  # an id that is no object name: keep it, as the client does
            metadata["annotations"] = {**(metadata.get("annotations") or {}), INSTANCE_ID_ANNOTATION: args.name}
    elif args.generate_name or not (metadata.get("name") or metadata.get("generateName")):
        base = metadata.pop("name", None) or object_name(spec["workflow"], 50)
        metadata["generateName"] = metadata.get("generateName") or f"{base}-"
    if args.ttl is not None:
        spec["ttlSecondsAfterFinished"] = args.ttl
    if args.definition_hash:
        spec["definitionHash"] = args.definition_hash
    if args.idempotency_key:
        spec["idempotencyKey"] = args.idempotency_key
    if spec.get("idempotencyKey"):
        labels = {**(metadata.get("labels") or {}), IDEMPOTENCY_LABEL: idempotency.digest(spec["idempotencyKey"])}
        metadata["labels"] = labels
    if args.traceparent:
        if _tracing.parse_traceparent(args.traceparent) is None:
            raise CommandError(
                f"--traceparent {args.traceparent!r} is not a W3C traceparent: "
                "00-<32 hex digits trace id>-<16 hex digits span id>-<2 hex digits flags>"
            )
        metadata["annotations"] = {**(metadata.get("annotations") or {}), TRACEPARENT_ANNOTATION: args.traceparent}
    metadata.pop("resourceVersion", None)
    metadata.pop("uid", None)
    return {"apiVersion": API_VERSION, "kind": "WorkflowInstance", "metadata": metadata, "spec": spec}


def check_input(kube: Kube, namespace: str, body: JSON) -> None:
    """Validate the input against the published schema, or warn that nothing is published yet."""
    spec = body["spec"]
    definition = definition_for(kube, namespace, {"spec": spec, "metadata": {}})
    if definition is None:
        known = sorted({(d.get("spec") or {}).get("workflow", "?") for d in definitions(kube, namespace)})
        pinned = f" version {spec['definitionHash'][:12]} of" if spec.get("definitionHash") else ""
        print(
            f"warning: no worker has published{pinned} workflow {spec['workflow']!r} in namespace {namespace!r} "
            f"(published: {', '.join(known) or 'none'}); the instance stays Pending until one does",
            file=sys.stderr,
        )
        return
    schema = (definition.get("spec") or {}).get("inputSchema")
    if not schema:
        return
    try:
        jsonschema.validate(spec.get("input"), schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise CommandError(
            f"the input does not match the input schema of workflow {spec['workflow']!r} at {where}: {error.message}; "
            f"see the schema with `{program()} definitions {spec['workflow']} -o yaml`"
        ) from None
    except jsonschema.SchemaError:
        return  # the operator reports broken schemas


def _submit(args: argparse.Namespace) -> int:
    body = build_instance(args)
    with session(args) as (kube, namespace):
        check_input(kube, namespace, body)
        key = body["spec"].get("idempotencyKey")
        first = None
        if key:
            listed = kube.list(INSTANCES, namespace, label_selector=idempotency.selector(key))["items"]
            first = idempotency.first_with_key(listed, key, time.time())
        if first is None:
            _store_input(args, body, namespace)
        try:
            created = first if first is not None else kube.create(INSTANCES, body, namespace)
        except Conflict:
            name = body["metadata"].get("name")
            existing = get_instance(kube, namespace, str(name))
            raise CommandError(
                f"WorkflowInstance {name!r} already exists in namespace {namespace!r} "
                f"({phase_of(existing)}): an instance name is its id and runs once. "
                f"See it with `{program()} get {name}`, or start another run with --generate-name "
                f"or --name"
            ) from None
        name = created["metadata"]["name"]
        if args.output:
            emit(document(clean(created), args.output))
        else:
            if first is None:
                what = "created"
            else:
                what = f"unchanged: submitted with idempotency key {key!r} before ({phase_of(first)})"
            print(f"workflowinstance.plait.dev/{name} {what}", file=sys.stderr if args.wait else sys.stdout)
            if not args.wait:
                print(f"follow it: {program()} get {name} --watch", file=sys.stderr)
        if not args.wait:
            return 0
        outcome = follow(kube, namespace, name, _progress_display(sys.stderr), timeout=args.timeout)
        return _print_result(
            args, namespace, outcome, name, "json" if not args.output else args.output, wanted="finished"
        )


def _store_input(args: argparse.Namespace, body: JSON, namespace: str) -> None:
    """Offload the input's large parts to the payload store (if one is configured), under the
    instance's name: a generated name is chosen here then, as the API server would."""
    spec, metadata = body["spec"], body["metadata"]
    store = payload_store(args)
    if store is None or payload_size(spec.get("input")) <= store.inline_bytes:
        return
    if not metadata.get("name"):
        suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        metadata["name"] = f"{metadata.pop('generateName')}{suffix}"
    spec["input"] = write_value(args, spec.get("input"), namespace, metadata["name"])


# -- get -------------------------------------------------------------------------------------------


def _register_get(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    get = commands.add_parser(
        "get",
        help="show an instance as a tree of steps with state, attempts and durations (--watch: live)",
        description="The step tree of a WorkflowInstance: the workflow's structure (forks, routes, loops, "
        "child flows) with each step's state, attempts and duration, the last error of a retried "
        "step, and the result or error. With --watch it follows the instance until it finishes "
        "(exit 0 if it succeeded, 1 if it failed or was cancelled): redrawn in place on a terminal, "
        "one line per change otherwise.",
    )
    add_instance_argument(get)
    add_cluster_options(get)
    get.add_argument("-w", "--watch", action="store_true", help="follow it live until it finishes")
    get.add_argument(
        "--until",
        action="append",
        default=[],
        metavar="PHASE",
        help="with --watch: also stop when it reaches this phase (repeatable), e.g. AwaitingSignal",
    )
    get.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="with --watch: give up after")
    add_output_option(get, help="print the object (without the internal checkpoint) as json or yaml")
    get.set_defaults(handler=_get)


def _style(stream: Any) -> Style:
    return Style(colour=use_colour(stream), fancy=unicode_ok(stream))


def _progress_display(stream: Any) -> Display | None:
    """Live progress while waiting, only on a terminal: piped output stays just the result."""
    return display_for(stream, _style(stream)) if stream.isatty() else None


def _get(args: argparse.Namespace) -> int:
    until = _phases(args.until)
    if until and not args.watch:
        raise CommandError("--until only makes sense with --watch")
    with session(args) as (kube, namespace):
        if args.output:
            for body in watch_instance(kube, namespace, args.instance) if args.watch else [None]:
                body = body or get_instance(kube, namespace, args.instance)
                emit(document(clean(with_output(args, body, namespace)), args.output))
                if not args.watch or phase_of(body) in FINISHED_PHASES or phase_of(body) in until:
                    break
            return 0
        if not args.watch:
            instance = get_instance(kube, namespace, args.instance)
            definition = definition_for(kube, namespace, instance)
            lines = instance_lines(
                instance, definition, tasks_of(kube, namespace, instance), time.time(), _style(sys.stdout)
            )
            emit("\n".join(lines))
            return 0
        outcome = follow(
            kube,
            namespace,
            args.instance,
            display_for(sys.stdout, _style(sys.stdout)),
            until=until,
            timeout=args.timeout,
        )
        if not outcome.reached:
            raise timed_out(args.instance, outcome, "/".join([*until, "finished"]))
        return EXIT_FAILED if phase_of(outcome.instance) in ("Failed", "Cancelled") else 0


def _phases(values: list[str]) -> set[str]:
    by_lower = {p.lower(): p for p in PHASES}
    phases = set()
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            if part.lower() not in by_lower:
                raise CommandError(f"unknown phase {part!r}; phases are {', '.join(PHASES)}")
            phases.add(by_lower[part.lower()])
    return phases


# -- status and result ------------------------------------------------------------------------------


def status_lines(instance: JSON, now: float) -> list[str]:
    meta, spec, status = instance["metadata"], instance.get("spec") or {}, instance.get("status") or {}
    version = definition_hash_of(instance)
    rows = [
        ("Name", meta["name"]),
        ("Namespace", meta.get("namespace", "")),
        ("Workflow", spec.get("workflow", "") + (f" (version {version[:12]})" if version else "")),
        ("Phase", phase_of(instance)),
        ("Message", status.get("message") or ""),
        ("Progress", status.get("progress") or ""),
        ("Current step", status.get("currentStep") or ""),
        ("Created", f"{meta.get('creationTimestamp')} ({age(meta.get('creationTimestamp'), now)} ago)"),
    ]
    if status.get("startedAt"):
        rows.append(("Started", status["startedAt"]))
    if status.get("finishedAt"):
        rows.append(
            (
                "Finished",
                f"{status['finishedAt']} (took {duration(span(status.get('startedAt'), status['finishedAt'], now))})",
            )
        )
    if status.get("error"):
        rows.append(("Error", status["error"]))
    if status.get("duplicateOf"):
        rows.append(("Duplicate of", f"{status['duplicateOf']} (idempotency key {spec.get('idempotencyKey')!r})"))
    concurrency = status.get("concurrency") or {}
    if concurrency:
        group = f"key {concurrency['key']!r}" if concurrency.get("key") is not None else "no key"
        where = f", position {concurrency['position']}" if concurrency.get("position") else ""
        rows.append(("Concurrency", f"{group}, at most {concurrency.get('maxRuns')} at once{where}"))
    for key, value in sorted((meta.get("annotations") or {}).items()):
        if key.startswith("plait.dev/"):
            rows.append(("Annotation", f"{key}={value}"))
    for condition in status.get("conditions") or []:
        text = f"{condition.get('type')}={condition.get('status')} ({condition.get('reason')})"
        if condition.get("message"):
            text += f": {condition['message']}"
        rows.append(("Condition", text))
    width = max(len(k) for k, _ in rows) + 2
    return [f"{key + ':':<{width}}{value}" for key, value in rows if value != ""]


def _status(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        instance = get_instance(kube, namespace, args.instance)
    if args.output:
        emit(document(clean(with_output(args, instance, namespace)).get("status") or {}, args.output))
    else:
        emit("\n".join(status_lines(instance, time.time())))
    return 0


def _result(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        if args.wait:
            outcome = follow(kube, namespace, args.instance, _progress_display(sys.stderr), timeout=args.timeout)
        else:
            outcome = Outcome(get_instance(kube, namespace, args.instance), reached=True)
        return _print_result(args, namespace, outcome, args.instance, args.output or "json", wanted="finished")


def _print_result(
    args: argparse.Namespace, namespace: str, outcome: Outcome, name: str, output: str, *, wanted: str
) -> int:
    instance = outcome.instance
    phase = phase_of(instance)
    status = instance.get("status") or {}
    if phase == "Succeeded":
        emit(document(read_value(args, status.get("output"), namespace), output))
        return 0
    if phase == "Failed":
        print(f"error: {name} failed: {status.get('error') or status.get('message')}", file=sys.stderr)
        return EXIT_FAILED
    if phase == "Cancelled":
        print(f"error: {name} was {status.get('message') or 'cancelled'}", file=sys.stderr)
        return EXIT_FAILED
    if not outcome.reached:
        raise timed_out(name, outcome, wanted)
    print(
        f"error: {name} has not finished: it is {phase}"
        + (f" ({status['message']})" if status.get("message") else "")
        + (f", {status['progress']} steps done" if status.get("progress") else "")
        + f". Wait for it with `{program()} result {name} --wait`, or follow it with `{program()} get {name} --watch`",
        file=sys.stderr,
    )
    return EXIT_NOT_FINISHED


# -- list ------------------------------------------------------------------------------------------


def select(items: list[JSON], workflow: str | None, phases: set[str]) -> list[JSON]:
    chosen = [
        item
        for item in items
        if (not workflow or (item.get("spec") or {}).get("workflow") == workflow)
        and (not phases or phase_of(item) in phases)
    ]
    return sorted(chosen, key=_creation_order)


def _creation_order(item: JSON) -> tuple[str, str, str]:
    """creationTimestamp has one-second resolution; startedAt (microseconds) orders within a second."""
    started = (item.get("status") or {}).get("startedAt") or "~"
    return (item["metadata"].get("creationTimestamp", ""), started, item["metadata"]["name"])


def list_lines(items: list[JSON], now: float, *, all_namespaces: bool) -> list[str]:
    header = ["NAME", "WORKFLOW", "PHASE", "STEP", "PROGRESS", "DURATION", "AGE"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    rows = []
    for item in items:
        meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        row = [
            meta["name"],
            spec.get("workflow", ""),
            phase_of(item),
            status.get("currentStep") or "",
            status.get("progress") or "",
            duration(span(status.get("startedAt"), status.get("finishedAt"), now)) if status.get("startedAt") else "",
            age(meta.get("creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace", ""))
        rows.append(row)
    return table(header, rows)


def _list(args: argparse.Namespace) -> int:
    phases = _phases(args.phase)
    with session(args) as (kube, namespace):
        scope = None if args.all_namespaces else namespace
        items = select(kube.list(INSTANCES, scope).get("items") or [], args.workflow, phases)
    if args.output == "name":
        emit("\n".join(f"workflowinstance.plait.dev/{i['metadata']['name']}" for i in items) if items else "")
    elif args.output:
        emit(document({"apiVersion": "v1", "kind": "List", "items": [clean(i) for i in items]}, args.output))
    elif not items:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace!r}"
        filters = " matching the filters" if args.workflow or phases else ""
        print(f"no WorkflowInstances{filters} in {where}", file=sys.stderr)
    else:
        emit("\n".join(list_lines(items, time.time(), all_namespaces=args.all_namespaces)))
    return 0


# -- logs ------------------------------------------------------------------------------------------


def event_lines(events: list[JSON], min_widths: Sequence[int] = ()) -> list[str]:
    # Events written through core/v1 carry second-resolution times: do not pretend otherwise
    millis = any("." in event_time(event) for event in events)
    rows = []
    for event in events:
        involved = event.get("involvedObject") or {}
        rows.append(
            [
                clock(event_time(event), millis=millis),
                event.get("type", ""),
                event.get("reason", ""),
                f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
                " ".join(str(event.get("message") or event.get("note") or "").split()),
            ]
        )
    return table(["TIME", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows, min_widths=min_widths)


def _logs(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        instance = get_instance(kube, namespace, args.instance)
        events = events_of(kube, namespace, instance)
        if args.output:
            emit(document({"apiVersion": "v1", "kind": "List", "items": events}, args.output))
            return 0
        if not args.follow:
            if events:
                emit("\n".join(event_lines(events)))
            else:
                print(f"no Events for {args.instance!r} (Events expire after an hour by default)", file=sys.stderr)
            return 0
        seen: set[str] = set()
        printed_header = False
        finished_at: float | None = None
        while True:
            fresh = [e for e in events if e["metadata"].get("uid") not in seen]
            if fresh:
                # batches print as they come: fixed widths keep their columns aligned
                lines = event_lines(fresh, min_widths=(8, 7, 17, len(f"workflowsignal/{args.instance}") + 16))
                emit("\n".join(lines if not printed_header else lines[1:]))
                printed_header = True
                seen.update(e["metadata"].get("uid", "") for e in fresh)
            if phase_of(instance) in FINISHED_PHASES:
                # the operator's last Event says how it ended; it is best effort, so stop soon anyway
                finished_at = finished_at or time.monotonic()
                if any(e.get("reason") in FINISHED_PHASES for e in events) or time.monotonic() - finished_at > 5:
                    return 0
            time.sleep(1.0)
            instance = get_instance(kube, namespace, args.instance)
            events = events_of(kube, namespace, instance)
