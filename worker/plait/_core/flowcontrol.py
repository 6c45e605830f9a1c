"""Flow control as data: concurrency limits and rate limits, and the keys that group them.

A :class:`Concurrency` on a flow limits its instances running at once (per key of their input); on
a task it limits attempts of that task running at once in a namespace. A :class:`RateLimit` on a
task limits how many attempts start per period. Both are part of a definition (and of its hash).
The operator enforces them (``plait_operator.flowcontrol``); this module only describes them and
resolves keys. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Strategy = Literal["queue", "cancel_newest", "cancel_in_progress"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|m|h)\s*$")
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_KEY_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


def _check_key_path(key: str | None, where: str) -> None:
    if key is not None and (not isinstance(key, str) or not _KEY_PATH.match(key)):
        raise ValueError(
            f"{where}: key must be a dotted path into the input like 'customer.id' (no empty parts), got {key!r}"
        )


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``max_runs`` at once per value of ``key`` (a dotted path into the input; None: one group).

    ``strategy`` says what happens to one more when every slot is taken: ``queue`` (it waits, first
    in first out), ``cancel_newest`` (it ends ``Cancelled``) or ``cancel_in_progress`` (the oldest
    running one is cancelled and the new one takes its slot). Tasks only queue.
    """

    max_runs: int
    key: str | None = None
    strategy: Strategy = "queue"

    def __post_init__(self) -> None:
        if isinstance(self.max_runs, bool) or not isinstance(self.max_runs, int) or self.max_runs < 1:
            raise ValueError(f"Concurrency: max_runs must be a whole number >= 1, got {self.max_runs!r}")
        _check_key_path(self.key, "Concurrency")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Concurrency: strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"maxRuns": self.max_runs, "strategy": self.strategy}
        if self.key is not None:
            data["key"] = self.key
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Concurrency:
        return cls(int(data["maxRuns"]), data.get("key"), data.get("strategy", "queue"))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` starts per period, e.g. ``"10/s"``, ``"100/m"``, ``"5/2h"``, per value of ``key``.

    Smoothed (a token bucket holding one token): starts are at least ``interval`` seconds apart, so
    over any window the count stays within one of ``limit`` per period.
    """

    limit: str
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit, str) or not _RATE.match(self.limit):
            raise ValueError(
                f'rate_limit must look like "10/s", "100/m" or "5/h" (starts per second, minute or hour; '
                f'"5/2h" for a multiple), got {self.limit!r}'
            )
        count, _ = self._parsed()
        if count < 1:
            raise ValueError(f"rate_limit: the count must be at least 1, got {self.limit!r}")
        _check_key_path(self.key, "RateLimit")

    def _parsed(self) -> tuple[int, float]:
        match = _RATE.match(self.limit)
        assert match is not None
        count, multiple, unit = match.groups()
        return int(count), (int(multiple) if multiple else 1) * _PERIODS[unit]

    @property
    def per_second(self) -> float:
        count, period = self._parsed()
        return count / period

    @property
    def interval(self) -> float:
        """Seconds between two starts."""
        return 1.0 / self.per_second

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"limit": self.limit.replace(" ", "")}
        if self.key is not None:
            data["key"] = self.key
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RateLimit:
        return cls(data["limit"], data.get("key"))


_MISSING = object()


def key_value(value: Any, path: str | None) -> str | None:
    """The group ``value`` falls in for a key ``path``: the text of what the path finds, or None
    when there is no path. Raises ``KeyError`` (with the path) when the input has no such field."""
    if path is None:
        return None
    found: Any = value
    for part in path.split("."):
        if isinstance(found, Mapping):
            found = found.get(part, _MISSING)
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            found = _MISSING
        if found is _MISSING:
            raise KeyError(path)
    if isinstance(found, str):
        return found
    return json.dumps(found, sort_keys=True, separators=(",", ":"))
