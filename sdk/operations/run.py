"""``ctx.run``: a side effect whose result is journaled, so it never runs again once stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
) -> DurableFuture[Any]:
    index, _ = attempt.record({"kind": "run", "name": name})
    future = attempt.future(index, result_type)
    if not future.done():
        attempt.start_run(future, name, fn, args, policy)
    return future
