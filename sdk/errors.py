"""Errors users see, and the control-flow signals they must never swallow.

This module imports nothing but the standard library (see STYLE.md, point 7).
"""

from __future__ import annotations


class TerminalError(Exception):
    """Fails the invocation (or the ``ctx.run`` step) without retrying.

    >>> raise TerminalError("the user already exists", status_code=409)  # doctest: +SKIP

    Any other exception raised by a handler is treated as transient and retried with backoff.
    """

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"TerminalError({self.message!r}, status_code={self.status_code})"


class StepInterrupted(TerminalError):
    """An at-most-once step (``ctx.run(..., at_most_once=True)``) was interrupted: its body may
    have run, or run in part, but its result was never stored, and it is not run again.

    Raised by ``await ctx.run(...)`` on this attempt and every replay (it is journaled as the
    step's result). Catch it to find out what happened and compensate:

    >>> try:  # doctest: +SKIP
    ...     await ctx.run("charge", charge_card, order, at_most_once=True)
    ... except tarry.StepInterrupted:
    ...     return await ctx.run("look up the charge", find_charge, order)

    Uncaught, it fails the invocation like any :class:`TerminalError`.
    """

    def __repr__(self) -> str:
        return f"StepInterrupted({self.message!r}, status_code={self.status_code})"


class NonDeterminismError(BaseException):
    """The handler's code no longer matches its journal.

    Derives from ``BaseException`` so ``except Exception`` in user code cannot hide it.
    """

    def __init__(self, index: int, expected: str, actual: str) -> None:
        super().__init__(
            f"non-deterministic replay at journal entry {index}: "
            f"the journal has {expected} but the handler now does {actual}"
        )
        self.index = index
        self.expected = expected
        self.actual = actual


class SuspendedSignal(BaseException):
    """Raised inside a handler when it must wait for something that is not done yet.

    The attempt ends; the runtime invokes the handler again when one of ``waiting_on``
    (journal indices) completes. Never catch it.
    """

    def __init__(self, waiting_on: list[int]) -> None:
        super().__init__(f"suspended waiting on entries {waiting_on}")
        self.waiting_on = waiting_on


class AttemptAborted(BaseException):
    """Ends the current attempt early (a ``ctx.run`` failed and will be retried, or its result
    must be flushed before the handler may go on). Never catch it."""


__all__ = [
    "AttemptAborted",
    "NonDeterminismError",
    "StepInterrupted",
    "SuspendedSignal",
    "TerminalError",
]
