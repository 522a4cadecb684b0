"""The invoker: the attempt driver. It drives invocation attempts and acts on what the store
says happened.

One attempt: load journal and state (the store bumps the epoch), call the deployment, store the
returned commands and the outcome atomically, then act on the effects — hand what became ready
and the timers armed to the effect scheduler (:mod:`.effects`), wake callers waiting on a result
(:mod:`.waiter`). What an attempt needs beyond its own call comes from the store: how long the
journal is, whether it grew, the lease; its checkpoint token is signed (:mod:`.tokens`), so any
process sharing the key can take the attempt's appends. Nothing it starts outlives the call
that started it unless the process lives on: :meth:`Invoker.hand_off` gives every attempt still
in flight back to the scheduler, for a process about to freeze (a Lambda function returning).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tarry.clock import Clock
from tarry.errors import TerminalError
from tarry.limits import MAX_NAME_BYTES, command_problem, journal_problem
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
from .effects import Scheduler
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
    StoreBusy,
    StoreError,
    StoreLost,
    StoreUnavailable,
    Timer,
    ValueTooLarge,
    first_attempt,
)
from .tokens import TokenSigner
from .waiter import ResultWaiter

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
    ``max_attempts`` failures in a row the invocation is paused (visible, resumable).

    ``attempt_timeout_ms``: how long an attempt may go without making anything durable (an
    inactivity timeout, as Restate's; every checkpoint starts it again). Past it the attempt is
    abandoned — its deployment call cancelled, its later writes refused by epoch — and counts
    as a failed attempt: retried from its journal, so the steps it stored do not run again.
    Restate first asks an inactive attempt to suspend and aborts it after a second timeout;
    here what an attempt stored is in the store already, so there is nothing to ask for, and
    the one timeout is the longest a single step may take."""

    initial_ms: int = 50
    factor: float = 2.0
    max_ms: int = 10_000
    max_attempts: int = 30
    attempt_timeout_ms: int = 10 * 60_000

    def delay_ms(self, failures: int) -> int:
        return int(min(self.max_ms, self.initial_ms * self.factor ** max(0, failures - 1)))


class _Channel:
    """The runtime's end of a checkpoint channel: each append is one epoch-fenced store write.

    In-process deployments call it directly, for the whole attempt (which runs here). HTTP
    deployments reach it through the ingress's checkpoint route with the attempt's signed token,
    perhaps in another process: the route makes one for each append, from the invocation as the
    store has it."""

    def __init__(self, invoker: Invoker, invocation: Invocation) -> None:
        self._invoker = invoker
        self._invocation = invocation
        self.journal_length = invocation.journal_length
        self.appended = False  # did this attempt make anything durable mid-way?

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        """Store the batch; a value over :data:`tarry.limits.MAX_VALUE_BYTES`, on any store, is
        a :class:`TerminalError` (413) and nothing of it is stored."""
        inv = self._invocation
        base = self.journal_length
        children = self._invoker.children(inv, base, commands)
        try:
            problem = journal_problem(commands, completions)
            if problem is not None:
                raise ValueTooLarge(problem)
            effects = await self._invoker.store.append(
                inv.id,
                inv.epoch,
                commands,
                completions,
                children,
                self._invoker.clock.now_ms(),
            )
        except ValueTooLarge as exc:  # retrying would make it again
            raise TerminalError(str(exc), status_code=413) from exc
        self.journal_length += len(commands)
        self.appended = True
        self._invoker.progressed(inv)
        await self._invoker.act(effects)


class Invoker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        scheduler: Scheduler,
        waiter: ResultWaiter,
        retry: RetryConfig | None = None,
        checkpoint_url: str | None = None,
        signer: TokenSigner | None = None,
    ) -> None:
        self.store = store
        self.checkpoint_url = checkpoint_url  # where HTTP deployments post appends; None: flush
        self.signer = signer or TokenSigner()
        self.registry = registry
        self.clock = clock
        self.scheduler = scheduler
        self.waiter = waiter
        self.retry = retry or RetryConfig()
        # Loads deployments registered by another process sharing the store; True if any was
        # new (an invocation may be pinned to one this process has not seen yet).
        self.reload_deployments: Callable[[], Awaitable[bool]] | None = None
        self._driving: set[str] = set()
        self._again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False  # the process is stopping: no attempt begins
        self._inflight: dict[str, asyncio.Future[InvokeResponse]] = {}  # deployment calls
        # When each attempt in flight last made something durable, by (invocation, epoch).
        self._progress: dict[tuple[str, int], int] = {}
        self._stopped: set[str] = set()  # killed: their attempt is abandoned
        self._handed: set[str] = set()  # handed off: their attempt is given back
        self._handing_off = False
        self._leaving = asyncio.Event()  # set while it hands off or stops: backing off ends

    # -- scheduling --------------------------------------------------------------------------

    def dispatch(self, invocation_id: str) -> None:
        """Drive ``invocation_id`` in a task of this process until it is no longer ready
        (idempotent): the local scheduler's way to drive."""
        if self._stopping:
            return  # it stays ready in the store: the next process to start drives it
        if invocation_id in self._driving:
            self._again.add(invocation_id)
            return
        self._spawn(invocation_id)

    async def drive(self, invocation_id: str) -> None:
        """Drive ``invocation_id`` until it is no longer ready, in this call (a worker's way to
        drive). A store failure is raised: the caller tries again later."""
        if invocation_id in self._driving:
            self._again.add(invocation_id)
            return
        self._driving.add(invocation_id)
        try:
            await self._drive_loop(invocation_id, None, persist=False)
        finally:
            self._driving.discard(invocation_id)

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

    async def checkpoint_channel(self, token: str) -> _Channel | None:
        """The channel of the attempt ``token`` was issued for, if it is one of ours (the store
        refuses its appends once that attempt is over)."""
        issued = self.signer.verify(token)
        if issued is None:
            return None
        inv = await self.store.get(issued[0])
        if inv is None or inv.epoch != issued[1] or inv.status != "running":
            return None  # its attempt is over (the store would refuse the append anyway)
        return _Channel(self, inv)

    def progressed(self, inv: Invocation) -> None:
        """Attempt ``inv.epoch`` of ``inv`` made something durable: its timeout starts again."""
        if (inv.id, inv.epoch) in self._progress:
            self._progress[inv.id, inv.epoch] = self.clock.now_ms()

    async def _inactive(self, inv: Invocation, mode: str) -> None:
        """Return once the attempt ``inv`` names has made nothing durable for the attempt
        timeout. Through a channel of this process it is known; what a deployment appends
        itself (to DynamoDB), or through another process, is seen as the journal growing."""
        limit = self.retry.attempt_timeout_ms
        seen = inv.journal_length
        attempt = (inv.id, inv.epoch)
        while True:
            last = self._progress[attempt]
            await self.clock.sleep_until(last + limit)
            if self._progress[attempt] > last:
                continue
            if mode == "inprocess":
                return
            try:
                current = await self.store.get(inv.id)
            except StoreError:  # not known to have grown: look again shortly
                await self.clock.sleep_until(self.clock.now_ms() + 1000)
                continue
            if current is None or current.journal_length <= seen:
                return
            seen = current.journal_length
            self._progress[attempt] = self.clock.now_ms()

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

    async def act(self, effects: Effects) -> None:
        """Act on what a committed write asks: what became ready and the timers go to the
        scheduler (and are there when this returns); then callers waiting are woken, so none
        sees a result before what follows from it is on its way."""
        ready = []
        for invocation_id in effects.ready:
            if invocation_id in self._driving and not self._handing_off:
                self._again.add(invocation_id)  # its driver here takes it on
            else:
                ready.append(invocation_id)
        if ready:
            await self.scheduler.drive(ready)
        if effects.timers:
            await self.scheduler.arm(effects.timers)
        for finished in effects.finished:
            self.waiter.finished(finished)

    async def fire(self, timer: Timer) -> None:
        await self.act(await self.store.fire_timer(timer, self.clock.now_ms()))

    def watch(self, invocation_id: str) -> asyncio.Future[Invocation]:
        """A future that resolves with the invocation when this process sees it complete
        (register it before anything could complete it, or use :meth:`wait_finished`)."""
        return self.waiter.watch(invocation_id)

    async def wait_finished(
        self,
        invocation_id: str,
        timeout_ms: int | None = None,
        watched: asyncio.Future[Invocation] | None = None,
    ) -> Invocation | None:
        """The invocation once it completes; ``None`` if not within ``timeout_ms``."""
        return await self.waiter.wait(invocation_id, timeout_ms, watched)

    async def hand_off(self) -> None:
        """Give every attempt in flight in this process back to the scheduler, and return once
        nothing of this invoker runs: for a process about to freeze (a Lambda function that
        returns), so no lease is held and no effect is left in a task. Each attempt in flight
        is abandoned and made ready again, fenced by its epoch (its deployment's later writes
        are refused); the scheduler drives it anew."""
        self._handing_off = True
        self._leaving.set()
        try:
            for invocation_id, inflight in list(self._inflight.items()):
                self._handed.add(invocation_id)
                inflight.cancel()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            self._handing_off = False
            self._leaving.clear()
            self._handed.clear()

    def stop(self, invocation_id: str) -> None:
        """Abandon the attempt in flight for an invocation the store has just ended (killed):
        its deployment call is cancelled, and whatever it would still write is fenced off."""
        inflight = self._inflight.get(invocation_id)
        if inflight is not None:
            self._stopped.add(invocation_id)
            inflight.cancel()

    def begin_stop(self) -> None:
        """The process is stopping: attempts in flight go on, and no new one begins (what is
        ready stays ready in the store, for the next process that starts)."""
        self._stopping = True
        self._leaving.set()

    async def drain(self, timeout_s: float) -> int:
        """Let the attempts in flight end, for at most ``timeout_s``; how many are still
        running then (:meth:`close` abandons them; the store has them as running, and the
        next process that starts takes them over)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(timeout_s, 0))
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def driving(self, invocation_id: str) -> bool:
        """True while this process drives the invocation (it will see it end)."""
        return invocation_id in self._driving

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
            await self._drive_loop(invocation_id, started, creating)
        except StoreLost as exc:
            log.error("%s is left as it is until the runtime restarts: %s", invocation_id, exc)
        except Exception as exc:
            # Could not even begin an attempt (the store is failing): try again shortly. A store
            # that is unavailable or busy says what is wrong: no traceback to add.
            quiet = isinstance(exc, (StoreUnavailable, StoreBusy))
            report = log.warning if quiet else log.exception
            if self._handing_off:
                report("driving %s failed (%s); the sweep will find it", invocation_id, exc)
            else:
                report("driving %s failed (%s); trying again in 1 s", invocation_id, exc)
                asyncio.get_running_loop().call_later(1.0, self.dispatch, invocation_id)
        finally:
            self._driving.discard(invocation_id)

    async def _drive_loop(
        self,
        invocation_id: str,
        started: AttemptStart | None,
        creating: asyncio.Task[Created] | None = None,
        persist: bool = True,
    ) -> None:
        while True:
            if self._stopping and started is None:
                self._again.discard(invocation_id)
                return
            if self._handing_off and started is None:
                # this process is about to freeze: whoever is next drives it
                self._again.discard(invocation_id)
                await self.scheduler.drive([invocation_id])
                return
            start = started or await self.store.start_attempt(invocation_id, self.clock.now_ms())
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
            except StoreError as exc:  # the store failed at some step of the attempt
                log.warning("%s: attempt %d: the store failed: %s", invocation_id,
                            start.invocation.epoch, exc)  # fmt: skip
                await self._give_back(start.invocation, exc, creating, persist)
            except Exception as exc:  # the runtime itself failed mid-attempt
                log.exception("%s: attempt %d failed in the runtime", invocation_id,
                              start.invocation.epoch)  # fmt: skip
                await self._give_back(start.invocation, exc, creating, persist)
            creating = None
            if invocation_id not in self._again:
                # Nothing made it ready again while this attempt ran (whatever does goes
                # through act, which marks it): no need to ask the store.
                return

    async def _give_back(
        self,
        inv: Invocation,
        exc: Exception,
        creating: asyncio.Task[Created] | None,
        persist: bool,
    ) -> None:
        """End an attempt the runtime could not finish (the store failed at some step of it, or
        the runtime did) as a failed one, so it is retried rather than left running, its object
        key held, until a restart.

        While the store keeps failing, this write is tried again, backing off as failed attempts
        do, for as long as the process lives on; once the store takes it, the attempt is retried
        here. A worker (``persist`` false) and a process handing off or stopping do not wait:
        the store error is raised, or the attempt left for the next process (its lease lapses;
        a restart makes it ready). Fenced by the epoch: an attempt already ended elsewhere
        (killed, taken over) is left as the store has it."""
        error = f"the store failed: {exc}" if isinstance(exc, StoreError) else (
            f"runtime error: {exc!r}"
        )  # fmt: skip
        end = self._retry_end(inv, False, error, None)  # its retry is due once this is stored
        failures = 0
        while True:
            if creating is not None and creating.done() and (
                creating.cancelled() or creating.exception() is not None
            ):
                return  # its creation failed: nothing of it was stored, nothing to give back
            try:
                await self._end(inv, [], {}, 0, end)
                return
            except StaleEpoch:
                return
            except StoreLost:
                raise
            except Exception as again:
                if not persist:
                    raise
                failures += 1
                delay = self.retry.delay_ms(failures)
                if not (self._handing_off or self._stopping):
                    log.warning("%s: the store still fails (%s); trying again in %d ms",
                                inv.id, again, delay)  # fmt: skip
                    if await self._back_off(delay):
                        continue
                log.warning("%s: the store still fails (%s); the next process retries it",
                            inv.id, again)  # fmt: skip
                return

    async def _back_off(self, delay_ms: int) -> bool:
        """Wait ``delay_ms``, or until the process begins to hand off or stop; True if it lives
        on."""
        sleep = asyncio.ensure_future(self.clock.sleep_until(self.clock.now_ms() + delay_ms))
        leaving = asyncio.ensure_future(self._leaving.wait())
        try:
            await asyncio.wait([sleep, leaving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            leaving.cancel()
        return not (self._handing_off or self._stopping)

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
        # in-process: the deployment appends through this; HTTP: through the checkpoint route
        channel = _Channel(self, inv) if mode == "inprocess" else None
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
        if inv.secret is not None:  # every attempt's start gives it one
            request["secret"] = inv.secret
        if entry.service["kind"] == "workflow":
            request["promises"] = start.promises or {}
        if mode == "dynamodb" and self.store.journal_table is not None:
            request["table"] = self.store.journal_table
            request["journal_length"] = len(start.journal)
        if mode == "http" and self.checkpoint_url is not None:
            request["checkpoint_url"] = self.checkpoint_url
            request["checkpoint_token"] = self.signer.issue(inv.id, inv.epoch)
        if self._handing_off:  # begun as this process hands off: the next driver runs it
            await self._end(inv, [], {}, 0, AttemptEnd("ready"))
            return
        inflight = asyncio.ensure_future(entry.deployment.invoke(request, channel))
        self._inflight[inv.id] = inflight
        try:
            try:
                response = await self._answer(inv, inflight, mode)
            except asyncio.CancelledError:
                if inv.id in self._stopped and inflight.cancelled():
                    self._stopped.discard(inv.id)
                    log.info("%s: attempt %d abandoned (killed)", inv.id, inv.epoch)
                    return
                if inv.id in self._handed and inflight.cancelled():
                    log.info("%s: attempt %d handed off", inv.id, inv.epoch)
                    await self._end(inv, [], {}, 0, AttemptEnd("ready"))
                    return
                raise
            if response is not None:
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
            appended = await self._grew(inv, channel, mode)
            await self._end(inv, [], {}, 0, self._retry_end(inv, appended, error, None))
            return
        finally:
            del self._inflight[inv.id]
        if response is None:  # timed out: a failed attempt, retried from its journal
            error = (
                f"it made nothing durable for {self.retry.attempt_timeout_ms / 1000:g} s (the "
                "attempt timeout) and was abandoned"
            )
            log.warning("%s attempt %d: %s", inv.id, inv.epoch, error)
            appended = await self._grew(inv, channel, mode)
            await self._end(inv, [], {}, 0, self._retry_end(inv, appended, error, None))
            return
        checkpointed = response.get("checkpointed") or {"commands": 0, "completions": 0}
        if channel is not None:
            base, appended = channel.journal_length, channel.appended
        else:  # what the deployment stored (itself, or through another process), it says
            base = len(start.journal) + checkpointed["commands"]
            appended = any(checkpointed.values())
        grew = bool(commands or completions) or appended
        await self._end(inv, commands, completions, base, self._decide(inv, outcome, grew))

    async def _answer(
        self, inv: Invocation, inflight: asyncio.Future[InvokeResponse], mode: str
    ) -> InvokeResponse | None:
        """The deployment's answer to attempt ``inv``; ``None`` if the attempt timed out first
        (:meth:`_inactive`): its call is then cancelled, and not waited for."""
        attempt = (inv.id, inv.epoch)
        self._progress[attempt] = self.clock.now_ms()
        inactive = asyncio.ensure_future(self._inactive(inv, mode))
        either: list[asyncio.Future[Any]] = [inflight, inactive]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            inflight.cancel()
            raise
        finally:
            inactive.cancel()
            del self._progress[attempt]
        if inflight.done():
            return inflight.result()
        inflight.add_done_callback(_forget)
        inflight.cancel()
        return None

    async def _grew(self, inv: Invocation, channel: _Channel | None, mode: str) -> bool:
        """Did a failed attempt store anything mid-way (its failure then does not count against
        the retry budget)? A channel of this process knows; what a deployment appended itself,
        or through another process, is in the store."""
        if channel is not None and channel.appended:
            return True
        if mode in ("none", "inprocess"):
            return False
        current = await self.store.get(inv.id)
        return current is not None and current.journal_length > inv.journal_length

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
            problem = journal_problem(commands, completions, end.completion)
            if problem is not None:  # the same limit on every store
                raise ValueTooLarge(problem)
            effects = await self.store.end_attempt(
                inv.id, inv.epoch, commands, completions, children, end, self.clock.now_ms()
            )
        except ValueTooLarge as exc:
            # A value the handler made (a step's result, a state entry, its output) is larger
            # than a store keeps. Nothing of it was written; retrying would make it again, so
            # the invocation fails, naming the limit.
            log.error("%s fails: %s", inv.id, exc)
            failure: Completion = {"failure": {"code": 413, "message": str(exc)}}
            effects = await self.store.end_attempt(
                inv.id, inv.epoch, [], {}, [], AttemptEnd("completed", failure),
                self.clock.now_ms(),
            )  # fmt: skip
        await self.act(effects)

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
            over = command_problem(command)  # the SDK refuses these; other deployments may not
            if over is not None:
                failure = {"code": 400, "message": over}
                command = _within_limits(command)
            elif entry is None:
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


def _forget(call: asyncio.Future[InvokeResponse]) -> None:
    """An abandoned deployment call's end, taken so that nothing reports it as never
    retrieved: the attempt is over, whatever it answered."""
    if not call.cancelled():
        call.exception()


def _within_limits(command: Command) -> Command:
    """A call or send that cannot be made, with what the store could not key on cut out: the
    child that records its failure is made of this."""
    def cut(value: object) -> str:
        text = value if isinstance(value, str) else repr(value)
        return text.encode("utf-8", "replace")[:MAX_NAME_BYTES].decode("utf-8", "ignore")

    return {**command, "service": cut(command.get("service")),
            "handler": cut(command.get("handler")), "key": None, "idempotency_key": None,
            "invocation_id": cut(command.get("invocation_id")), "delay_ms": 0,
            "arg": None}  # fmt: skip


__all__ = ["Invoker", "RetryConfig"]
