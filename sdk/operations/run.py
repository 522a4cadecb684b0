"""``ctx.run``: a side effect whose result is journaled, so it never runs again once stored.

A step runs *at least once* by default: if its process dies after the body ran and before the
result was stored, the next attempt runs it again. An *at-most-once* step is stored before its
body starts, so an attempt that finds it stored without a result knows the body may have run,
and completes it as interrupted (:class:`~tarry.StepInterrupted`) instead of running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tarry.protocol import Command, Failure
from tarry.retry import RetryPolicy

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def run(
    attempt: Attempt,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    policy: RetryPolicy | None,
    result_type: Any = Any,
    at_most_once: bool = False,
) -> DurableFuture[Any]:
    command: Command = {"kind": "run", "name": name}
    if at_most_once:
        command["at_most_once"] = True
    # On replay the recorded command decides: a step journaled at least once stays so.
    index, recorded = attempt.record(command)
    future = attempt.future(index, result_type)
    if not future.done():
        if recorded.get("at_most_once"):
            attempt.start_at_most_once(future, recorded, fn, args)
        else:
            attempt.start_run(future, name, fn, args, policy)
    return future


def interrupted(name: str) -> Failure:
    """The failure an interrupted at-most-once step is completed with."""
    return {
        "code": 500,
        "message": (
            f"run {name!r} was interrupted: its body may have run, but its result was never "
            "stored, and an at-most-once step is not run again"
        ),
        "interrupted": True,
    }


__all__ = ["interrupted", "run"]
