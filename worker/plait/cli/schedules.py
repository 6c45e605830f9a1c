"""``plait schedule list|get|trigger|suspend|resume|backfill``: WorkflowSchedules and their runs.

Suspend and resume patch ``spec.suspend`` (what ``kubectl patch`` would do); the operator does the
rest. Trigger and backfill create runs themselves, with the names, label and owner the operator
gives them (:mod:`plait._kube.schedules`): a backfilled tick has the name the operator would have
given it, so backfilling twice, or a tick the operator ran already, creates nothing new.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from functools import partial

from plait._kube.client import JSON, Kube
from plait._kube.models import FINISHED_PHASES, INSTANCES, SCHEDULES, parse_rfc3339
from plait._kube.schedules import owned_by, run_body, run_name, runs_selector, tick_of
from plait._scheduling.cron import Cron, InvalidSchedule
from plait.cli.common import CommandError, add_cluster_options, add_output_option, program, session
from plait.cli.format import age, clean, document, duration, emit, table
from plait.cli.view import phase_of
from plait.errors import Conflict, NotFound

MAX_BACKFILL = 100


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "schedule",
        aliases=["schedules"],
        help="list, inspect, trigger, suspend, resume and backfill WorkflowSchedules",
        description="A WorkflowSchedule starts an instance of a workflow at every tick of a cron schedule "
        "in a time zone (see docs/schedules.md). These commands look at schedules and act on them.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser(
        "list", aliases=["ls"], help="list schedules with their next and last tick and active runs",
        description="List WorkflowSchedules: schedule, time zone, suspended or not, active runs, last and next tick.",
    )  # fmt: skip
    add_cluster_options(listing)
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="list schedules in every namespace")
    add_output_option(listing, "json", "yaml", "name", help="print the objects as json or yaml, or only names")
    listing.set_defaults(handler=_list)

    get = verbs.add_parser(
        "get", help="show a schedule: its timing, policy, active and recent runs, skipped ticks, conditions",
        description="One WorkflowSchedule in detail, with its runs (instances labelled plait.dev/schedule=NAME), "
        "newest last, and the ticks it skipped and why.",
    )  # fmt: skip
    get.add_argument("name", metavar="NAME", help="WorkflowSchedule name")
    add_cluster_options(get)
    add_output_option(get, help="print the WorkflowSchedule as json or yaml")
    get.set_defaults(handler=_get)

    trigger = verbs.add_parser(
        "trigger", help="start one run of a schedule now, outside its ticks",
        description="Create one WorkflowInstance from the schedule now (named NAME-manual-<random>), with the "
        "schedule's workflow, input, template, label and owner. With concurrencyPolicy Forbid and a run active it "
        "refuses, unless --force.",
    )  # fmt: skip
    trigger.add_argument("name", metavar="NAME", help="WorkflowSchedule name")
    trigger.add_argument("--force", action="store_true", help="start it even if Forbid and a run is active")
    add_cluster_options(trigger)
    trigger.set_defaults(handler=_trigger)

    for verb, value, text in (
        ("suspend", True, "stop starting runs (running ones go on); ticks meanwhile count as missed"),
        ("resume", False, "start runs again; a missed tick runs now if within startingDeadlineSeconds"),
    ):
        toggle = verbs.add_parser(
            verb, help=text, description=f"{text[0].upper()}{text[1:]}. Sets spec.suspend={str(value).lower()}.",
        )  # fmt: skip
        toggle.add_argument("name", metavar="NAME", help="WorkflowSchedule name")
        add_cluster_options(toggle)
        toggle.set_defaults(handler=partial(_set_suspend, value=value))

    backfill = verbs.add_parser(
        "backfill", help="start one run per tick of the schedule in a past time range (idempotent)",
        description="Create one WorkflowInstance for every tick of the schedule from --from to --to (both "
        "included), each named as the operator names a tick's run, so ticks that already ran, or a second "
        "backfill of the same range, create nothing. Backfilled runs start at once, all of them: "
        "concurrencyPolicy applies to ticks, not to backfills.",
        epilog="examples:\n"
        "  plait schedule backfill nightly-etl --from 2026-11-20 --to 2026-11-27T23:59\n"
        "  plait schedule backfill nightly-etl --from 2026-11-20T00:00Z --to 2026-11-21T00:00Z --dry-run\n"
        "times without a UTC offset are read in the schedule's time zone",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    backfill.add_argument("name", metavar="NAME", help="WorkflowSchedule name")
    backfill.add_argument("--from", dest="start", required=True, metavar="TIME", help="ISO 8601 time: first tick")
    backfill.add_argument("--to", dest="end", required=True, metavar="TIME", help="ISO 8601 time: last tick")
    backfill.add_argument("--dry-run", action="store_true", help="only list the ticks and whether they have a run")
    backfill.add_argument(
        "--max", type=int, default=MAX_BACKFILL, metavar="N", help=f"refuse ranges of more than N ticks (default {MAX_BACKFILL})"
    )  # fmt: skip
    add_cluster_options(backfill)
    backfill.set_defaults(handler=_backfill)


# -- reading ---------------------------------------------------------------------------------------


def get_schedule(kube: Kube, namespace: str, name: str) -> JSON:
    try:
        return kube.get(SCHEDULES, name, namespace)
    except NotFound:
        raise CommandError(
            f"no WorkflowSchedule {name!r} in namespace {namespace!r}; list them with `{program()} schedule list`"
        ) from None


def runs_of(kube: Kube, schedule: JSON) -> list[JSON]:
    """The schedule's instances, oldest first."""
    meta = schedule["metadata"]
    items = kube.list(INSTANCES, meta["namespace"], label_selector=runs_selector(meta["name"])).get("items") or []
    owned = [i for i in items if owned_by(i, meta["uid"])]
    return sorted(owned, key=lambda i: (i["metadata"].get("creationTimestamp", ""), i["metadata"]["name"]))


def _cron(schedule: JSON) -> Cron:
    spec = schedule.get("spec") or {}
    try:
        return Cron.parse(spec.get("schedule", ""), spec.get("timeZone"))
    except InvalidSchedule as invalid:
        raise CommandError(f"schedule {schedule['metadata']['name']!r}: {invalid.message}") from None


def _when(timestamp: str | None, now: float) -> str:
    """``2026-12-02 02:00:00 UTC (in 3h)`` style: an RFC 3339 time in local time, and how far from now."""
    if not timestamp:
        return "-"
    moment = parse_rfc3339(timestamp)
    local = datetime.fromtimestamp(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{local} ({_relative(moment, now)})"


def _relative(moment: float, now: float) -> str:
    return f"{duration(now - moment)} ago" if moment <= now else f"in {duration(moment - now)}"


def schedule_rows(items: list[JSON], now: float, *, all_namespaces: bool = False) -> list[str]:
    rows = []
    for item in items:
        meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        next_time, last_time = status.get("nextScheduleTime"), status.get("lastScheduleTime")
        row = [
            meta["name"],
            spec.get("schedule", ""),
            spec.get("timeZone") or "UTC",
            spec.get("workflow", ""),
            "yes" if spec.get("suspend") else "no",
            str(len(status.get("active") or [])),
            _relative(parse_rfc3339(last_time), now) if last_time else "-",
            _relative(parse_rfc3339(next_time), now) if next_time else "-",
            age(meta.get("creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace", ""))
        rows.append(row)
    header = ["NAME", "SCHEDULE", "TIMEZONE", "WORKFLOW", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    return table(header, rows)


def _list(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        where = None if args.all_namespaces else namespace
        items = sorted(kube.list(SCHEDULES, where).get("items") or [], key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"]))  # fmt: skip
    if args.output == "name":
        emit("\n".join(f"workflowschedule.plait.dev/{s['metadata']['name']}" for s in items))
    elif args.output:
        emit(document({"apiVersion": "v1", "kind": "List", "items": [clean(s) for s in items]}, args.output))
    elif not items:
        print(f"no WorkflowSchedules in {'any namespace' if args.all_namespaces else repr(namespace)}", file=sys.stderr)
    else:
        emit("\n".join(schedule_rows(items, time.time(), all_namespaces=args.all_namespaces)))
    return 0


def schedule_lines(schedule: JSON, runs: list[JSON], now: float) -> list[str]:
    """``plait schedule get``: the schedule, then its runs and skipped ticks."""
    meta, spec, status = schedule["metadata"], schedule.get("spec") or {}, schedule.get("status") or {}
    try:
        words = f" ({Cron.parse(spec.get('schedule', ''), spec.get('timeZone')).explain()})"
    except InvalidSchedule:
        words = " (invalid)"
    deadline = spec.get("startingDeadlineSeconds")
    lines = [
        f"Name:         {meta['name']}",
        f"Namespace:    {meta.get('namespace', '')}",
        f"Workflow:     {spec.get('workflow', '')}" + (f" version {spec['definitionHash'][:12]}" if spec.get("definitionHash") else ""),
        f"Schedule:     {spec.get('schedule', '')}{words}",
        f"Time zone:    {spec.get('timeZone') or 'UTC'}",
        f"Concurrency:  {spec.get('concurrencyPolicy') or 'Allow'}",
        f"Deadline:     {f'{deadline}s after each tick' if deadline is not None else 'none (a missed tick always runs)'}",
        f"Suspended:    {'yes' if spec.get('suspend') else 'no'}",
        f"Next tick:    {_when(status.get('nextScheduleTime'), now)}",
        f"Last tick:    {_when(status.get('lastScheduleTime'), now)}",
        f"Last success: {_when(status.get('lastSuccessfulTime'), now)}",
    ]  # fmt: skip
    for cond in status.get("conditions") or []:
        lines.append(f"Condition:    {cond['type']}={cond['status']} {cond['reason']}: {cond.get('message', '')}")
    lines.append("")
    if runs:
        rows = [
            [
                r["metadata"]["name"],
                _tick_text(r),
                phase_of(r),
                age(r["metadata"].get("creationTimestamp"), now),
            ]
            for r in runs
        ]
        lines += ["Runs (oldest first):", *("  " + line for line in table(["NAME", "TICK", "PHASE", "AGE"], rows))]
    else:
        lines.append("Runs: none yet")
    skipped = status.get("skipped") or []
    if skipped:
        lines.append("")
        lines.append("Skipped ticks (newest last):")
        rows = [
            [s["reason"], s["firstTime"] if s["firstTime"] == s["lastTime"] else f"{s['firstTime']} .. {s['lastTime']}",
             str(s["count"]), s.get("message", "")]
            for s in skipped
        ]  # fmt: skip
        lines += ["  " + line for line in table(["REASON", "TICKS", "COUNT", "WHY"], rows)]
    return lines


def _tick_text(run: JSON) -> str:
    tick = tick_of(run)
    return (
        datetime.fromtimestamp(tick).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if tick is not None else "(by hand)"
    )


def _get(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        schedule = get_schedule(kube, namespace, args.name)
        if args.output:
            emit(document(clean(schedule), args.output))
            return 0
        runs = runs_of(kube, schedule)
    emit("\n".join(schedule_lines(schedule, runs, time.time())))
    return 0


# -- acting ----------------------------------------------------------------------------------------


def _set_suspend(args: argparse.Namespace, value: bool) -> int:
    with session(args) as (kube, namespace):
        schedule = get_schedule(kube, namespace, args.name)
        if bool((schedule.get("spec") or {}).get("suspend")) == value:
            print(f"{args.name} is {'already' if value else 'not'} suspended: nothing to do", file=sys.stderr)
            return 0
        kube.patch(SCHEDULES, args.name, {"spec": {"suspend": value}}, namespace)
    emit(f"workflowschedule.plait.dev/{args.name} {'suspended' if value else 'resumed'}")
    return 0


def _trigger(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        schedule = get_schedule(kube, namespace, args.name)
        active = [r["metadata"]["name"] for r in runs_of(kube, schedule) if phase_of(r) not in FINISHED_PHASES]
        if (schedule.get("spec") or {}).get("concurrencyPolicy") == "Forbid" and active and not args.force:
            raise CommandError(
                f"schedule {args.name!r} forbids concurrent runs and {', '.join(active)} is active; "
                "wait for it, or start one anyway with --force"
            )
        created = kube.create(INSTANCES, run_body(schedule, None), namespace)
    emit(f"workflowinstance.plait.dev/{created['metadata']['name']} created (run of schedule {args.name}, by hand)")
    return 0


def _moment(text: str, cron: Cron, option: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{option} {text!r} is not an ISO 8601 time such as 2026-11-20T02:00 or 2026-11-20T01:00Z"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=cron.zone)).timestamp()


def _backfill(args: argparse.Namespace) -> int:
    with session(args) as (kube, namespace):
        schedule = get_schedule(kube, namespace, args.name)
        cron = _cron(schedule)
        start, end = _moment(args.start, cron, "--from"), _moment(args.end, cron, "--to")
        if end < start:
            raise CommandError("--to is before --from")
        if end > time.time():
            raise CommandError(
                "--to is in the future: backfill runs ticks that have passed; the schedule runs the others"
            )
        ticks: list[float] = []
        for tick in cron.after(start - 1):
            if tick > end:
                break
            if tick < start:
                continue
            ticks.append(tick)
            if len(ticks) > args.max:
                raise CommandError(
                    f"more than {args.max} ticks from {args.start} to {args.end}; narrow the range or raise --max"
                )
        if not ticks:
            raise CommandError(f"schedule {args.name!r} has no tick from {args.start} to {args.end}")
        created = existed = 0
        for tick in ticks:
            name = run_name(args.name, tick)
            if args.dry_run:
                try:
                    kube.get(INSTANCES, name, namespace)
                    emit(f"{name}  {datetime.fromtimestamp(tick).astimezone().isoformat()}  (has a run)")
                except NotFound:
                    emit(f"{name}  {datetime.fromtimestamp(tick).astimezone().isoformat()}  (would start)")
                continue
            try:
                kube.create(INSTANCES, run_body(schedule, tick), namespace)
                created += 1
                emit(f"workflowinstance.plait.dev/{name} created")
            except Conflict:
                existed += 1
                emit(f"workflowinstance.plait.dev/{name} exists already (unchanged)")
    if not args.dry_run:
        emit(f"{len(ticks)} tick(s): {created} run(s) started, {existed} had one already")
    return 0
