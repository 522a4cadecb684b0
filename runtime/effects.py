"""Where the effects of a committed write go: the effect scheduler the invoker is given.

A store write returns what must happen next (:class:`~tarry.runtime.store.Effects`): drive
these invocations, wake that one at T. The invoker hands them to a :class:`Scheduler` and awaits
it, so nothing is left to a task that may be frozen: in one process (``tarry dev``/``serve``)
the scheduler starts asyncio tasks and arms the timer wheel; on AWS it sends SQS messages
(``runtime.queue``), and the store stays the truth either way — driving an invocation that is
not ready, or firing a timer that already fired, does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from .store import Timer


class Scheduler(Protocol):
    async def drive(self, invocation_ids: Sequence[str]) -> None:
        """Have each invocation driven (soon, by some process) until it is no longer ready."""
        ...

    async def arm(self, timers: Sequence[Timer]) -> None:
        """Have each timer fired at (never before) its time."""
        ...


class LocalScheduler:
    """One process: drive in a task of this process, fire from this process's timer wheel."""

    def __init__(self, drive: Callable[[str], None], arm: Callable[[Timer], None]) -> None:
        self._drive = drive
        self._arm = arm

    async def drive(self, invocation_ids: Sequence[str]) -> None:
        for invocation_id in invocation_ids:
            self._drive(invocation_id)

    async def arm(self, timers: Sequence[Timer]) -> None:
        for timer in timers:
            self._arm(timer)


__all__ = ["LocalScheduler", "Scheduler"]
