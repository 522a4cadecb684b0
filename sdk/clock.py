"""Time, injected. Nothing else in tarry reads the wall clock (ruff TID251 enforces it)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in milliseconds since the epoch, and a way to wait."""

    def now_ms(self) -> int: ...

    async def sleep_until(self, deadline_ms: int) -> None: ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, deadline_ms: int) -> None:
        delay = (deadline_ms - self.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when told to: a test can sleep a simulated day instantly."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        self._now += ms
        self._moved.set()

    async def sleep_until(self, deadline_ms: int) -> None:
        while self._now < deadline_ms:
            self._moved.clear()
            await self._moved.wait()


__all__ = ["Clock", "ManualClock", "SystemClock"]
