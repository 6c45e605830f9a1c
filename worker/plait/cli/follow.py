"""Following an instance live: a watch on it, and two ways to show what changes.

:func:`watch_instance` yields the instance every time it changes (a Kubernetes watch on that one
object, resumed after timeouts and expired resource versions). :func:`follow` drives a display
until the instance finishes (or reaches a phase asked for): :class:`LiveDisplay` redraws the whole
step tree in place on a terminal, :class:`PlainDisplay` prints one line per change for logs and
pipes. Used by ``plait get --watch``, ``plait submit --wait`` and ``plait result --wait``.
"""

from __future__ import annotations

import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from plait._kube.client import JSON, Kube
from plait._kube.models import FINISHED_PHASES, INSTANCES, definition_hash_of, parse_rfc3339, rfc3339
from plait.cli.common import CommandError, program
from plait.cli.format import ESCAPE, clock, duration, paint, span, visible_len
from plait.cli.lookup import definition_for, get_instance, tasks_of
from plait.cli.steptree import StepRow, step_rows
from plait.cli.view import PHASE_COLOURS, Style, instance_lines, phase_of
from plait.errors import ClusterError


def watch_instance(
    kube: Kube, namespace: str, name: str, *, chunk_seconds: int = 60, until: threading.Event | None = None
) -> Iterator[JSON]:
    """The instance now, then again after every change, until ``until`` is set (checked after each
    watch request of ``chunk_seconds``). Ends with an error if it is deleted."""
    body = get_instance(kube, namespace, name)
    yield body
    version = body["metadata"]["resourceVersion"]
    while until is None or not until.is_set():
        try:
            for event in kube.watch(
                INSTANCES,
                namespace,
                resource_version=version,
                field_selector=f"metadata.name={name}",
                timeout_seconds=chunk_seconds,
            ):
                version = event.object.get("metadata", {}).get("resourceVersion", version)
                if event.type == "DELETED":
                    raise CommandError(f"WorkflowInstance {name!r} was deleted while following it")
                if event.type in ("ADDED", "MODIFIED"):
                    yield event.object
        except ClusterError as error:
            if error.status != 410:
                raise
            body = get_instance(kube, namespace, name)  # our resourceVersion expired: start over
            version = body["metadata"]["resourceVersion"]
            yield body
        except httpx.TransportError as error:
            raise ClusterError(
                f"lost the watch on {name!r} at {kube.connection.server}: {error}; is the API server still up?"
            ) from error


class Display:
    """Shows successive states of one instance."""

    def show(self, instance: JSON, definition: JSON | None, tasks: list[JSON], now: float) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called between changes (durations of running steps move on)."""

    def close(self) -> None:
        pass


class LiveDisplay(Display):
    """Redraws the header and step tree in place (ANSI cursor movement), for terminals."""

    def __init__(self, stream: TextIO, style: Style) -> None:
        self.stream = stream
        self.style = style
        self.drawn = 0
        self.last: tuple[JSON, JSON | None, list[JSON]] | None = None

    def show(self, instance: JSON, definition: JSON | None, tasks: list[JSON], now: float) -> None:
        self.last = (instance, definition, tasks)
        self._draw(now)

    def tick(self, now: float) -> None:
        if self.last is not None:
            self._draw(now)

    def _draw(self, now: float) -> None:
        assert self.last is not None
        lines = instance_lines(*self.last, now, self.style)
        size = shutil.get_terminal_size((120, 40))
        if len(lines) > size.lines - 1:
            hidden = len(lines) - (size.lines - 2)
            lines = [*lines[: size.lines - 2], f"... {hidden} more lines"]
        out = ""
        if self.drawn:
            out += f"\x1b[{self.drawn}F\x1b[J"  # back to the first line we drew, clear to the end
        out += "".join(truncate(line, size.columns - 1) + "\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()
        self.drawn = len(lines)


def truncate(line: str, width: int) -> str:
    """``line`` cut to ``width`` visible characters, colour codes kept intact."""
    if visible_len(line) <= width:
        return line
    out, seen = [], 0
    for piece in re.findall(f"{ESCAPE.pattern}|.", line, re.DOTALL):  # a colour code or one character
        if not piece.startswith("\x1b"):
            if seen >= width - 1:
                break
            seen += 1
        out.append(piece)
    return "".join(out) + "…\x1b[0m"


@dataclass
class PlainDisplay(Display):
    """One line per change (phase, step state, attempt): for pipes, CI logs and files."""

    stream: TextIO
    style: Style = field(default_factory=Style)
    phase: str | None = None
    states: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    started: bool = False

    def show(self, instance: JSON, definition: JSON | None, tasks: list[JSON], now: float) -> None:
        status = instance.get("status") or {}
        name = instance["metadata"]["name"]
        lines: list[tuple[str, int, str]] = []  # (time, order, text), printed in time order
        if not self.started:
            self.started = True
            spec = instance.get("spec") or {}
            lines.append(
                (
                    instance["metadata"].get("creationTimestamp") or rfc3339(now),
                    0,
                    f"{name}: workflow {spec.get('workflow')}, namespace {instance['metadata'].get('namespace')}",
                )
            )
        rows = [r for r in step_rows((definition or {}).get("spec"), status, tasks) if r.leaf]
        for row in rows:
            text = self._step(row)
            if text is not None:
                lines.append((row.finished or row.started or rfc3339(now), 1, text))
        phase = phase_of(instance)
        if phase != self.phase:
            self.phase = phase
            message = status.get("message") or ""
            if phase in FINISHED_PHASES:
                when = status.get("finishedAt") or rfc3339(now)
            else:  # the step change that brought the phase about, as far as we can tell
                when = max(
                    [t for r in rows for t in (r.started, r.finished) if t] or [status.get("startedAt") or rfc3339(now)]
                )
            text = paint(phase, PHASE_COLOURS.get(phase), self.style.colour)
            lines.append(
                (
                    when,
                    2,
                    f"{name}: {text}"
                    + (f" ({message})" if message and message.lower() != phase.lower() else "")
                    + (f", progress {status['progress']}" if status.get("progress") else ""),
                )
            )
            if phase == "Failed" and status.get("error"):
                lines.append((when, 3, f"{name}: error: {status['error']}"))
        for when, _, text in sorted(lines, key=lambda line: (parse_rfc3339(line[0]), line[1])):
            self.stream.write(f"{clock(when)} {text}\n")
        self.stream.flush()

    def _step(self, row: StepRow) -> str | None:
        """The line for a step whose state, attempt or run count changed since the last call."""
        key = (row.state, row.attempts, row.runs)
        if self.states.get(row.id) == key or (row.state == "pending" and row.id not in self.states):
            return None
        previous = self.states.get(row.id)
        self.states[row.id] = key
        if previous is None and row.state in ("skipped", "not run"):
            return None
        parts = [f"  {row.label}: {row.state}"]
        if row.runs > 1:  # a loop body: attempts add up over the iterations
            parts.append(f"run {row.runs}")
            if row.attempts > row.runs:
                parts.append(f"{row.attempts} attempts")
        elif row.attempts > 1 or row.state == "retrying":
            parts.append(f"attempt {row.attempts}")
        if row.finished:
            parts.append(f"in {duration(span(row.started, row.finished, 0))}")
        text = ", ".join(parts)
        if row.error and self.notes.get(row.id) != row.error:  # a new failed attempt: say why, once
            self.notes[row.id] = row.error
            text += f" ({row.error})"
        return text


def display_for(stream: TextIO, style: Style) -> Display:
    return LiveDisplay(stream, style) if stream.isatty() else PlainDisplay(stream, style)


@dataclass
class Outcome:
    instance: JSON
    reached: bool  # the phase asked for (or a finished one) was reached before the timeout


def follow(
    kube: Kube,
    namespace: str,
    name: str,
    display: Display | None,
    *,
    until: Collection[str] = (),
    timeout: float | None = None,
    tick: float = 0.5,
    clock_: Callable[[], float] = time.time,
) -> Outcome:
    """Show the instance as it changes until it finishes, reaches a phase in ``until``, or ``timeout`` passes.

    The watch runs in a thread so the display keeps ticking (running durations) between changes.
    """
    stop_phases = set(until) | set(FINISHED_PHASES)
    updates: queue.Queue[JSON | BaseException] = queue.Queue()
    stopped = threading.Event()

    def pump() -> None:
        # The watch has a client (a connection pool) of its own, used and closed by this thread
        # only: an HTTPS connection must never be shared between threads, nor closed while another
        # thread reads from it. The thread ends within a watch chunk after we return.
        watcher = Kube(kube.connection)
        try:
            for body in watch_instance(watcher, namespace, name, chunk_seconds=5, until=stopped):
                if stopped.is_set():
                    return
                updates.put(body)
        except BaseException as error:  # handed over to the caller's thread
            updates.put(error)
        finally:
            watcher.close()

    threading.Thread(target=pump, name=f"watch-{name}", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    definitions: dict[str, JSON | None] = {}
    instance: JSON | None = None
    try:
        while True:
            wait = tick if deadline is None else max(0.0, min(tick, deadline - time.monotonic()))
            try:
                item = updates.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    if instance is None:
                        raise CommandError(f"timed out reading WorkflowInstance {name!r}") from None
                    return Outcome(instance, reached=False)
                if display is not None:
                    display.tick(clock_())
                continue
            if isinstance(item, BaseException):
                raise item
            while not updates.empty():  # skip to the newest state when several queued up
                newer = updates.get_nowait()
                if isinstance(newer, BaseException):
                    raise newer
                item = newer
            instance = item
            if display is not None:
                key = _definition_key(instance)
                if key not in definitions or definitions[key] is None:
                    definitions[key] = definition_for(kube, namespace, instance)
                display.show(instance, definitions[key], tasks_of(kube, namespace, instance), clock_())
            if phase_of(instance) in stop_phases:
                return Outcome(instance, reached=True)
    finally:
        stopped.set()
        if display is not None:
            display.close()


def _definition_key(instance: Mapping[str, Any]) -> str:
    return definition_hash_of(instance) or f"latest:{(instance.get('spec') or {}).get('workflow')}"


def timed_out(name: str, outcome: Outcome, wanted: str) -> CommandError:
    status = outcome.instance.get("status") or {}
    return CommandError(
        f"gave up waiting for {name!r} to be {wanted}: it is {phase_of(outcome.instance)} "
        f"({status.get('message') or 'no message'}); follow it with `{program()} get {name} --watch`"
    )
