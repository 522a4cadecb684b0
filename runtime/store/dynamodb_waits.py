"""Waiting on the outside world, inside one unit of work: awakeables, durable promises, finding
an invocation by its idempotency key. The same steps as their namesakes in :mod:`.sqlite_tx`."""

from __future__ import annotations

from dataclasses import replace

from tarry.protocol import Completion, Failure, authentic_awakeable_id, parse_awakeable_id

from . import dynamodb_layout as layout
from . import dynamodb_ops as ops
from .base import AwakeableOutcome, Effects, Invocation, StoreError
from .dynamodb_layout import InvocationRow
from .dynamodb_unit import Unit


async def complete_awakeable(
    u: Unit,
    awakeable_id: str,
    completion: Completion,
    now: int,
    effects: Effects,
) -> AwakeableOutcome:
    """Complete the awakeable ``awakeable_id`` names, if the id is authentic: exactly the one
    its invocation's secret makes for that entry (see :func:`tarry.protocol.awakeable_id`).
    The invocation is read, so re-asserted at commit: the decision "not stored yet, but an
    attempt is in flight" cannot outlive a change of the invocation."""
    try:
        invocation_id, index = parse_awakeable_id(awakeable_id)
    except ValueError:
        return "not-found"
    row = await ops.load(u, invocation_id)
    if row is None or index < 1 or not authentic_awakeable_id(awakeable_id, row.record.secret):
        return "not-found"
    inv = row.record
    if index < inv.journal_length:
        attrs = await u.get(layout.journal_key(invocation_id, index))
        if attrs is None or layout.command_of(attrs)["kind"] != "awakeable":
            return "not-found"
        if inv.status == "completed":  # nothing waits for it any more
            done = await ops.any_completed(u, invocation_id, [index])
            return "already-completed" if done else "not-found"
    elif inv.status not in ("running", "ready", "backing-off"):
        # Not stored, and no attempt in flight that could still store it.
        return "not-found"
    if await ops.add_completion(u, invocation_id, index, completion, now, effects):
        return "completed"
    return "already-completed"


def _object(row: InvocationRow) -> tuple[str, str]:
    if row.record.key is None:
        raise StoreError(f"{row.record.id}: a promise needs a workflow key")
    return row.record.service, row.record.key


async def _promise(u: Unit, service: str, key: str, name: str) -> layout.Promise:
    attrs = await u.get(layout.promise_key(service, key, name))  # versioned: re-asserted
    return layout.promise_of(service, key, name, attrs)


async def get_promise(
    u: Unit, row: InvocationRow, index: int, name: str, now: int, effects: Effects
) -> None:
    """Journal entry ``index`` awaits promise ``name``: completed at once if the promise is,
    else noted among the promise's waiters."""
    service, key = _object(row)
    promise = await _promise(u, service, key, name)
    if promise.completion is not None:
        await ops.add_completion(u, row.record.id, index, promise.completion, now, effects)
    elif (row.record.id, index) not in promise.waiters:
        waiters = (*promise.waiters, (row.record.id, index))
        u.put(layout.promise_attrs(replace(promise, waiters=waiters)))


async def complete_promise(
    u: Unit,
    row: InvocationRow,
    index: int,
    name: str,
    completion: Completion,
    now: int,
    effects: Effects,
) -> None:
    """Journal entry ``index`` completes promise ``name`` (the first completion wins; a later
    one fails with 409) and wakes its waiters."""
    service, key = _object(row)
    promise = await _promise(u, service, key, name)
    if promise.completion is not None:
        failure: Failure = {"code": 409, "message": f"promise {name!r} was already completed"}
        await ops.add_completion(u, row.record.id, index, {"failure": failure}, now, effects)
        return
    done = replace(promise, completion=completion, completed_at=now, waiters=())
    u.put(layout.promise_attrs(done))
    for waiter_id, waiter_index in promise.waiters:
        await ops.add_completion(u, waiter_id, waiter_index, completion, now, effects)
    await ops.add_completion(u, row.record.id, index, {"value": None}, now, effects)


async def forget_waiter(u: Unit, service: str, key: str, invocation_id: str) -> None:
    """Take an invocation (being purged) off the waiters of its key's promises."""
    pk = layout.object_pk(service, key)
    for attrs in await u.query(pk, layout.PROMISE_PREFIX, layout.PROMISE_END):
        name = attrs[layout.SK].removeprefix(layout.PROMISE_PREFIX)
        promise = await _promise(u, service, key, name)
        waiters = tuple(w for w in promise.waiters if w[0] != invocation_id)
        if waiters != promise.waiters:
            u.put(layout.promise_attrs(replace(promise, waiters=waiters)))


async def find(
    u: Unit, service: str, key: str | None, handler: str, idempotency_key: str, now: int
) -> Invocation | None:
    """The invocation an idempotency key names within its retention."""
    attrs = await u.get(layout.idempotency_key(service, key, handler, idempotency_key))
    if attrs is None:
        return None
    record = layout.idempotency_record(attrs)
    if record.expired(now):
        return None
    row = await ops.load(u, record.invocation_id)
    return row.record if row is not None else None


__all__ = ["complete_awakeable", "complete_promise", "find", "forget_waiter", "get_promise"]
