"""The DynamoDB store's core operations inside one unit of work (:mod:`.dynamodb_unit`).

The same steps as :mod:`.sqlite_tx`, one function each, on items instead of rows: they read
through the unit and write into it; nothing reaches DynamoDB until the unit commits, all at once.
An attempt's writes are in :mod:`.dynamodb_attempt`, awakeables and promises in
:mod:`.dynamodb_waits`, cancel / kill / pause in :mod:`.dynamodb_control`.

A function that changes an invocation saves a row it loaded *in this unit* (``load`` returns the
unit's own writes), never one handed down from before an earlier change of the same unit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tarry.protocol import Command, Completion

from . import dynamodb_layout as layout
from .base import (
    AttemptStart,
    Effects,
    IdempotencyConflict,
    NewInvocation,
    StaleEpoch,
    StoreError,
    Timer,
    TimerKind,
    new_record,
    new_secret,
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
        status="running",
        epoch=inv.epoch + 1,
        attempts=inv.attempts + 1,
        modified_at=now,
        # one stored before secrets gets one, kept from now
        secret=inv.secret or new_secret(late=True),
    )
    row = replace(row, owner=lease[0], lease_until=lease[1])
    save(u, row)
    if inv.key is None:
        return AttemptStart(row.record, journal, completions, None)
    state, promises = await load_object(u, inv.service, inv.key)
    return AttemptStart(row.record, journal, completions, state, promises)


async def load_object(
    u: Unit, service: str, key: str
) -> tuple[dict[str, Any], dict[str, Completion]]:
    """An object's (or workflow's) state and completed promises; the key's turn item comes
    along in the same Query."""
    items = await u.query(layout.object_pk(service, key), layout.PROMISE_PREFIX, layout.TURN)
    return layout.state_of(items), layout.promises_of(items)


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
        if new.idempotency_key == "" and new.key is not None:  # a workflow key begins anew
            await clear_workflow(u, new.service, new.key)
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


async def clear_workflow(u: Unit, service: str, key: str) -> None:
    """Forget a workflow key's state and promises (its run was purged or expired). More than a
    transaction holds fails the commit with ``TransactionTooLarge``; the store then clears the
    key in chunks first (``DynamoDBStore._clear_key``)."""
    pk = layout.object_pk(service, key)
    for attrs in await u.query(pk, layout.PROMISE_PREFIX, layout.STATE_END):
        u.delete(layout.key_of(attrs))


async def create(u: Unit, new: NewInvocation, now: int, effects: Effects) -> InvocationRow | None:
    """Insert ``new``, unless its idempotency key names an invocation already: then return that
    one, with ``new``'s caller (if any) attached to its result."""
    if new.idempotency_key is not None:
        existing = await claim_idempotency(u, new, now)
        if existing is not None:
            if new.caller_id is not None and new.caller_index is not None:
                if new.idempotency_key == "" and existing.record.id != new.id:
                    # A workflow's run, called a second time (not a retried first call).
                    message = f"the workflow {new.service}/{new.key} was already submitted"
                    failure: Completion = {"failure": {"code": 409, "message": message}}
                    await add_completion(u, new.caller_id, new.caller_index, failure, now, effects)
                else:
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
    row = layout.InvocationRow(new_record(new, now, new.start_at if delayed else None), callers)
    save(u, row)
    u.put(layout.journal_attrs(new.id, 0, {"kind": "input", "value": new.input}, now))
    if new.failure is not None:
        await complete(u, row, {"failure": new.failure}, now, effects)
    elif delayed:
        assert new.start_at is not None
        effects.timers.append(add_timer(u, new.start_at, "start", new.id, 0))
    else:
        await enqueue(u, row, now, effects)


async def enqueue(u: Unit, row: InvocationRow, now: int, effects: Effects) -> None:
    """Make an invocation ready (a new one, a delayed one now due, a resumed one), or queue it
    behind the holder of its object key: at the end of the queue, or, if it was queued before
    (paused while it waited), at its old place again."""
    inv = row.record
    if inv.exclusive and inv.key is not None:
        turn = await object_turn(u, inv.service, inv.key)
        if turn.holder is not None and turn.holder != inv.id:
            position = row.queue_pos if row.queue_pos is not None else turn.tail
            queued = layout.queued_key(inv.service, inv.key, position)
            if row.queue_pos is not None and await u.get(queued) is not None:
                waiting = turn.waiting  # still queued there: nothing to add
            else:
                u.put(layout.queued_attrs(inv.service, inv.key, position, inv.id))
                waiting = turn.waiting + 1
            tail = max(turn.tail, position + 1)
            _save_turn(u, Turn(inv.service, inv.key, turn.holder, tail, waiting))
            save(u, replace(row, queue_pos=position).with_(status="pending", modified_at=now))
            return
        if turn.holder is None:
            _save_turn(u, Turn(inv.service, inv.key, inv.id, turn.tail, turn.waiting))
        # else: it holds the key already (a paused or cancelled holder made ready again)
    save(u, replace(row, queue_pos=None).with_(status="ready", modified_at=now))
    effects.ready.append(inv.id)


async def object_turn(u: Unit, service: str, key: str, guess: bool = False) -> Turn:
    """Whose turn it is on an object key (read, so re-asserted at commit)."""
    return layout.turn_of(service, key, await u.get(layout.turn_key(service, key), guess))


def _save_turn(u: Unit, turn: Turn) -> None:
    u.put(layout.turn_attrs(turn))


async def dequeue(u: Unit, row: InvocationRow) -> None:
    """Take a queued invocation out of its object key's queue (it was cancelled, killed or
    paused while it waited). Its ``queue_pos`` stays, for a paused one to come back to."""
    inv = row.record
    if not inv.exclusive or inv.key is None:
        return
    pk = layout.object_pk(inv.service, inv.key)
    found: layout.Key | None = None
    if row.queue_pos is not None:
        key = layout.queued_key(inv.service, inv.key, row.queue_pos)
        attrs = await u.get(key)
        if attrs is not None and attrs["invocation_id"] == inv.id:
            found = key
    if found is None:  # queued by an earlier version that did not note the position
        for attrs in await u.query(pk, layout.QUEUE_PREFIX, layout.QUEUE_END):
            if attrs["invocation_id"] == inv.id:
                found = layout.key_of(attrs)
    if found is None:
        return
    u.delete(found)
    turn = await object_turn(u, inv.service, inv.key)
    waiting = max(0, turn.waiting - 1)
    _save_turn(u, Turn(inv.service, inv.key, turn.holder, turn.tail, waiting))


async def release(u: Unit, row: InvocationRow, now: int, effects: Effects) -> None:
    """Free the object key ``row`` holds (if it holds it) and hand it to the next queued
    invocation (FIFO)."""
    inv = row.record
    assert inv.key is not None
    turn = await object_turn(u, inv.service, inv.key, guess=True)
    if turn.holder != inv.id:
        return
    pk = layout.object_pk(inv.service, inv.key)
    taken = 0
    while turn.waiting > 0:  # (nobody waits: no Query)
        # The head of the queue, past the turns taken out in this unit.
        queued = await u.query(pk, layout.QUEUE_PREFIX, layout.QUEUE_END, limit=taken + 1)
        if not queued:  # the count was off: nobody is waiting after all
            break
        head = queued[0]
        u.delete(layout.key_of(head))
        taken += 1
        next_row = await load(u, head["invocation_id"])
        if next_row is None or next_row.record.status != "pending":
            continue  # a turn its invocation no longer waits for (left by an earlier version)
        waiting = max(0, turn.waiting - taken)
        _save_turn(u, Turn(inv.service, inv.key, next_row.record.id, turn.tail, waiting))
        save(u, replace(next_row, queue_pos=None).with_(status="ready", modified_at=now))
        effects.ready.append(next_row.record.id)
        return
    _save_turn(u, Turn(inv.service, inv.key, None, turn.tail, 0))


def add_timer(u: Unit, fire_at: int, kind: TimerKind, invocation_id: str, index: int) -> Timer:
    timer = Timer(fire_at, kind, invocation_id, index)
    u.put(layout.timer_attrs(timer))
    return timer


async def drop_timers(u: Unit, invocation_id: str) -> None:
    """Disarm every timer of an invocation (a timer wheel that still has one finds nothing to
    fire)."""
    pk = layout.invocation_pk(invocation_id)
    for attrs in await u.query(pk, layout.TIMER_PREFIX, layout.TIMER_END):
        u.delete(layout.key_of(attrs))


async def add_completion(
    u: Unit, invocation_id: str, index: int, completion: Completion, now: int, effects: Effects
) -> bool:
    """Record a completion (the first one wins: False if there was one) and wake the invocation
    if it waits for it. Nothing is recorded for an invocation that is gone (purged)."""
    key = layout.completion_key(invocation_id, index)
    u.assume(key, None)  # none yet, usually; the commit checks
    if await u.get(key) is not None:
        return False
    # Read, so re-asserted: if the invocation suspends meanwhile it must see this completion.
    row = await load(u, invocation_id)
    if row is None:
        return False
    u.put(layout.completion_attrs(invocation_id, index, completion, now))
    if row.record.status == "suspended" and index in row.record.waiting_on:
        save(u, row.with_(status="ready", waiting_on=[], modified_at=now))
        effects.ready.append(invocation_id)
    return True


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
        save(u, replace(row, callers=(*row.callers, (caller_id, caller_index))))


async def complete(
    u: Unit, row: InvocationRow, completion: Completion, now: int, effects: Effects
) -> None:
    """Complete the invocation: deliver the result to its callers, start its idempotency
    record's retention, leave its object key's queue or release the key."""
    row = await must_load(u, row.record.id)
    was = row.record.status
    done = replace(row, callers=(), owner=None, lease_until=None).with_(
        status="completed",
        completion=completion,
        completed_at=now,
        modified_at=now,
        waiting_on=[],
        interrupt=None,
    )
    save(u, done)
    inv = done.record
    if was == "pending":  # cancelled or killed while it waited for its key
        await dequeue(u, row)
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
        await release(u, done, now, effects)
    effects.finished.append(inv)


__all__ = [
    "add_completion",
    "add_timer",
    "any_completed",
    "attach",
    "clear_workflow",
    "complete",
    "create",
    "dequeue",
    "drop_timers",
    "enqueue",
    "fenced",
    "load",
    "load_object",
    "must_load",
    "object_turn",
    "release",
    "save",
    "set_status",
    "start",
]
