"""Upgrade in place on the cluster: what the ``plait.dev/upgrade`` annotation asks, around
:func:`plait._core.upgrade.plan_upgrade`.

An actor (:mod:`plait_operator.instances`) calls :func:`plan` at a step boundary, once a
reconcile's events are decided and before the checkpoint is written: the instance's tasks just
dispatched have no records yet, so they may move to the paths the new version gives them. The
outcome is the ``Upgraded`` condition (``Upgraded``, ``UpToDate``, ``UpgradeRefused``, or
``UpgradePending`` while a step whose task exists would have to move: the upgrade waits for the
next boundary) and, when upgraded, the target definition and the mapped checkpoint, which the
actor writes in its fenced status write before it posts the Event and removes the annotation.
Pure: no I/O (:func:`pending` takes the task records the actor found).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plait._core.definition import Definition
from plait._core.snapshot import Snapshot
from plait._core.upgrade import UpgradeRefused, plan_upgrade
from plait._kube.client import JSON
from plait._kube.models import UPGRADE_ANNOTATION
from plait.errors import DefinitionError
from plait_operator.definitions import DefinitionCatalog
from plait_operator.status import phase_of

CONDITION = "Upgraded"


@dataclass(slots=True)
class UpgradeOutcome:
    """``reason`` and ``message`` for the condition and the Event; the target and the mapped
    checkpoint when the instance moves; ``moved`` its paths that changed (old to new)."""

    reason: str
    message: str
    definition: Definition | None = None
    snapshot: Snapshot | None = None
    moved: dict[str, str] = field(default_factory=dict)

    @property
    def taken(self) -> bool:
        """Whether the request is answered (the annotation goes), rather than waiting for a boundary."""
        return self.reason != "UpgradePending"

    def condition(self) -> tuple[str, str, str, str]:
        status = "True" if self.reason in ("Upgraded", "UpToDate") else "False"
        return CONDITION, status, self.reason, self.message


def requested(body: JSON) -> str | None:
    """The version the instance is asked to move to, or None."""
    annotations = body["metadata"].get("annotations") or {}
    return annotations[UPGRADE_ANNOTATION].strip() if UPGRADE_ANNOTATION in annotations else None


def plan(
    catalog: DefinitionCatalog, body: JSON, definition: Definition, snapshot: Snapshot, *, starting: bool
) -> UpgradeOutcome:
    """The answer to ``plait.dev/upgrade`` for ``snapshot`` (of ``definition``; not changed)."""
    value = requested(body) or ""
    request = f"{UPGRADE_ANNOTATION}={value!r}"
    meta = body["metadata"]
    if snapshot.finished:
        return _refused(
            f"{request} was not taken: the instance is {phase_of(snapshot)}; "
            "only a running, paused or waiting instance can be upgraded"
        )
    if not value:
        return _refused(f"{request} was not taken: name a definition hash (or a prefix of one) or `latest`")
    try:
        target = catalog.matching(meta["namespace"], definition.name, value)
    except DefinitionError as error:
        return _refused(f"{request} was not taken: {error}; the instance runs on, on version {definition.hash[:12]}")
    if target.hash == definition.hash:
        what = "started on" if starting else "already on"
        return UpgradeOutcome("UpToDate", f"{what} version {target.hash[:12]} ({request})")
    mapped = plan_upgrade(definition, target, snapshot, instance_input=(body.get("spec") or {}).get("input"))
    if isinstance(mapped, UpgradeRefused):
        return _refused(
            f"{request} was not taken: the instance does not map onto version {target.hash[:12]}: {mapped.reason}; "
            f"it runs on, on version {definition.hash[:12]}"
        )
    message = f"moved from version {definition.hash[:12]} to {target.hash[:12]} at a step boundary"
    if mapped.skipped:
        message += f"; added before where it was, these steps do not run for it: {', '.join(mapped.skipped)}"
    return UpgradeOutcome("Upgraded", message, target, mapped.snapshot, mapped.moved)


def pending(outcome: UpgradeOutcome, recorded: dict[str, str]) -> UpgradeOutcome:
    """``outcome`` postponed: the steps ``recorded`` (old path to step id) have task records and would move."""
    assert outcome.definition is not None
    steps = ", ".join(
        f"{step} (at {path}, {outcome.moved[path]} in the new version)" for path, step in recorded.items()
    )
    return UpgradeOutcome(
        "UpgradePending",
        f"moving to version {outcome.definition.hash[:12]} at the next step boundary: running step(s) {steps} "
        "must finish first",
    )


def _refused(message: str) -> UpgradeOutcome:
    return UpgradeOutcome("UpgradeRefused", message)
