"""``ctx.sleep``: a durable timer. The wake time is taken on first execution and journaled, so a
replay keeps the original deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def sleep(attempt: Attempt, duration: timedelta, name: str = "") -> DurableFuture[None]:
    if duration < timedelta(0):
        raise ValueError("a sleep cannot be negative")
    wake_at = attempt.clock.now_ms() + int(duration.total_seconds() * 1000)
    index, _ = attempt.record({"kind": "sleep", "name": name, "wake_at": wake_at})
    future: DurableFuture[Any] = attempt.future(index, None)
    return future
