"""``ctx.sleep``: a durable timer. The wake time is taken on first execution and journaled, so a
replay keeps the original deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tarry.errors import TerminalError
from tarry.limits import delay_problem

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def sleep(attempt: Attempt, duration: timedelta, name: str = "") -> DurableFuture[None]:
    """A timer ``duration`` from now. A duration that is not a ``timedelta``, is negative or
    is over the maximum delay (:data:`tarry.limits.MAX_DELAY_MS`, 100 years) raises
    :class:`TerminalError` (400) at the call: retrying would not change it. (On replay the
    journaled wake time stands, whatever ``duration`` is then.)"""
    if not isinstance(duration, timedelta):
        raise TerminalError(
            f"ctx.sleep takes a timedelta, not {type(duration).__name__}", status_code=400
        )
    duration_ms = duration.total_seconds() * 1000
    if not attempt.journal.replaying:
        problem = delay_problem(duration_ms, "sleep")
        if problem is not None:
            raise TerminalError(problem, status_code=400)
    wake_at = attempt.clock.now_ms() + int(duration_ms)
    index, _ = attempt.record({"kind": "sleep", "name": name, "wake_at": wake_at})
    future: DurableFuture[Any] = attempt.future(index, None)
    return future
