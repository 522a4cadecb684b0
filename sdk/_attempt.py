"""One attempt of one invocation: replays user code against its journal and runs it forward.

The :class:`Journal` decides what is recorded; this module adds the asyncio mechanics: durable
futures, local ``ctx.run`` tasks, checkpointing through the channel, suspension, and turning the
handler's end into an :class:`~tarry.protocol.Outcome`.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from ._journal import Journal
from .clock import Clock
from .errors import AttemptAborted, NonDeterminismError, SuspendedSignal, TerminalError
from .operations.base import DurableFuture
from .protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    Command,
    Completion,
    Failure,
    InvokeRequest,
    InvokeResponse,
    Outcome,
)
from .retry import RetryPolicy
from .serde import dumps, to_json


def _failure_of(exc: TerminalError) -> Failure:
    return {"code": exc.status_code, "message": exc.message}


def _describe_exception(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Attempt:
    """Drives a handler through one attempt. Created per invoke request."""

    def __init__(
        self,
        request: InvokeRequest,
        channel: CheckpointChannel | None,
        clock: Clock,
    ) -> None:
        self.request = request
        self.journal = Journal(request["journal"], request["completions"])
        self.channel = channel
        self.clock = clock
        self.retry_count = request["retry_count"]
        self.state: dict[str, Any] | None = (
            dict(request["state"]) if request["state"] is not None else None
        )
        # A workflow key's completed promises; None for handlers that are not a workflow's.
        self.promises: dict[str, Completion] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._abort: Outcome | None = None
        self._main: asyncio.Task[Outcome] | None = None
        self._flush_lock = asyncio.Lock()

    # -- futures and waiting -------------------------------------------------------------

    def future(self, index: int, result_type: Any = Any) -> DurableFuture[Any]:
        fut: DurableFuture[Any] = DurableFuture(self, index, result_type)
        completion = self.journal.completion(index)
        if completion is not None:
            fut.resolve(completion)
        return fut

    async def wait_all(self, futures: list[DurableFuture[Any]]) -> None:
        await self._wait(futures, need_all=True)

    async def wait_any(self, futures: list[DurableFuture[Any]]) -> None:
        await self._wait(futures, need_all=False)

    async def _wait(self, futures: list[DurableFuture[Any]], need_all: bool) -> None:
        while True:
            pending = [f for f in futures if not f.done()]
            if not pending or (not need_all and len(pending) < len(futures)):
                return
            running = list(self._runs)
            if not running:
                # Nothing in this process can finish them: end the attempt until one is done.
                raise SuspendedSignal(sorted(f.index for f in pending))
            waiters = [asyncio.ensure_future(f.wait()) for f in pending]
            try:
                await asyncio.wait([*running, *waiters], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    # -- ctx.run ---------------------------------------------------------------------------

    def start_run(
        self,
        future: DurableFuture[Any],
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        policy: RetryPolicy | None,
    ) -> None:
        task = asyncio.create_task(self._execute_run(future, name, fn, args, policy))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _execute_run(
        self,
        future: DurableFuture[Any],
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        policy: RetryPolicy | None,
    ) -> None:
        completion: Completion
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(*args)
            else:
                # A sync callable runs in a worker thread: it must not block the event loop.
                value = await asyncio.to_thread(fn, *args)
                if inspect.isawaitable(value):
                    value = await value
            completion = {"value": to_json(value)}
            dumps(completion["value"])
        except TerminalError as exc:
            completion = {"failure": _failure_of(exc)}
        except Exception as exc:
            tries = self.retry_count + 1
            limit = policy.max_attempts if policy is not None else None
            if limit is None or tries < limit:
                delay = policy.delay_ms(self.retry_count) if policy is not None else None
                self.abort(_retry(f"run {name!r} failed: {_describe_exception(exc)}", delay))
                return
            message = f"run {name!r} failed after {tries} attempts: {exc!r}"
            completion = {"failure": {"code": 500, "message": message}}
        self.journal.complete(future.index, completion)
        if self.channel is None:
            # Request/response mode: the result becomes durable when this attempt ends.
            self.abort({"kind": "flush"})
            return
        async with self._flush_lock:
            commands, completions = self.journal.peek_unflushed()
            try:
                await self.channel.append(commands, completions)
            except Exception as exc:
                self.abort(_retry(f"checkpoint failed: {_describe_exception(exc)}", None))
                return
            self.journal.mark_flushed(len(commands), completions)
        future.resolve(completion)

    def abort(self, outcome: Outcome) -> None:
        """End the attempt early with ``outcome`` (the first abort wins)."""
        if self._abort is None:
            self._abort = outcome
            if self._main is not None and not self._main.done():
                self._main.cancel()

    # -- the attempt as a whole ------------------------------------------------------------

    async def execute(self, call: Callable[[], Awaitable[Any]]) -> InvokeResponse:
        self._main = asyncio.create_task(self._drive(call))
        try:
            outcome = await self._main
        except asyncio.CancelledError:
            if self._abort is None:
                self._cancel_runs()  # the attempt itself was cancelled (killed): stop its steps
                raise
            outcome = self._abort
        await asyncio.gather(*self._cancel_runs(), return_exceptions=True)
        commands, completions = self.journal.peek_unflushed()
        return {
            "protocol": PROTOCOL_VERSION,
            "commands": commands,
            "completions": completions,
            "outcome": outcome,
        }

    def _cancel_runs(self) -> list[asyncio.Task[None]]:
        """Cancel the runs still going (started but never awaited); return them."""
        leftover = list(self._runs)
        for task in leftover:
            task.cancel()
        return leftover

    async def _drive(self, call: Callable[[], Awaitable[Any]]) -> Outcome:
        try:
            try:
                value = to_json(await call())
                try:
                    dumps(value)
                except (TypeError, ValueError) as exc:
                    raise TerminalError(f"the handler's result is not JSON: {exc}") from exc
            except TerminalError as exc:
                failure = _failure_of(exc)
                self.journal.next({"kind": "output", "failure": failure})
                return {"kind": "failed", "failure": failure}
            self.journal.next({"kind": "output", "value": value})
            return {"kind": "completed", "value": value}
        except SuspendedSignal as signal:
            return {"kind": "suspended", "waiting_on": signal.waiting_on}
        except NonDeterminismError as exc:
            return {"kind": "retry", "error": str(exc), "non_deterministic": True}
        except AttemptAborted:
            return self._abort or _retry("attempt aborted", None)
        except Exception as exc:
            return _retry(_describe_exception(exc), None)

    def record(self, command: Command) -> tuple[int, Command]:
        return self.journal.next(command)

    def journal_position(self) -> int:
        """The index the handler's next command will take."""
        return self.journal.position


def _retry(error: str, delay_ms: int | None) -> Outcome:
    return {"kind": "retry", "error": error, "delay_ms": delay_ms}


__all__ = ["Attempt"]
