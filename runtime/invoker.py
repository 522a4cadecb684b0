"""The invoker: drives invocation attempts and acts on what the store says happened.

One attempt: load journal and state (the store bumps the epoch), call the deployment, store the
returned commands and the outcome atomically, then act on the effects — drive what became
ready, arm timers, wake callers waiting on a result.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tarry.clock import Clock
from tarry.protocol import (
    PROTOCOL_VERSION,
    CheckpointMode,
    Command,
    Completion,
    Failure,
    InvokeRequest,
    InvokeResponse,
    Outcome,
)

from .deployments import PayloadTooLarge
from .registry import HandlerEntry, Registry
from .store import (
    AttemptEnd,
    AttemptStart,
    Created,
    Effects,
    Invocation,
    NewInvocation,
    StaleEpoch,
    Store,
    Timer,
    ValueTooLarge,
    first_attempt,
)

log = logging.getLogger("tarry.runtime.invoker")

# A deployment's checkpoint mode, as the invoke request names it.
_WIRE_MODE: dict[str, CheckpointMode] = {
    "inprocess": "channel",
    "http": "http",
    "dynamodb": "dynamodb",
    "none": "none",
}


@dataclass(frozen=True)
class RetryConfig:
    """How the invoker retries failed attempts: exponential backoff with a cap, and after
    ``max_attempts`` failures in a row the invocation is paused (visible, resumable)."""

    initial_ms: int = 50
    factor: float = 2.0
    max_ms: int = 10_000
    max_attempts: int = 30

    def delay_ms(self, failures: int) -> int:
        return int(min(self.max_ms, self.initial_ms * self.factor ** max(0, failures - 1)))


class _Channel:
    """The runtime's end of a checkpoint channel: each append is one epoch-fenced store write.

    In-process deployments call it directly; HTTP deployments reach it through the ingress's
    checkpoint route with the attempt's token."""

    def __init__(self, invoker: Invoker, invocation: Invocation) -> None:
        self._invoker = invoker
        self._invocation = invocation
        self.journal_length = invocation.journal_length
        self.appended = False  # did this attempt make anything durable mid-way?

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        inv = self._invocation
        children = self._invoker.children(inv, self.journal_length, commands)
        effects = await self._invoker.store.append(
            inv.id,
            inv.epoch,
            commands,
            completions,
            children,
            self._invoker.clock.now_ms(),
        )
        self.journal_length += len(commands)
        self.appended = True
        self._invoker.act(effects)


class Invoker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        retry: RetryConfig | None = None,
        checkpoint_url: str | None = None,
    ) -> None:
        self.store = store
        self.checkpoint_url = checkpoint_url  # where HTTP deployments post appends; None: flush
        self._checkpoints: dict[str, _Channel] = {}
        self.registry = registry
        self.clock = clock
        self.retry = retry or RetryConfig()
        self.arm_timer: Callable[[Timer], None] = lambda timer: None
        # Loads deployments registered by another process sharing the store; True if any was
        # new (an invocation may be pinned to one this process has not seen yet).
        self.reload_deployments: Callable[[], Awaitable[bool]] | None = None
        self._driving: set[str] = set()
        self._again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[str, list[asyncio.Future[Invocation]]] = {}
        self._inflight: dict[str, asyncio.Future[InvokeResponse]] = {}  # deployment calls
        self._stopped: set[str] = set()

    # -- scheduling --------------------------------------------------------------------------

    def dispatch(self, invocation_id: str) -> None:
        """Drive ``invocation_id`` until it is no longer ready (idempotent)."""
        if invocation_id in self._driving:
            self._again.add(invocation_id)
            return
        self._spawn(invocation_id)

    def _spawn(
        self,
        invocation_id: str,
        started: AttemptStart | None = None,
        creating: asyncio.Task[Created] | None = None,
    ) -> None:
        self._driving.add(invocation_id)
        task = asyncio.create_task(self._drive(invocation_id, started, creating))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def checkpoint_channel(self, token: str) -> _Channel | None:
        """The channel of the attempt in flight that ``token`` was handed to, if any."""
        return self._checkpoints.get(token)

    def run_started(self, start: AttemptStart) -> None:
        """Drive an invocation whose first attempt the store already began."""
        self._spawn(start.invocation.id, start)

    def speculate(
        self, new: NewInvocation, now: int
    ) -> tuple[asyncio.Task[Created], asyncio.Future[Invocation]]:
        """Create a plain service invocation and start its first attempt at once, overlapping
        the handler with the commit that creates it.

        Only for an invocation that is ready at once and has no state: no object key, no
        idempotency key, no delay. Nothing the attempt writes can commit before the creation
        (the store orders writes, or the attempt waits for it), and no caller sees a result
        before both are durable. Returns the creation and a future of the finished invocation.
        """
        created = asyncio.create_task(self.store.create(new, now, start=True))
        finished = self.watch(new.id)
        self._spawn(new.id, first_attempt(new, now), created)
        return created, finished

    def act(self, effects: Effects) -> None:
        for invocation_id in effects.ready:
            self.dispatch(invocation_id)
        for timer in effects.timers:
            self.arm_timer(timer)
        for finished in effects.finished:
            for waiter in self._waiters.pop(finished.id, []):
                if not waiter.done():
                    waiter.set_result(finished)

    async def fire(self, timer: Timer) -> None:
        self.act(await self.store.fire_timer(timer, self.clock.now_ms()))

    def watch(self, invocation_id: str) -> asyncio.Future[Invocation]:
        """A future that resolves with the invocation when it completes (register it before
        anything could complete it, or use :meth:`wait_finished`)."""
        waiter: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(invocation_id, []).append(waiter)
        return waiter

    async def wait_finished(self, invocation_id: str) -> Invocation:
        """Wait until the invocation completes; return it."""
        waiter = self.watch(invocation_id)
        inv = await self.store.get(invocation_id)
        if inv is not None and inv.status == "completed":
            waiters = self._waiters.get(invocation_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            return inv
        return await waiter

    async def poll_waiters(self) -> None:
        """Resolve waiters whose invocation another process completed (its effects, which
        resolve waiters here, happened there)."""
        for invocation_id in list(self._waiters):
            if invocation_id in self._driving:
                continue  # this process will see it end
            inv = await self.store.get(invocation_id)
            if inv is not None and inv.status == "completed":
                self.act(Effects(finished=[inv]))

    def stop(self, invocation_id: str) -> None:
        """Abandon the attempt in flight for an invocation the store has just ended (killed):
        its deployment call is cancelled, and whatever it would still write is fenced off."""
        inflight = self._inflight.get(invocation_id)
        if inflight is not None:
            self._stopped.add(invocation_id)
            inflight.cancel()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one invocation ----------------------------------------------------------------------

    async def _drive(
        self,
        invocation_id: str,
        started: AttemptStart | None = None,
        creating: asyncio.Task[Created] | None = None,
    ) -> None:
        try:
            if creating is not None and not self.store.ordered_writes:
                try:
                    await creating
                except Exception:
                    return  # nothing was stored; the ingress answers the failure
            while True:
                start = started or await self.store.start_attempt(
                    invocation_id, self.clock.now_ms()
                )
                started = None
                if start is None:
                    if invocation_id in self._again:
                        self._again.discard(invocation_id)
                        continue
                    return
                self._again.discard(invocation_id)
                try:
                    await self._attempt(start)
                except StaleEpoch as exc:
                    log.info("attempt superseded: %s", exc)
                except Exception as exc:  # the store failed us mid-attempt
                    log.exception("%s: attempt %d failed in the runtime", invocation_id,
                                  start.invocation.epoch)  # fmt: skip
                    await self._give_back(start.invocation, exc)
                if invocation_id not in self._again:
                    # Nothing made it ready again while this attempt ran (whatever does goes
                    # through dispatch, which marks it): no need to ask the store.
                    return
        except Exception:
            # Could not even begin an attempt (the store is failing): try again shortly.
            log.exception("driving %s failed; trying again in 1 s", invocation_id)
            asyncio.get_running_loop().call_later(1.0, self.dispatch, invocation_id)
        finally:
            self._driving.discard(invocation_id)

    async def _give_back(self, inv: Invocation, exc: Exception) -> None:
        """End an attempt the runtime itself could not finish as a failed one, so it is retried
        rather than left running until a restart."""
        end = self._retry_end(inv, False, f"runtime error: {exc!r}", None)
        try:
            await self._end(inv, [], {}, 0, end)
        except StaleEpoch:
            pass
        except Exception:
            log.exception("%s stays running until the runtime restarts", inv.id)

    async def _entry(self, inv: Invocation) -> HandlerEntry | None:
        """The handler of the deployment ``inv`` is pinned to (or, for one made before pinning,
        of the deployment that now takes its service)."""
        entry = self.registry.handler(inv.service, inv.handler, inv.deployment_id)
        pinned = inv.deployment_id
        if entry is None and pinned is not None and self.reload_deployments is not None:
            if not self.registry.knows(pinned) and await self.reload_deployments():
                entry = self.registry.handler(inv.service, inv.handler, pinned)
        return entry

    async def _attempt(self, start: AttemptStart) -> None:
        inv = start.invocation
        entry = await self._entry(inv)
        if entry is None and inv.deployment_id is not None and not self.registry.knows(
            inv.deployment_id
        ):
            # Its deployment was removed (forced): keep it, visibly, until it is back.
            error = (
                f"the deployment {inv.deployment_id} it runs on is not registered any more; "
                f"register it again, then: tarry invocations resume {inv.id} (or kill it)"
            )
            log.error("%s paused: %s", inv.id, error)
            await self._end(inv, [], {}, 0, AttemptEnd("paused", failure=error))
            return
        if entry is None:
            message = f"no deployment serves {inv.service}/{inv.handler}"
            await self._end(
                inv,
                [],
                {},
                0,
                AttemptEnd("completed", {"failure": {"code": 404, "message": message}}),
            )
            return
        mode = entry.deployment.checkpoint
        if mode == "http" and self.checkpoint_url is None:
            mode = "none"
        if mode == "dynamodb" and self.store.journal_table is None:
            mode = "none"  # the function reaches no store of its own: one request per step
        channel = _Channel(self, inv) if mode in ("inprocess", "http") else None
        request: InvokeRequest = {
            "protocol": PROTOCOL_VERSION,
            "invocation_id": inv.id,
            "epoch": inv.epoch,
            "service": inv.service,
            "handler": inv.handler,
            "key": inv.key,
            "headers": inv.headers,
            "journal": start.journal,
            "completions": start.completions,
            "state": start.state if entry.keyed else None,
            "retry_count": inv.retry_count,
            "checkpoint": _WIRE_MODE[mode],
        }
        if entry.service["kind"] == "workflow":
            request["promises"] = start.promises or {}
        if mode == "dynamodb" and self.store.journal_table is not None:
            request["table"] = self.store.journal_table
            request["journal_length"] = len(start.journal)
        token = None
        if mode == "http" and channel is not None and self.checkpoint_url is not None:
            token = secrets.token_urlsafe(24)
            self._checkpoints[token] = channel
            request["checkpoint_url"] = self.checkpoint_url
            request["checkpoint_token"] = token
        inflight = asyncio.ensure_future(entry.deployment.invoke(request, channel))
        self._inflight[inv.id] = inflight
        try:
            try:
                response: InvokeResponse = await inflight
            except asyncio.CancelledError:
                if inv.id in self._stopped and inflight.cancelled():
                    self._stopped.discard(inv.id)
                    log.info("%s: attempt %d abandoned (killed)", inv.id, inv.epoch)
                    return
                raise
            commands, completions = response["commands"], response["completions"]
            outcome = response["outcome"]
            if not isinstance(commands, list) or not isinstance(completions, dict):
                raise TypeError("commands must be a list and completions an object")
        except StaleEpoch:
            raise
        except PayloadTooLarge as exc:  # the journal outgrew what the deployment takes
            log.error("%s fails: %s", inv.id, exc)
            failure: Completion = {"failure": {"code": 413, "message": str(exc)}}
            await self._end(inv, [], {}, 0, AttemptEnd("completed", failure))
            return
        except Exception as exc:  # any deployment failure is a failed attempt
            error = f"{type(exc).__name__}: {exc}"
            log.warning("%s attempt %d: deployment failed: %s", inv.id, inv.attempts, error)
            appended = channel is not None and channel.appended
            await self._end(inv, [], {}, 0, self._retry_end(inv, appended, error, None))
            return
        finally:
            del self._inflight[inv.id]
            if token is not None:
                del self._checkpoints[token]
        checkpointed = response.get("checkpointed") or {"commands": 0, "completions": 0}
        if channel is not None:
            base, appended = channel.journal_length, channel.appended
        else:  # what the deployment stored itself, it says
            base = len(start.journal) + checkpointed["commands"]
            appended = any(checkpointed.values())
        grew = bool(commands or completions) or appended
        await self._end(inv, commands, completions, base, self._decide(inv, outcome, grew))

    def _decide(self, inv: Invocation, outcome: Outcome, grew: bool) -> AttemptEnd:
        kind = outcome.get("kind")
        if kind == "completed":
            return AttemptEnd("completed", {"value": outcome.get("value")})
        if kind == "failed":
            return AttemptEnd("completed", {"failure": outcome["failure"]})
        if kind == "suspended":
            return AttemptEnd("suspended", waiting_on=tuple(outcome["waiting_on"]))
        if kind == "flush":
            return AttemptEnd("ready")
        error = outcome.get("error", f"unknown outcome {kind!r}")
        if outcome.get("non_deterministic"):
            log.error(
                "%s paused: %s; deploy code that matches its journal, then: "
                "tarry invocations resume %s", inv.id, error, inv.id,
            )  # fmt: skip
            return AttemptEnd("paused", failure=error)
        return self._retry_end(inv, grew, error, outcome.get("delay_ms"))

    def _retry_end(
        self, inv: Invocation, grew: bool, error: str, delay_ms: int | None
    ) -> AttemptEnd:
        failures = (0 if grew else inv.retry_count) + 1
        if failures >= self.retry.max_attempts:
            log.error(
                "%s paused after %d failed attempts: %s; once fixed: tarry invocations resume %s",
                inv.id, failures, error, inv.id,
            )  # fmt: skip
            return AttemptEnd("paused", failure=f"after {failures} attempts: {error}")
        delay = delay_ms if delay_ms is not None else self.retry.delay_ms(failures)
        log.warning("%s attempt failed (%s); retrying in %d ms", inv.id, error, delay)
        return AttemptEnd("backing-off", retry_at=self.clock.now_ms() + delay, failure=error)

    async def _end(
        self,
        inv: Invocation,
        commands: list[Command],
        completions: dict[str, Completion],
        base: int,
        end: AttemptEnd,
    ) -> None:
        children = self.children(inv, base, commands)
        try:
            effects = await self.store.end_attempt(
                inv.id, inv.epoch, commands, completions, children, end, self.clock.now_ms()
            )
        except ValueTooLarge as exc:
            # A value the handler made (a step's result, a state entry, its output) is larger
            # than the store keeps. Nothing of it was written; retrying would make it again, so
            # the invocation fails, naming the limit.
            log.error("%s fails: %s", inv.id, exc)
            failure: Completion = {"failure": {"code": 413, "message": str(exc)}}
            effects = await self.store.end_attempt(
                inv.id, inv.epoch, [], {}, [], AttemptEnd("completed", failure),
                self.clock.now_ms(),
            )  # fmt: skip
        self.act(effects)

    # -- calls and sends ---------------------------------------------------------------------

    def children(
        self, parent: Invocation, base: int, commands: list[Command]
    ) -> list[NewInvocation]:
        """The invocations that call/send commands start. One that cannot run (unknown
        handler, invalid argument) is created completed with that failure, so a call gets it
        as its result and a send leaves a visible failed invocation."""
        children: list[NewInvocation] = []
        now = self.clock.now_ms()
        for offset, command in enumerate(commands):
            kind = command["kind"]
            if kind not in ("call", "send"):
                continue
            index = base + offset
            target = f"{command['service']}/{command['handler']}"
            entry = self.registry.handler(command["service"], command["handler"])  # newest
            failure: Failure | None = None
            if entry is None:
                failure = {"code": 404, "message": f"no handler {target} is registered"}
            elif entry.keyed and command.get("key") is None:
                failure = {"code": 400, "message": f"{target} needs a key"}
            elif (error := entry.validation_error(command.get("arg"))) is not None:
                failure = {"code": 400, "message": f"invalid argument for {target}: {error}"}
            if failure is not None:
                log.warning("%s: %s at journal entry %d fails: %s", parent.id, kind, index,
                            failure["message"])  # fmt: skip
            delay = command.get("delay_ms")
            idempotency_key = command.get("idempotency_key")
            if entry is not None and entry.info["kind"] == "workflow":
                idempotency_key = ""  # a workflow's run: once per key
            children.append(
                NewInvocation(
                    id=command["invocation_id"],
                    service=command["service"],
                    handler=command["handler"],
                    key=command.get("key") if entry is None or entry.keyed else None,
                    exclusive=entry is not None and entry.exclusive,
                    input=command.get("arg"),
                    headers=command.get("headers") or {},
                    idempotency_key=idempotency_key,
                    start_at=now + delay if delay else None,
                    caller_id=parent.id if kind == "call" else None,
                    caller_index=index if kind == "call" else None,
                    failure=failure,
                    deployment_id=entry.deployment_id if entry is not None else None,
                )
            )
        return children


__all__ = ["Invoker", "RetryConfig"]
