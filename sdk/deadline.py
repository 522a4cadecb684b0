"""How long an attempt may run, when its host sets a limit (a Lambda function's timeout).

A host that stops the process at a deadline would lose the steps in flight and make the runtime
wait for the timeout to notice. With a :class:`Deadline`, an attempt stops first, on its own
terms: it starts no step it cannot expect to finish, stops the steps still running
``margin_ms`` before the end, and returns what it made durable with a ``flush`` outcome, so
the runtime invokes it again at once and it carries on where it stopped.

>>> left = iter([9_000, 1_500])
>>> deadline = Deadline(lambda: next(left), margin_ms=1_000)
>>> deadline.time_for(step_ms=2_000)     # 9 s left: a 2 s step fits before the margin
True
>>> deadline.time_for(step_ms=2_000)     # 1.5 s left: it does not
False
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """``remaining_ms`` tells the time left (``context.get_remaining_time_in_millis`` on
    Lambda); ``margin_ms`` is kept back to store the attempt's last steps and return."""

    remaining_ms: Callable[[], int]
    margin_ms: int = 1_000

    def time_for(self, step_ms: int) -> bool:
        """Whether a step as long as ``step_ms`` can finish before the margin."""
        return self.remaining_ms() - self.margin_ms > step_ms

    def stop_in_ms(self) -> int:
        """How long until steps still running must be stopped."""
        return max(0, self.remaining_ms() - self.margin_ms)


__all__ = ["Deadline"]
