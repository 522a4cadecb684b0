"""One attempt of one invocation: replays user code against its journal and runs it forward.

The :class:`Journal` decides what is recorded; this module adds the asyncio mechanics: durable
futures, local ``ctx.run`` tasks, checkpointing through the channel, suspension, and turning the
handler's end into an :class:`~tarry.protocol.Outcome`.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._journal import Journal
from .clock import Clock
from .deadline import Deadline
from .errors import AttemptAborted, NonDeterminismError, SuspendedSignal, TerminalError
from .limits import command_problem
from .operations import run as _run
from .operations.base import DurableFuture
from .protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    CheckpointDeferred,
    Command,
    Completion,
    Failure,
    InvokeRequest,
    InvokeResponse,
    Outcome,
)
from .retry import RetryPolicy
from .serde import encoding_problem, to_json


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
        deadline: Deadline | None = None,
        suspend_everywhere: bool = False,
    ) -> None:
        """``suspend_everywhere``: a testing mode (:data:`tarry.endpoint.SUSPEND_EVERYWHERE`)
        in which every await of what was not complete when the attempt began ends the
        attempt, suspended, once what it ran is durable; the next attempt replays to there."""
        self.request = request
        self.suspend_everywhere = suspend_everywhere
        self._known: set[int] = set()  # entries complete when the attempt began
        self.journal = Journal(request["journal"], request["completions"])
        self.channel = channel
        self.clock = clock
        self.deadline = deadline
        self.retry_count = request["retry_count"]
        state = request.get("state")
        self.state: dict[str, Any] | None = dict(state) if state is not None else None
        # A workflow key's completed promises; None for handlers that are not a workflow's.
        self.promises: dict[str, Completion] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._abort: Outcome | None = None
        self._main: asyncio.Task[Outcome] | None = None
        self._flush_lock = asyncio.Lock()
        self._appending: asyncio.Task[bool] | None = None  # the channel append in flight
        # Why an append failed, if one did: what is unflushed may or may not be stored.
        self._discard: str | None = None
        self._checkpointed = {"commands": 0, "completions": 0}
        self._longest_run_ms = 0.0  # the longest step this attempt ran, for the deadline

    # -- futures and waiting -------------------------------------------------------------

    def future(self, index: int, result_type: Any = Any) -> DurableFuture[Any]:
        fut: DurableFuture[Any] = DurableFuture(self, index, result_type)
        completion = self.journal.completion(index)
        if completion is not None:
            fut.resolve(completion)
            self._known.add(index)
        return fut

    async def wait_all(self, futures: list[DurableFuture[Any]]) -> None:
        await self._wait(futures, need_all=True)

    async def wait_any(self, futures: list[DurableFuture[Any]]) -> None:
        await self._wait(futures, need_all=False)

    async def _wait(self, futures: list[DurableFuture[Any]], need_all: bool) -> None:
        if self.suspend_everywhere:
            await self._suspend_unless_known(futures, need_all)
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

    async def _suspend_unless_known(
        self, futures: list[DurableFuture[Any]], need_all: bool
    ) -> None:
        """Suspend-everywhere: return if what the handler awaits was complete when the attempt
        began (all of it, or one for ``need_all`` false); else let the steps running finish
        (each makes its result durable) and end the attempt, suspended on the rest. The
        runtime invokes it again as soon as one of them is complete (at once for a step done
        here), and the next attempt replays up to this await."""
        known = [f.index in self._known for f in futures]
        if all(known) if need_all else any(known):
            return
        if self._runs:
            await asyncio.wait(list(self._runs))
        raise SuspendedSignal(sorted(f.index for f, k in zip(futures, known, strict=True) if not k))

    # -- ctx.run ---------------------------------------------------------------------------

    def start_run(
        self,
        future: DurableFuture[Any],
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        policy: RetryPolicy | None,
    ) -> None:
        if self.deadline is not None and not self.deadline.time_for(int(self._longest_run_ms)):
            # Not enough time left to expect it to finish: end the attempt with what is done;
            # the next one starts the step afresh.
            self.abort({"kind": "flush"})
            return
        self._spawn_run(self._execute_run(future, name, fn, args, policy))

    def start_at_most_once(
        self,
        future: DurableFuture[Any],
        command: Command,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        """Start an at-most-once step that has no result yet. New in this attempt: store its
        command, then run the body (with no channel, the attempt ends to store it, and the next
        one runs the body). Stored before: the body may have run, so it is completed as
        interrupted, unless this is the attempt the command says may run it."""
        name = command["name"]
        if self.journal.recorded_at(future.index) is None:
            if self.channel is None or (
                self.deadline is not None and not self.deadline.time_for(int(self._longest_run_ms))
            ):
                self.abort({"kind": "flush"})  # the next attempt runs it (see _unstarted)
                return
            self._spawn_run(self._store_then_run(future, name, fn, args))
        elif command.get("runs_in") == self.request["epoch"]:
            self._spawn_run(self._execute_run(future, name, fn, args, None, at_most_once=True))
        else:
            self._spawn_run(self._finish_run(future, {"failure": _run.interrupted(name)}))

    def _spawn_run(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _store_then_run(
        self, future: DurableFuture[Any], name: str, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        if not self.journal.durable(future.index):
            assert self.channel is not None  # (start_at_most_once ended the attempt otherwise)
            if not await self._checkpoint(self.channel):
                return  # the attempt ends; the body did not start
        await self._execute_run(future, name, fn, args, None, at_most_once=True)

    async def _execute_run(
        self,
        future: DurableFuture[Any],
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        policy: RetryPolicy | None,
        at_most_once: bool = False,
    ) -> None:
        completion: Completion
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(*args)
            else:
                # A sync callable runs in a worker thread: it must not block the event loop.
                value = await asyncio.to_thread(fn, *args)
                if inspect.isawaitable(value):
                    value = await value
            completion = {"value": to_json(value)}
            problem = encoding_problem(completion["value"])
            if problem is not None:  # it never will be: no use retrying
                raise TerminalError(f"the result of run {name!r} is not JSON: {problem}")
        except TerminalError as exc:
            completion = {"failure": _failure_of(exc)}
        except Exception as exc:
            tries = self.retry_count + 1
            limit = policy.max_attempts if policy is not None else None
            if at_most_once:  # running it again could repeat what it did before it failed
                message = f"run {name!r} failed (at most once, so not retried): {exc!r}"
            elif limit is None or tries < limit:
                delay = policy.delay_ms(self.retry_count) if policy is not None else None
                self.abort(_retry(f"run {name!r} failed: {_describe_exception(exc)}", delay))
                return
            else:
                message = f"run {name!r} failed after {tries} attempts: {exc!r}"
            completion = {"failure": {"code": 500, "message": message}}
        self._longest_run_ms = max(self._longest_run_ms, (loop.time() - began) * 1000)
        await self._finish_run(future, completion)

    async def _finish_run(self, future: DurableFuture[Any], completion: Completion) -> None:
        """Journal a step's result and make it durable before the handler sees it."""
        self.journal.complete(future.index, completion)
        if self.channel is None:
            # Request/response mode: the result becomes durable when this attempt ends.
            self.abort({"kind": "flush"})
            return
        if await self._checkpoint(self.channel):
            future.resolve(completion)

    async def _checkpoint(self, channel: CheckpointChannel) -> bool:
        """Make everything unflushed durable through the channel; False if the attempt ends
        instead. The append runs as a task of its own, shielded: a step cancelled meanwhile
        (the attempt is ending) does not leave it half-known, :meth:`execute` waits for it."""
        async with self._flush_lock:
            if self._abort is not None:
                return False
            commands, completions = self.journal.peek_unflushed()
            self._appending = asyncio.ensure_future(self._append(channel, commands, completions))
            return await asyncio.shield(self._appending)

    async def _append(
        self,
        channel: CheckpointChannel,
        commands: list[Command],
        completions: dict[str, Completion],
    ) -> bool:
        try:
            await channel.append(commands, completions)
        except CheckpointDeferred:
            self.abort({"kind": "flush"})  # the runtime stores them, and invokes again at once
            return False
        except TerminalError as exc:  # a value the store cannot keep: nothing was stored
            self._discard = exc.message
            self.abort({"kind": "failed", "failure": _failure_of(exc)})
            return False
        except Exception as exc:
            self._discard = f"checkpoint failed: {_describe_exception(exc)}"
            self.abort(_retry(self._discard, None))
            return False
        self.journal.mark_flushed(len(commands), completions)
        self._checkpointed["commands"] += len(commands)
        self._checkpointed["completions"] += len(completions)
        return True

    def _time_up(self) -> None:
        """The deadline's margin is reached: stop the steps still running, end with what is
        durable (their next attempt starts them again)."""
        self.abort({"kind": "flush"})

    def abort(self, outcome: Outcome) -> None:
        """End the attempt early with ``outcome`` (the first abort wins)."""
        if self._abort is None:
            self._abort = outcome
            if self._main is not None and not self._main.done():
                self._main.cancel()

    # -- the attempt as a whole ------------------------------------------------------------

    async def execute(self, call: Callable[[], Awaitable[Any]]) -> InvokeResponse:
        loop = asyncio.get_running_loop()
        self._main = asyncio.create_task(self._drive(call))
        timer = None
        if self.deadline is not None:
            timer = loop.call_later(self.deadline.stop_in_ms() / 1000, self._time_up)
        try:
            outcome = await self._main
        except asyncio.CancelledError:
            if self._abort is None:
                self._cancel_runs()  # the attempt itself was cancelled (killed): stop its steps
                raise
            outcome = self._abort
        finally:
            if timer is not None:
                timer.cancel()
        await asyncio.gather(*self._cancel_runs(), return_exceptions=True)
        if self._appending is not None:
            await asyncio.wait([self._appending])  # known stored, or known failed
        commands, completions = self.journal.peek_unflushed()
        if self._discard is not None:
            commands, completions = [], {}
            if outcome.get("kind") == "flush":  # it was ending anyway; what it had is dropped
                outcome = _retry(self._discard, None)
        if outcome.get("kind") not in ("completed", "failed"):
            commands, completions = self._unstarted(commands, completions)
        if outcome.get("kind") == "flush" and not (
            commands or completions or any(self._checkpointed.values())
        ):
            # Stopped before anything new could be stored (the deadline came first): invoked
            # again it would do the same, so this counts as a failed attempt.
            outcome = _retry("the deployment's time ran out before a step could finish", None)
        response: InvokeResponse = {
            "protocol": PROTOCOL_VERSION,
            "commands": commands,
            "completions": completions,
            "outcome": outcome,
        }
        if self.channel is not None:
            response["checkpointed"] = {
                "commands": self._checkpointed["commands"],
                "completions": self._checkpointed["completions"],
            }
        return response

    def _unstarted(
        self, commands: list[Command], completions: dict[str, Completion]
    ) -> tuple[list[Command], dict[str, Completion]]:
        """What the attempt hands over, when an at-most-once step among it has not started (its
        command was never stored, so neither did its body). With a channel, the next attempt
        stores the step itself and runs it: what is handed over stops short of it. Without, the
        step is stored now and the next attempt (epoch + 1) is the one that runs its body."""
        if self.channel is None:
            after = self.request["epoch"] + 1
            return [_runs_in(c, after) if _at_most_once(c) else c for c in commands], completions
        base = self.journal.stored
        for offset, command in enumerate(commands):
            if _at_most_once(command):
                kept = {k: v for k, v in completions.items() if int(k) < base + offset}
                return commands[:offset], kept
        return commands, completions

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
                problem = encoding_problem(value)
                if problem is not None:
                    raise TerminalError(f"the handler's result is not JSON: {problem}")
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
        """Journal the handler's next context call. A new one that cannot be stored (a key over
        the limits, a value that is not JSON: :func:`tarry.limits.command_problem`) raises
        :class:`TerminalError` (400) at the call, and is not journaled; on replay the command is
        the recorded one."""
        if not self.journal.replaying:
            problem = command_problem(command)
            if problem is not None:
                raise TerminalError(problem, status_code=400)
        return self.journal.next(command)

    def journal_position(self) -> int:
        """The index the handler's next command will take."""
        return self.journal.position


def _at_most_once(command: Command) -> bool:
    return command.get("kind") == "run" and bool(command.get("at_most_once"))


def _runs_in(command: Command, epoch: int) -> Command:
    return {**command, "runs_in": epoch}


def _retry(error: str, delay_ms: int | None) -> Outcome:
    return {"kind": "retry", "error": error, "delay_ms": delay_ms}


__all__ = ["Attempt"]
