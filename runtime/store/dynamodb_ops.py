"""The DynamoDB store's operations inside one unit of work (:mod:`.dynamodb_unit`).

The same steps as :mod:`.sqlite_tx`, one function each, on items instead of rows: they read
through the unit and write into it; nothing reaches DynamoDB until the unit commits, all at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from tarry.protocol import Command, Completion

from . import dynamodb_layout as layout
from .base import (
    AttemptEnd,
    AttemptStart,
    Effects,
    IdempotencyConflict,
    Invocation,
    NewInvocation,
    StaleEpoch,
    StoreError,
    Timer,
    TimerKind,
)
from .dynamodb_layout import IdempotencyRecord, InvocationRow, Turn
from .dynamodb_unit import Unit


async def load(u: Unit, invocation_id: str, guess: bool = False) -> InvocationRow | None:
    attrs = await u.get(layout.invocation_key(invocation_id), guess)
    return layout.invocation_row(attrs) if attrs is not None else None


async def must_load(u: Unit, invocation_id: str) -> InvocationRow:
    row = await load(u, invocation_id)
    if row is None:
        raise StoreError(f"invocation {invocation_id} is missing")
    return row


def save(u: Unit, row: InvocationRow) -> None:
    u.put(layout.invocation_attrs(row))


async def fenced(u: Unit, invocation_id: str, epoch: int) -> InvocationRow:
    """The invocation, if ``epoch`` is its running attempt (and the commit re-asserts that);
    else :class:`StaleEpoch` with the invocation as it is."""
    key = layout.invocation_key(invocation_id)
    row = await load(u, invocation_id, guess=True)
    if not _runs(row, epoch) and u.guessed(key):
        attrs = await u.fresh(key)
        row = layout.invocation_row(attrs) if attrs is not None else None
    if row is None:
        raise StaleEpoch(invocation_id, epoch, None)
    if not _runs(row, epoch):
        raise StaleEpoch(invocation_id, epoch, row.record)
    u.fence(key, epoch)
    return row


def _runs(row: InvocationRow | None, epoch: int) -> bool:
    return row is not None and row.record.epoch == epoch and row.record.status == "running"


async def start(
    u: Unit,
    invocation_id: str,
    now: int,
    lease: tuple[str, int],
    input: Any = None,
    new: bool = False,
) -> AttemptStart | None:
    """Begin the next attempt of a ready invocation, leased to ``lease`` (owner, until). ``new``:
    it was created in this unit with ``input``, so its journal is known without reading it."""
    if new:
        row = await load(u, invocation_id)
        journal: list[Command] = [{"kind": "input", "value": input}]
        completions: dict[str, Completion] = {}
    else:
        items = await u.query(layout.invocation_pk(invocation_id))
        row = await load(u, invocation_id)  # from the query's items, re-asserted at commit
        if row is None:
            return None
        journal, completions = layout.journal_of(items, row.record.journal_length)
    if row is None or row.record.status != "ready":
        return None
    inv = row.record
    row = row.with_(
        status="running", epoch=inv.epoch + 1, attempts=inv.attempts + 1, modified_at=now
    )
    row = replace(row, owner=lease[0], lease_until=lease[1])
    save(u, row)
    state = await load_state(u, inv.service, inv.key) if inv.key is not None else None
    return AttemptStart(row.record, journal, completions, state)


async def load_state(u: Unit, service: str, key: str) -> dict[str, Any]:
    """The object's state; the key's turn item comes along in the same Query."""
    items = await u.query(layout.object_pk(service, key), layout.STATE_PREFIX, layout.TURN)
    return layout.state_of(items)


def set_status(u: Unit, row: InvocationRow, status: str, now: int) -> InvocationRow:
    row = row.with_(status=status, modified_at=now)
    save(u, row)
    return row


async def claim_idempotency(u: Unit, new: NewInvocation, now: int) -> InvocationRow | None:
    """The invocation an idempotency key already names, or ``None`` after claiming it."""
    assert new.idempotency_key is not None
    key = layout.idempotency_key(new.service, new.key, new.handler, new.idempotency_key)
    u.assume(key, None)  # the common case: a new key; if not, the commit learns the record
    attrs = await u.get(key)
    if attrs is not None:
        record = layout.idempotency_record(attrs)
        if not record.expired(now):
            existing = await must_load(u, record.invocation_id)
            if new.request_hash is not None and record.request_hash != new.request_hash:
                raise IdempotencyConflict(existing.record)
            return existing
    record = IdempotencyRecord(
        service=new.service,
        key=new.key,
        handler=new.handler,
        idempotency_key=new.idempotency_key,
        invocation_id=new.id,
        request_hash=new.request_hash,
        retention_ms=new.retention_ms,
    )
    u.put(layout.idempotency_attrs(record))
    return None


async def create(u: Unit, new: NewInvocation, now: int, effects: Effects) -> InvocationRow | None:
    """Insert ``new``, unless its idempotency key names an invocation already: then return that
    one, with ``new``'s caller (if any) attached to its result."""
    if new.idempotency_key is not None:
        existing = await claim_idempotency(u, new, now)
        if existing is not None:
            if new.caller_id is not None and new.caller_index is not None:
                await attach(u, existing, new.caller_id, new.caller_index, now, effects)
            return existing
    await insert(u, new, now, effects)
    return None


async def insert(u: Unit, new: NewInvocation, now: int, effects: Effects) -> None:
    key = layout.invocation_key(new.id)
    u.assume(key, None)
    if await u.get(key) is not None:  # created before (a call retried from the same entry)
        return
    delayed = new.start_at is not None and new.start_at > now
    callers: tuple[tuple[str, int], ...] = ()
    if new.caller_id is not None and new.caller_index is not None:
        callers = ((new.caller_id, new.caller_index),)
    row = layout.InvocationRow(_new_record(new, now, new.start_at if delayed else None), callers)
    save(u, row)
    u.put(layout.journal_attrs(new.id, 0, {"kind": "input", "value": new.input}, now))
    if new.failure is not None:
        await complete(u, row, {"failure": new.failure}, now, effects)
    elif delayed:
        assert new.start_at is not None
        effects.timers.append(add_timer(u, new.start_at, "start", new.id, 0))
    else:
        await enqueue(u, row, now, effects)


def _new_record(new: NewInvocation, now: int, scheduled_at: int | None) -> Invocation:
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
    )


async def enqueue(u: Unit, row: InvocationRow, now: int, effects: Effects) -> None:
    """Make a new (or delayed, now due) invocation ready, or queue it behind its object key."""
    inv = row.record
    if inv.exclusive and inv.key is not None:
        turn = await _turn(u, inv.service, inv.key)
        if turn.holder is not None and turn.holder != inv.id:
            u.put(layout.queued_attrs(inv.service, inv.key, turn.tail, inv.id))
            _save_turn(u, Turn(inv.service, inv.key, turn.holder, turn.tail + 1, turn.waiting + 1))
            set_status(u, row, "pending", now)
            return
        _save_turn(u, Turn(inv.service, inv.key, inv.id, turn.tail, turn.waiting))
    set_status(u, row, "ready", now)
    effects.ready.append(inv.id)


async def _turn(u: Unit, service: str, key: str, guess: bool = False) -> Turn:
    return layout.turn_of(service, key, await u.get(layout.turn_key(service, key), guess))


def _save_turn(u: Unit, turn: Turn) -> None:
    u.put(layout.turn_attrs(turn))


async def release(u: Unit, row: InvocationRow, now: int, effects: Effects) -> None:
    """Free the object key ``row`` holds and hand it to the next queued invocation (FIFO)."""
    inv = row.record
    assert inv.key is not None
    turn = await _turn(u, inv.service, inv.key, guess=True)
    if turn.holder != inv.id:
        return
    if turn.waiting == 0:
        _save_turn(u, Turn(inv.service, inv.key, None, turn.tail, 0))
        return
    pk = layout.object_pk(inv.service, inv.key)
    queued = await u.query(pk, layout.QUEUE_PREFIX, layout.QUEUE_END, limit=1)
    if not queued:  # the count was off: nobody is waiting after all
        _save_turn(u, Turn(inv.service, inv.key, None, turn.tail, 0))
        return
    head = queued[0]
    u.delete(layout.key_of(head))
    next_id = head["invocation_id"]
    _save_turn(u, Turn(inv.service, inv.key, next_id, turn.tail, turn.waiting - 1))
    set_status(u, await must_load(u, next_id), "ready", now)
    effects.ready.append(next_id)


def add_timer(u: Unit, fire_at: int, kind: TimerKind, invocation_id: str, index: int) -> Timer:
    timer = Timer(fire_at, kind, invocation_id, index)
    u.put(layout.timer_attrs(timer))
    return timer


async def add_completion(
    u: Unit, invocation_id: str, index: int, completion: Completion, now: int, effects: Effects
) -> None:
    """Record a completion (the first one wins) and wake the invocation if it waits for it."""
    key = layout.completion_key(invocation_id, index)
    u.assume(key, None)  # none yet, usually; the commit checks
    if await u.get(key) is not None:
        return
    u.put(layout.completion_attrs(invocation_id, index, completion, now))
    row = await load(u, invocation_id)
    # Read, so re-asserted: if the invocation suspends meanwhile it must see this completion.
    if row is not None and row.record.status == "suspended" and index in row.record.waiting_on:
        save(u, row.with_(status="ready", waiting_on=[], modified_at=now))
        effects.ready.append(invocation_id)


async def any_completed(u: Unit, invocation_id: str, indices: list[int]) -> bool:
    """Whether any of the journal entries ``indices`` has a completion (re-asserted at commit,
    so a completion written meanwhile makes this run again)."""
    for index in indices:
        key = layout.completion_key(invocation_id, index)
        u.assume(key, None)
        if await u.get(key) is not None:
            return True
    return False


async def attach(
    u: Unit, row: InvocationRow, caller_id: str, caller_index: int, now: int, effects: Effects
) -> None:
    """Deliver ``row``'s result to another awaiting journal entry (now, or when it completes)."""
    if row.record.completion is not None:
        await add_completion(u, caller_id, caller_index, row.record.completion, now, effects)
    elif (caller_id, caller_index) not in row.callers:
        save(u, InvocationRow(row.record, (*row.callers, (caller_id, caller_index))))


async def complete(
    u: Unit, row: InvocationRow, completion: Completion, now: int, effects: Effects
) -> None:
    row = row.with_(
        status="completed",
        completion=completion,
        completed_at=now,
        modified_at=now,
        waiting_on=[],
    )
    save(u, row)
    inv = row.record
    for caller_id, caller_index in row.callers:
        await add_completion(u, caller_id, caller_index, completion, now, effects)
    if inv.idempotency_key is not None:
        key = layout.idempotency_key(inv.service, inv.key, inv.handler, inv.idempotency_key)
        attrs = await u.get(key, guess=True)
        if attrs is not None:
            record = layout.idempotency_record(attrs)
            if record.invocation_id == inv.id:
                expires = now + record.retention_ms
                u.put(layout.idempotency_attrs(replace(record, expires_at=expires)))
    if inv.exclusive and inv.key is not None:
        await release(u, row, now, effects)
    effects.finished.append(inv)


async def apply(
    u: Unit,
    row: InvocationRow,
    commands: list[Command],
    completions: dict[str, Completion],
    children: list[NewInvocation],
    now: int,
    effects: Effects,
) -> bool:
    """Store an attempt's new commands and completions and what they cause. True if anything
    new was stored."""
    inv = row.record
    base = inv.journal_length
    for offset, command in enumerate(commands):
        index = base + offset
        u.put(layout.journal_attrs(inv.id, index, command, now))
        await _PROCESSORS.get(command["kind"], _no_effect)(u, inv.id, row, index, command, effects)
    if commands:
        save(u, (await must_load(u, inv.id)).with_(journal_length=base + len(commands)))
    for key, completion in completions.items():
        await add_completion(u, inv.id, int(key), completion, now, effects)
    for child in children:
        await create(u, child, now, effects)
    return bool(commands or completions)


async def end(u: Unit, invocation_id: str, end: AttemptEnd, now: int, effects: Effects) -> None:
    """Move the invocation on as the attempt ended (after its last commands were applied)."""
    row = await must_load(u, invocation_id)
    inv = row.record
    if end.kind == "completed":
        assert end.completion is not None
        await complete(u, row, end.completion, now, effects)
    elif end.kind == "suspended":
        if await any_completed(u, invocation_id, list(end.waiting_on)):
            set_status(u, row, "ready", now)
            effects.ready.append(invocation_id)
        else:
            save(u, row.with_(status="suspended", waiting_on=list(end.waiting_on), modified_at=now))
    elif end.kind == "ready":
        set_status(u, row, "ready", now)
        effects.ready.append(invocation_id)
    elif end.kind == "backing-off":
        assert end.retry_at is not None
        changes = {"next_retry_at": end.retry_at, "last_failure": end.failure}
        save(
            u,
            row.with_(
                status="backing-off", retry_count=inv.retry_count + 1, modified_at=now, **changes
            ),
        )
        effects.timers.append(add_timer(u, end.retry_at, "retry", invocation_id, 0))
    elif end.kind == "paused":
        row = row.with_(
            status="paused",
            retry_count=inv.retry_count + 1,
            last_failure=end.failure,
            modified_at=now,
        )
        save(u, row)
        if inv.exclusive and inv.key is not None:
            await release(u, row, now, effects)


# One processor per command kind that has consequences in the store.

_Processor = Callable[[Unit, str, InvocationRow, int, Command, Effects], Awaitable[None]]


async def _no_effect(
    u: Unit, inv_id: str, row: InvocationRow, index: int, command: Command, fx: Effects
) -> None:
    return None


async def _on_sleep(
    u: Unit, inv_id: str, row: InvocationRow, index: int, command: Command, fx: Effects
) -> None:
    fx.timers.append(add_timer(u, command["wake_at"], "sleep", inv_id, index))


def _object(row: InvocationRow) -> tuple[str, str]:
    if row.record.key is None:
        raise StoreError(f"{row.record.id}: a state command needs an object key")
    return row.record.service, row.record.key


async def _on_set_state(
    u: Unit, inv_id: str, row: InvocationRow, index: int, command: Command, fx: Effects
) -> None:
    service, key = _object(row)
    u.put(layout.state_attrs(service, key, command["name"], command["value"]))


async def _on_clear_state(
    u: Unit, inv_id: str, row: InvocationRow, index: int, command: Command, fx: Effects
) -> None:
    service, key = _object(row)
    u.delete(layout.state_key(service, key, command["name"]))


async def _on_clear_all_state(
    u: Unit, inv_id: str, row: InvocationRow, index: int, command: Command, fx: Effects
) -> None:
    service, key = _object(row)
    items = await u.query(layout.object_pk(service, key), layout.STATE_PREFIX, layout.STATE_END)
    for attrs in items:
        u.delete(layout.key_of(attrs))


_PROCESSORS: dict[str, _Processor] = {
    "sleep": _on_sleep,
    "set_state": _on_set_state,
    "clear_state": _on_clear_state,
    "clear_all_state": _on_clear_all_state,
}


__all__ = [
    "add_completion",
    "any_completed",
    "apply",
    "complete",
    "create",
    "end",
    "enqueue",
    "fenced",
    "load",
    "load_state",
    "release",
    "start",
]
