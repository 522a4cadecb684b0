"""Durable promises: named results on a workflow key, resolved once by any of the workflow's
handlers and awaited by any of them — before or after the resolution, across suspensions.

The attempt carries the key's already-completed promises (eagerly, like state), so awaiting or
peeking a promise that is done costs no round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarry.errors import TerminalError
from tarry.protocol import Command, Completion
from tarry.serde import from_json

from .awakeable import rejection, resolution
from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


class DurablePromise:
    """A workflow's named promise: ``await ctx.promise("approved").value()``."""

    def __init__(self, attempt: Attempt, name: str, result_type: Any = Any) -> None:
        if attempt.promises is None:
            raise TypeError("durable promises are only available to workflow handlers")
        self._attempt = attempt
        self._promises = attempt.promises
        self.name = name
        self._type = result_type

    def value(self) -> DurableFuture[Any]:
        """The promise's value once it is resolved (a rejection raises :class:`TerminalError`)."""
        index, _ = self._attempt.record({"kind": "get_promise", "name": self.name})
        known = self._promises.get(self.name)
        if known is not None and self._attempt.journal.completion(index) is None:
            self._attempt.journal.complete(index, known)
        return self._attempt.future(index, self._type)

    async def peek(self) -> Any:
        """The value if the promise is resolved, else ``None``; never waits."""
        command: Command = {"kind": "peek_promise", "name": self.name}
        known = self._promises.get(self.name)
        if known is not None:
            command["completion"] = known
        _, recorded = self._attempt.record(command)
        completion = recorded.get("completion")
        if completion is None:
            return None
        failure = completion.get("failure")
        if failure is not None:
            raise TerminalError(failure["message"], status_code=failure["code"])
        return from_json(completion.get("value"), self._type)

    def resolve(self, value: Any = None) -> DurableFuture[None]:
        """Resolve the promise. Awaiting the result is optional; it fails with 409 if the
        promise was already completed (the first completion stands)."""
        return self._complete(resolution(value))

    def reject(self, message: str, code: int = 500) -> DurableFuture[None]:
        """Reject the promise: its awaiters get a :class:`TerminalError`."""
        return self._complete(rejection(message, code))

    def _complete(self, completion: Completion) -> DurableFuture[None]:
        index, _ = self._attempt.record(
            {"kind": "complete_promise", "name": self.name, "completion": completion}
        )
        future: DurableFuture[None] = self._attempt.future(index, None)
        return future
