"""The result waiter: how a caller waits for an invocation to complete.

In one process the invoker resolves local futures as it ends attempts. When other processes
share the store the invocation may complete elsewhere, and the waiter reads it from the store:
either each wait on its own, backing off from ``poll_from_ms`` to ``poll_max_ms`` between reads
(``poll=True``: a Lambda function serving one request at a time, whose result a worker
produces), or every wait at once, one read after the other, when the process's sweep calls
:meth:`ResultWaiter.poll` (``tarry serve`` with many callers waiting at once: reads in a burst
would crowd out the attempts that produce the results).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tarry.clock import Clock

from .store import Invocation, Store


class Stopping(Exception):
    """Raised to a caller waiting for an invocation while the process stops: the invocation
    goes on (after a restart); the caller may attach to it again."""

    def __init__(self, invocation_id: str) -> None:
        super().__init__(f"the runtime is stopping before {invocation_id} completed")
        self.invocation_id = invocation_id


class ResultWaiter:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        poll: bool = False,
        poll_from_ms: int = 20,
        poll_max_ms: int = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._poll = poll
        self._from = poll_from_ms
        self._max = poll_max_ms
        self._futures: dict[str, list[asyncio.Future[Invocation]]] = {}
        self._stopped = False

    def watch(self, invocation_id: str) -> asyncio.Future[Invocation]:
        """A future resolved when this process sees the invocation complete: register it before
        anything could complete it (or use :meth:`wait`, which also reads the store)."""
        future: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        if self._stopped:
            future.set_exception(Stopping(invocation_id))
            return future
        self._futures.setdefault(invocation_id, []).append(future)
        return future

    def stop(self) -> None:
        """Answer every wait, now and from now on, with :class:`Stopping`."""
        self._stopped = True
        futures, self._futures = self._futures, {}
        for invocation_id, waits in futures.items():
            for future in waits:
                if not future.done():
                    future.set_exception(Stopping(invocation_id))

    def finished(self, invocation: Invocation) -> None:
        for future in self._futures.pop(invocation.id, []):
            if not future.done():
                future.set_result(invocation)

    async def wait(
        self,
        invocation_id: str,
        timeout_ms: int | None = None,
        future: asyncio.Future[Invocation] | None = None,
    ) -> Invocation | None:
        """The invocation once completed; ``None`` if it has not completed within
        ``timeout_ms`` (``None``: wait for as long as it takes). ``future``: one from
        :meth:`watch` registered earlier."""
        deadline = None if timeout_ms is None else self._clock.now_ms() + timeout_ms
        if future is None:  # it may have completed already
            future = self.watch(invocation_id)
            if self._stopped:
                future.result()  # raises Stopping
            inv = await self._store.get(invocation_id)
            if inv is not None and inv.status == "completed":
                self._forget(invocation_id, future)
                return inv
        try:
            if deadline is None and not self._poll:
                return await future  # this process will see it complete
            pause = self._from
            while True:
                left = None if deadline is None else deadline - self._clock.now_ms()
                if left is not None and left <= 0:
                    return None
                step = pause if self._poll else None
                if step is None or (left is not None and left < step):
                    step = left
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(future), None if step is None else step / 1000
                    )
                except TimeoutError:
                    pass
                if self._poll:
                    inv = await self._store.get(invocation_id)
                    if inv is not None and inv.status == "completed":
                        return inv
                    pause = min(self._max, pause * 2)
        finally:
            self._forget(invocation_id, future)

    async def poll(self, skip: Callable[[str], bool]) -> None:
        """Read each invocation waited on (but those ``skip`` names) and resolve its waits if
        it completed: for results that other processes produce."""
        for invocation_id in list(self._futures):
            if skip(invocation_id):
                continue
            inv = await self._store.get(invocation_id)
            if inv is not None and inv.status == "completed":
                self.finished(inv)

    def _forget(self, invocation_id: str, future: asyncio.Future[Invocation]) -> None:
        futures = self._futures.get(invocation_id, [])
        if future in futures:
            futures.remove(future)
            if not futures:
                del self._futures[invocation_id]
        future.cancel()  # (a no-op once resolved)

__all__ = ["ResultWaiter", "Stopping"]
