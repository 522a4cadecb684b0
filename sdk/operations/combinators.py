"""Awaiting several durable operations at once.

``gather`` waits for all, deterministically. ``select`` takes the first to finish; which one won
is journaled, so a replay takes the same branch even when, by then, all of them are done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarry.protocol import Command

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def _attempt_of(futures: list[DurableFuture[Any]]) -> Attempt:
    attempts = {id(f.attempt) for f in futures}
    if len(attempts) != 1:
        raise ValueError("combinators take futures of one handler's context")
    return futures[0].attempt


async def gather(*futures: DurableFuture[Any]) -> list[Any]:
    """Wait for every future; return their results in order, or raise the first failure (in
    argument order) once all are done.

    >>> a, b = await gather(ctx.run("a", fa), ctx.sleep(timedelta(seconds=1)))  # doctest: +SKIP
    """
    if not futures:
        return []
    attempt = _attempt_of(list(futures))
    await attempt.wait_all(list(futures))
    return [f.result() for f in futures]


async def select(**futures: DurableFuture[Any]) -> tuple[str, Any]:
    """Wait for the first of the named futures; return ``(name, result)``.

    A failure of the winner raises :class:`~tarry.TerminalError`.

    >>> match await select(done=ctx.service_call(step, 1), timeout=ctx.sleep(timedelta(1))):
    ...     case ["timeout", _]: ...  # doctest: +SKIP
    """
    if not futures:
        raise ValueError("select needs at least one future")
    names = list(futures)
    items = [futures[n] for n in names]
    attempt = _attempt_of(items)
    command: Command = {"kind": "select", "name": ",".join(names)}
    if attempt.journal.recorded_at(attempt.journal_position()) is not None:
        # Replaying: the journal must hold this same select; take the branch it recorded.
        _, recorded = attempt.record(command)
        choice = recorded["value"]
        await attempt.wait_all([items[choice]])
    else:
        await attempt.wait_any(items)
        choice = next(i for i, f in enumerate(items) if f.done())
        attempt.record({**command, "value": choice})  # the winner, journaled
    return names[choice], items[choice].result()


__all__ = ["gather", "select"]
