"""``LoopResult`` and ``OnMax``: what a loop body returns, and what happens at the iteration limit."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class OnMax(StrEnum):
    """Policy when a loop reaches ``max_iterations``."""

    FAIL = "fail"
    """Fail the workflow with a clear error."""

    EXIT_WITH_LAST = "exit_with_last"
    """Leave the loop with the last iteration's value."""

    @classmethod
    def parse(cls, value: str | OnMax) -> OnMax:
        """``value`` as a policy, or sayiir's ``ValueError`` naming the two valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"Invalid on_max policy: {value!r}. Use 'fail' or 'exit_with_last'.") from None


class LoopResult(Generic[T]):
    """Return ``LoopResult.again(value)`` to iterate again, ``LoopResult.done(value)`` to leave.

    On the wire it is ``{"_loop": "again" | "done", "value": ...}``, as in sayiir.
    """

    __slots__ = ("_tag", "_value")

    def __init__(self, tag: str, value: Any) -> None:
        if tag not in ("again", "done"):
            raise ValueError(f"LoopResult tag must be 'again' or 'done', got {tag!r}")
        self._tag = tag
        self._value = value

    @classmethod
    def again(cls, value: T) -> LoopResult[T]:
        return cls("again", value)

    @classmethod
    def done(cls, value: T) -> LoopResult[T]:
        return cls("done", value)

    @property
    def is_done(self) -> bool:
        return self._tag == "done"

    @property
    def is_again(self) -> bool:
        return self._tag == "again"

    @property
    def value(self) -> T:
        return self._value  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        return {"_loop": self._tag, "value": self._value}

    def __repr__(self) -> str:
        return f"LoopResult.{self._tag}({self._value!r})"
