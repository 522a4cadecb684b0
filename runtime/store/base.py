"""The storage contract every backend implements, and the records it speaks in.

Every method that changes more than one row does so in one transaction. Every write an attempt
makes carries that attempt's epoch; a stale epoch is rejected with :class:`StaleEpoch` and
nothing is written. Writes return :class:`Effects` *as data*: the invoker acts on them only after
the write committed.

Invocation statuses::

    scheduled ──(start timer)──▶ pending ──(key free)──▶ ready ──▶ running ──▶ completed
                                   ▲  (waits for its object key)      │  ▲
                                   │                                  ▼  │
                       paused ◀── backing-off ◀─────────────────── suspended / ready
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from tarry.protocol import LATE_SECRET_PREFIX, Command, Completion, Failure

Status = Literal[
    "scheduled", "pending", "ready", "running", "suspended", "backing-off", "paused", "completed"
]
STATUSES: tuple[str, ...] = (
    "scheduled",
    "pending",
    "ready",
    "running",
    "suspended",
    "backing-off",
    "paused",
    "completed",
)
# The statuses of an invocation that has not completed (it still runs on its deployment).
UNFINISHED: tuple[str, ...] = tuple(s for s in STATUSES if s != "completed")
# What ``list_invocations`` filters by: a status, or how a completed invocation ended.
STATUS_FILTERS: tuple[str, ...] = (*STATUSES, "succeeded", "failed")
TimerKind = Literal["sleep", "start", "retry"]


class StoreError(Exception):
    """A store operation could not be carried out."""


class StoreBusy(StoreError):
    """A write kept losing to concurrent writers of the same items (a hot object key written by
    several processes); nothing was written. Retrying later is safe."""


class StoreUnavailable(StoreError):
    """The store cannot carry out operations now: its disk is full or read-only, it failed to
    read or write, its file is corrupt. Nothing of the operation was stored; retrying is safe,
    and succeeds once the cause is gone. ``retry_after_s``: when a client might try again.
    The message says what is wrong and names no file (HTTP clients read it)."""

    retry_after_s = 1


class StoreLost(StoreUnavailable):
    """The store's data is no longer where the runtime opened it (the SQLite file was deleted,
    or another file moved over it): whatever it stored from then on, no runtime started later
    would find. The store refuses every operation until the runtime is restarted."""

    retry_after_s = 30


class StaleEpoch(StoreError):
    """A write came from an attempt that is no longer the invocation's current one."""

    def __init__(self, invocation_id: str, epoch: int, current: Invocation | None) -> None:
        now = current.epoch if current else None
        super().__init__(f"{invocation_id}: attempt epoch {epoch} is stale (current: {now})")
        self.invocation_id = invocation_id
        self.current = current


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with a different request."""

    def __init__(self, existing: Invocation) -> None:
        super().__init__(
            f"the idempotency key was already used for a different request ({existing.id})"
        )
        self.existing = existing


class NotFound(StoreError):
    """No such invocation."""


class ValueTooLarge(StoreError):
    """A value (an input, a step's result, a state entry, an output) is larger than the store
    can keep; raised before anything of the write was stored. The message names the limit."""


class NotAllowed(StoreError):
    """The operation does not apply to the invocation (or object key) as it is now."""


@dataclass(frozen=True)
class Timer:
    """A moment at which something must happen: a sleep ends, a delayed invocation starts, a
    backed-off invocation retries."""

    fire_at: int
    kind: TimerKind
    invocation_id: str
    index: int = 0


@dataclass
class Effects:
    """What a committed write asks the invoker to do next."""

    ready: list[str] = field(default_factory=list)  # invocations to drive now
    timers: list[Timer] = field(default_factory=list)  # timers to arm
    finished: list[Invocation] = field(default_factory=list)  # invocations that completed

    def merge(self, other: Effects) -> Effects:
        self.ready += other.ready
        self.timers += other.timers
        self.finished += other.finished
        return self


def new_secret(late: bool = False) -> str:
    """A new invocation's secret: 256 random bits, which key the MACs of the ids it hands out
    (see :func:`tarry.protocol.awakeable_id`). ``late``: for an invocation stored before secrets
    (marked, so its ``ctx.random`` keeps the seed it had)."""
    return (LATE_SECRET_PREFIX if late else "") + secrets.token_hex(32)


@dataclass(frozen=True)
class NewInvocation:
    """An invocation to create (from the ingress, or from a call/send command)."""

    id: str
    service: str
    handler: str
    key: str | None
    exclusive: bool  # takes the object key's lock while it runs
    input: Any
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    retention_ms: int = 24 * 3600 * 1000  # keep an idempotent result this long after completion
    start_at: int | None = None  # delayed: start no earlier than this
    caller_id: str | None = None  # the invocation awaiting the result ...
    caller_index: int | None = None  # ... in this journal entry
    failure: Failure | None = None  # it cannot run (unknown target, bad input): born completed
    deployment_id: str | None = None  # the deployment it runs on, every attempt (pinned)
    # Stored with it, handed to every attempt; a create that finds the invocation made before
    # (the same call retried) keeps the first one's.
    secret: str = field(default_factory=new_secret, repr=False)


@dataclass(frozen=True)
class Invocation:
    id: str
    service: str
    handler: str
    key: str | None
    exclusive: bool
    status: Status
    epoch: int
    attempts: int
    retry_count: int
    journal_length: int
    headers: dict[str, str]
    idempotency_key: str | None
    caller_id: str | None
    caller_index: int | None
    created_at: int
    modified_at: int
    scheduled_at: int | None
    next_retry_at: int | None
    waiting_on: list[int]
    completion: Completion | None
    completed_at: int | None
    last_failure: str | None
    # Asked of a running invocation, acted on when its attempt ends: "cancel" or "pause".
    interrupt: str | None = None
    # The deployment it was created for: every attempt runs there, so a new version registered
    # meanwhile never replays a journal another version wrote. None: made before pinning.
    deployment_id: str | None = None
    # Keys the ids its journal hands out (awakeables): it never leaves the runtime but in the
    # invoke request to its own deployment, so it is not in ``to_json``. None: an invocation
    # stored before secrets, given one when its next attempt starts.
    secret: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        del data["secret"]
        return data


def new_record(new: NewInvocation, now: int, scheduled_at: int | None = None) -> Invocation:
    """The record of a just-created invocation, before it is queued or started."""
    return Invocation(
        id=new.id,
        service=new.service,
        handler=new.handler,
        key=new.key,
        exclusive=new.exclusive,
        status="scheduled",
        epoch=0,
        attempts=0,
        retry_count=0,
        journal_length=1,
        headers=new.headers,
        idempotency_key=new.idempotency_key,
        caller_id=new.caller_id,
        caller_index=new.caller_index,
        created_at=now,
        modified_at=now,
        scheduled_at=scheduled_at,
        next_retry_at=None,
        waiting_on=[],
        completion=None,
        completed_at=None,
        last_failure=None,
        deployment_id=new.deployment_id,
        secret=new.secret,
    )


def first_attempt(new: NewInvocation, now: int) -> AttemptStart:
    """The attempt ``create(new, now, start=True)`` begins for a new invocation that is ready at
    once and holds no object state: what a store returns, known before it returns it."""
    invocation = replace(new_record(new, now), status="running", epoch=1, attempts=1)
    return AttemptStart(invocation, [{"kind": "input", "value": new.input}], {}, None)


# -- the rules of invocation control, the same for every store -------------------------------


def pausing(inv: Invocation) -> Literal["already", "when-attempt-ends", "now"]:
    """What pausing ``inv`` takes: nothing (it is paused), a note its running attempt reads
    when it ends (a cancel asked before comes first), or parking it now. :class:`NotAllowed`
    for an invocation that has completed or not started yet."""
    if inv.status == "completed":
        raise NotAllowed(f"{inv.id} is completed")
    if inv.status == "scheduled":
        raise NotAllowed(f"{inv.id} has not started yet (it is scheduled); cancel it instead")
    if inv.status == "paused":
        return "already"
    return "when-attempt-ends" if inv.status == "running" else "now"


def check_purgeable(inv: Invocation) -> None:
    """:class:`NotAllowed` unless ``inv`` has completed: only a finished journal is purged."""
    if inv.status != "completed":
        raise NotAllowed(f"{inv.id} is {inv.status}; only a completed invocation can be purged")


def key_in_use(service: str, key: str, holder: str) -> NotAllowed:
    """The refusal of a state edit while ``holder`` runs on the key: its handler works on a
    snapshot of the state and would overwrite the edit."""
    return NotAllowed(
        f"{service}/{key} is in use by invocation {holder}; try again when it is done"
    )


@dataclass(frozen=True)
class AttemptStart:
    invocation: Invocation
    journal: list[Command]
    completions: dict[str, Completion]
    state: dict[str, Any] | None
    promises: dict[str, Completion] | None = None  # a keyed invocation's completed promises


@dataclass(frozen=True)
class JournalEntry:
    """One journal entry as people read it: the command, its result, and when each was stored."""

    index: int
    command: Command
    created_at: int
    completion: Completion | None = None
    completed_at: int | None = None


# What completing an awakeable did.
AwakeableOutcome = Literal["completed", "already-completed", "not-found"]


@dataclass(frozen=True)
class Created:
    invocation: Invocation
    previously_accepted: bool
    effects: Effects
    started: AttemptStart | None = None  # create(..., start=True) began its first attempt


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as the invoker decided it."""

    kind: Literal["completed", "suspended", "ready", "backing-off", "paused"]
    completion: Completion | None = None  # completed
    waiting_on: tuple[int, ...] = ()  # suspended
    retry_at: int | None = None  # backing-off
    failure: str | None = None  # backing-off, paused


@dataclass(frozen=True)
class Deployment:
    id: str
    # http(s)://..., arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION, or inprocess:NAME
    uri: str
    services: list[dict[str, Any]]  # tarry.protocol.ServiceInfo
    created_at: int
    # When it was last registered: of the deployments serving a service, the last registered
    # takes its new invocations.
    registered_at: int = 0
    assume_role_arn: str | None = None  # Lambda: the role the runtime assumes to invoke it


class Store(Protocol):
    """Where invocations, journals, state, timers and idempotency records live."""

    # True if operations take effect in the order they were called, even before the earlier
    # ones returned (SQLite's single writer queue). The invoker then starts the first attempt
    # of a plain service call while its creation commits; otherwise it waits for the commit.
    ordered_writes: bool
    @property
    def journal_table(self) -> str | None:
        """The DynamoDB table a deployment may read its journal from and append its steps to
        itself (tarry.journal_table), or None if only the runtime reaches the store."""
        ...

    async def create(self, new: NewInvocation, now: int, start: bool = False) -> Created:
        """Store a new invocation (deduplicated by idempotency key) and queue it.

        With ``start``, an invocation that is ready at once also begins its first attempt in the
        same transaction (one commit instead of two on the hot path); it is then returned in
        ``started`` instead of ``effects.ready``."""
        ...

    async def start_attempt(self, invocation_id: str, now: int) -> AttemptStart | None:
        """Begin the next attempt of a ``ready`` invocation (epoch + 1); ``None`` if it is not
        ready."""
        ...

    async def append(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        now: int,
    ) -> Effects:
        """Make new commands (and their consequences) and run completions durable mid-attempt."""
        ...

    async def end_attempt(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        end: AttemptEnd,
        now: int,
    ) -> Effects:
        """Append the attempt's last commands and move the invocation on, atomically."""
        ...

    async def fire_timer(self, timer: Timer, now: int) -> Effects:
        """Act on a due timer (never before its time); a timer fires at most once."""
        ...

    async def resume(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        """Make a paused invocation ready again (or queued, if it was queued when paused), with a
        fresh retry budget; cancel a pause asked of a running one that has not taken effect.
        ``None`` if there is no such invocation; unchanged if it is not paused."""
        ...

    async def timers(self) -> list[Timer]:
        """Every timer not yet fired."""
        ...

    async def complete_awakeable(
        self, awakeable_id: str, completion: Completion, now: int
    ) -> tuple[AwakeableOutcome, Effects]:
        """Complete the awakeable ``awakeable_id`` names (the first completion wins), waking the
        invocation if it waits for it. The whole id is checked against the invocation's secret:
        a forged or altered one is not found, and changes nothing. An entry not stored yet is
        accepted while an attempt of the invocation is (or will be) in flight: the attempt that
        made the id may not have stored it yet."""
        ...

    async def find(
        self, service: str, key: str | None, handler: str, idempotency_key: str, now: int
    ) -> Invocation | None:
        """The invocation an idempotency key names within its retention. The empty key names a
        workflow's run."""
        ...

    async def cancel(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        """Cancel an invocation and, recursively, the calls it waits on. One that has not started
        completes at once with :data:`~tarry.protocol.CANCELLED`; one that has gets that failure
        at the await it is suspended on (or, if running, at its next suspension), so its code can
        compensate. A paused one is resumed to receive it. ``None`` if unknown."""
        ...

    async def kill(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        """Complete an invocation at once with a "killed" failure, and the calls it waits on:
        no more code runs for it (a running attempt is fenced off), its object key is released.
        ``None`` if unknown."""
        ...

    async def pause(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        """Stop driving an invocation until :meth:`resume`. A running one pauses when its
        attempt ends. It keeps its place on its object key: one that holds the key keeps it
        (invocations behind it wait), one still queued is queued again on resume, ahead of
        everything that came after it. :class:`NotAllowed` for a completed or a scheduled (not
        yet due) invocation. ``None`` if unknown."""
        ...

    async def purge(self, invocation_id: str, now: int) -> Invocation | None:
        """Delete a completed invocation: journal, idempotency record and, for a workflow's run,
        the workflow key's state and promises. :class:`NotAllowed` unless completed. ``None``
        if unknown."""
        ...

    async def timeline(self, invocation_id: str) -> list[JournalEntry]:
        """The journal with results and times, for ``describe``."""
        ...

    async def edit_state(
        self,
        service: str,
        key: str,
        set_values: dict[str, Any],
        clear: list[str],
        clear_all: bool,
        now: int,
    ) -> dict[str, Any]:
        """Change an object's (or workflow's) state from outside, atomically; returns the new
        state. :class:`NotAllowed` while an invocation holds the key (its handler works on a
        snapshot of the state and would overwrite the change)."""
        ...

    async def recover(self, now: int) -> list[str]:
        """After a restart: attempts that were running are lost; return what is ready to run."""
        ...

    async def get(self, invocation_id: str) -> Invocation | None: ...

    async def list_invocations(
        self, service: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Invocation]:
        """Newest first. ``status`` is one of :data:`STATUSES`, or ``succeeded`` / ``failed``
        (completed with a value / with a failure)."""
        ...

    async def journal(self, invocation_id: str) -> tuple[list[Command], dict[str, Completion]]: ...

    async def state(self, service: str, key: str) -> dict[str, Any]: ...

    async def put_deployment(self, deployment: Deployment) -> None:
        """Store a deployment, or update the one with its URI (services, registration time,
        role); it keeps its id and ``created_at``."""
        ...

    async def deployments(self) -> list[Deployment]:
        """Every deployment, in the order they were last registered."""
        ...

    async def delete_deployment(self, deployment_id: str) -> bool:
        """Forget a deployment; False if there was none."""
        ...

    async def deployment_usage(self) -> dict[str, int]:
        """How many invocations that have not completed are pinned to each deployment."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SharedStore(Protocol):
    """A store several runtime processes may share (DynamoDB). Each attempt is leased to the
    process that started it; every ``sweep_interval_ms`` the runtime renews its leases and
    sweeps for work whose process is gone."""

    sweep_interval_ms: int

    async def renew_leases(self, now: int) -> None:
        """Extend the leases of the attempts this process still runs."""
        ...

    async def sweep(self, now: int, horizon_ms: int = 0) -> tuple[list[str], list[Timer]]:
        """Invocations to drive (their attempt's lease lapsed, or they sit ready with nobody
        starting them) and timers not fired that are due by ``now + horizon_ms``. It keeps
        nothing between sweeps (each may run in another process)."""
        ...


__all__ = [
    "STATUSES",
    "STATUS_FILTERS",
    "UNFINISHED",
    "AttemptEnd",
    "AttemptStart",
    "AwakeableOutcome",
    "Created",
    "Deployment",
    "Effects",
    "IdempotencyConflict",
    "Invocation",
    "JournalEntry",
    "NewInvocation",
    "NotAllowed",
    "NotFound",
    "SharedStore",
    "StaleEpoch",
    "Status",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreLost",
    "StoreUnavailable",
    "Timer",
    "ValueTooLarge",
    "check_purgeable",
    "first_attempt",
    "key_in_use",
    "new_record",
    "new_secret",
    "pausing",
]
