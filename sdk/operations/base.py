"""What every operation shares: the durable future a context call hands back."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tarry.errors import StepInterrupted, TerminalError
from tarry.protocol import Completion
from tarry.serde import from_json

if TYPE_CHECKING:
    from tarry._attempt import Attempt

T = TypeVar("T")


class DurableFuture(Generic[T]):
    """The result of a journaled operation. Await it; while it is not done and nothing in this
    process can finish it, the handler suspends and is invoked again when it is done."""

    def __init__(self, attempt: Attempt, index: int, result_type: Any = Any) -> None:
        self._attempt = attempt
        self.index = index
        self._type = result_type
        self._completion: Completion | None = None
        self._event = asyncio.Event()

    @property
    def attempt(self) -> Attempt:
        """The attempt (one handler run) this future belongs to."""
        return self._attempt

    def done(self) -> bool:
        return self._completion is not None

    def resolve(self, completion: Completion) -> None:
        if self._completion is None:
            self._completion = completion
            self._event.set()

    async def wait(self) -> None:
        """Wait until done, without suspending (only a local step can finish it)."""
        await self._event.wait()

    def result(self) -> T:
        """The value of a done future; raises :class:`TerminalError` for a failure
        (:class:`~tarry.StepInterrupted` for an interrupted at-most-once step)."""
        if self._completion is None:
            raise RuntimeError("the operation is not done yet")
        failure = self._completion.get("failure")
        if failure is not None:
            # An at-most-once step that was interrupted has an error of its own.
            error = StepInterrupted if failure.get("interrupted") else TerminalError
            raise error(failure["message"], status_code=failure["code"])
        value: T = from_json(self._completion.get("value"), self._type)
        return value

    def __await__(self) -> Generator[Any, None, T]:
        yield from self._attempt.wait_all([self]).__await__()
        return self.result()


__all__ = ["DurableFuture"]
