"""Retry policies for ``ctx.run`` steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing ``ctx.run`` step is retried.

    Each retry is a new attempt of the invocation, ``initial_interval * factor**n`` later (capped
    at ``max_interval``). After ``max_attempts`` tries the step's failure is recorded in the
    journal as terminal and ``ctx.run`` raises :class:`~tarry.TerminalError`. ``None`` means
    unbounded: the invocation's own retry limit applies (after which it is paused).
    """

    max_attempts: int | None = None
    initial_interval: timedelta = timedelta(milliseconds=100)
    max_interval: timedelta = timedelta(seconds=10)
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def delay_ms(self, retry_count: int) -> int:
        """The wait before the next try, after ``retry_count`` failed tries."""
        initial = self.initial_interval.total_seconds() * 1000
        cap = self.max_interval.total_seconds() * 1000
        return int(min(cap, initial * self.factor**retry_count))


__all__ = ["RetryPolicy"]
