"""The timer wheel: fires each armed timer once, never before its time."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from tarry.clock import Clock

from .store import StoreBusy, StoreUnavailable, Timer

log = logging.getLogger("tarry.runtime.timers")


class TimerWheel:
    """Keeps armed timers in a heap and calls ``fire`` for each once it is due.

    The store decides whether a timer still stands (``fire_timer`` is idempotent and refuses
    early timers), so arming the same timer twice is harmless.
    """

    def __init__(self, clock: Clock, fire: Callable[[Timer], Awaitable[None]]) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, timer: Timer) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (timer.fire_at, self._seq, timer))
        self._wake.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, _, timer = heapq.heappop(self._heap)
                task = asyncio.create_task(self._fire_one(timer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not self._heap:
                await self._wake.wait()
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep_until(self._heap[0][0]))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([sleeper, waker], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _fire_one(self, timer: Timer) -> None:
        try:
            await self._fire(timer)
        except Exception as exc:
            if isinstance(exc, (StoreUnavailable, StoreBusy)):  # it says what is wrong
                log.warning("timer %s failed: %s; retrying in 1 s", timer, exc)
            else:
                log.exception("timer %s failed; retrying in 1 s", timer)
            await asyncio.sleep(1)
            self.arm(timer)


__all__ = ["TimerWheel"]
