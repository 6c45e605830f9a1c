"""``WorkflowFailure``: what a flow's failure handler (``Flow(...).on_failure(fn)``) is called with.

Annotate the handler's parameter with it to get the model (else the handler gets a plain dict
with the same keys). The engine core builds the data (:mod:`plait._core.engine`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class WorkflowFailure(BaseModel):
    """Why an instance failed, and what it was started with."""

    error: str  # "ExceptionType: message", as in the instance's status
    input: Any = None  # the instance's input
    instance_id: str
    workflow: str
