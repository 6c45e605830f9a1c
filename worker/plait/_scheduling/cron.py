"""Cron expressions read in a time zone: parsing, and the ticks after a moment.

The matching is `cronsim`'s, which follows Debian's cron, including its rule for daylight-saving
transitions (see ``docs/schedules.md``, "Daylight saving"):

- a schedule at a fixed time of day (minute and hour fields that do not start with ``*``, such
  as ``30 2 * * *``) runs once per day whatever the clocks do: a time that does not exist (the
  spring-forward gap) runs at the first moment after the gap; a time that happens twice (fall
  back) runs at its first occurrence only;
- a schedule whose minute or hour field starts with ``*`` (``*/15 * * * *``, ``0 * * * *``) keeps
  its real-time rhythm: it runs at every moment whose local time matches, so an hour that
  happens twice gets its runs twice (every 15 real minutes), an hour that does not exist none.

A sixth field (seconds, first) is plait's extension for short schedules; with seconds other than
``0`` the expression follows real time as above. ``@hourly`` and the other macros are the
expressions they stand for, as in Kubernetes' CronJob.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class InvalidSchedule(ValueError):
    """``spec.schedule`` or ``spec.timeZone`` cannot be read; ``reason`` names which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: ``expression`` as written, ``fields`` as evaluated, in ``zone``."""

    expression: str
    fields: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, time_zone: str | None = None) -> Cron:
        zone = _zone(time_zone)
        text = " ".join(expression.split())
        fields = MACROS.get(text.lower(), text)
        if text.startswith("@") and fields == text:
            raise InvalidSchedule(
                "InvalidSchedule", f"unknown macro {text!r} in spec.schedule; use one of {', '.join(MACROS)}"
            )
        parts = fields.split()
        if len(parts) == 6 and parts[0] == "0":
            fields = " ".join(parts[1:])  # whole minutes: the 5-field expression, with its DST rule
        try:
            CronSim(fields, datetime.now(zone))
        except (CronSimError, ValueError, IndexError) as error:
            raise InvalidSchedule(
                "InvalidSchedule",
                f"spec.schedule {expression!r} is not a cron expression ({error}); expected 5 fields "
                "(minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily",
            ) from error
        return cls(expression, fields, zone)

    def after(self, moment: float) -> Iterator[float]:
        """Ticks strictly after ``moment`` (epoch seconds), in order, as epoch seconds."""
        start = datetime.fromtimestamp(moment, self.zone)
        last = moment
        for tick in CronSim(self.fields, start):
            at = tick.timestamp()
            if at > last:  # wall-clock evaluation may hand back a moment already passed (fall back)
                last = at
                yield at

    def next_after(self, moment: float) -> float | None:
        return next(self.after(moment), None)

    def latest_until(self, moment: float) -> float | None:
        """The last tick at or before ``moment``."""
        start = datetime.fromtimestamp(int(moment) + 1, self.zone)
        for tick in CronSim(self.fields, start, reverse=True):
            at = tick.timestamp()
            if at <= moment:
                return at
        return None  # pragma: no cover - cronsim stops after 50 years without a match

    def explain(self) -> str:
        """The schedule in words (cronsim's), e.g. ``At 02:00``."""
        try:
            return str(CronSim(self.fields, datetime.now(self.zone)).explain())
        except Exception:  # explain() covers less syntax than matching does
            return self.fields


def _zone(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidSchedule(
            "InvalidTimeZone", f"spec.timeZone {name!r} is not an IANA time zone (such as Europe/Berlin or UTC)"
        ) from error
