"""Steering invocations from outside, inside one unit of work: cancel, kill, pause, and editing
an object's state. The same steps as their namesakes in :mod:`.sqlite_tx`.

Cancelling or killing an invocation reaches the calls it has no result from yet, and theirs in
turn (a *cascade*). It happens in the invocation's own transaction, as in SQLite, as long as the
whole tree fits in one DynamoDB transaction (100 items). A larger tree is cut at the first level:
the invocation's transaction commits on its own, and each call is then cancelled (killed) by an
operation of its own, which cascades in the same way (:class:`Cascade`,
``AdminOperations._cascading``). The invocation goes first, its calls after: its transaction
may be an attempt's end, which cannot wait for them, and a kill must not wake it with its calls'
results. The final state is the one SQLite reaches in one transaction (a call's result that
arrives after the invocation's own cancellation finds that entry completed already: the first
completion wins). Each step is a complete cancel (kill) of one invocation, correct whether or
not the next one happens. What a crash between the steps leaves: the calls not yet reached keep
running, as if they had not been made from the cancelled invocation; they can be cancelled on
their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tarry.protocol import CANCELLED, Completion, Failure

from . import dynamodb_layout as layout
from . import dynamodb_ops as ops
from .base import Effects, key_in_use, pausing
from .dynamodb_layout import InvocationRow
from .dynamodb_unit import Unit

KILLED: Failure = {"code": 409, "message": "killed"}

Action = Literal["cancel", "kill"]


@dataclass
class Cascade:
    """How one run of an operation reaches the open calls of what it cancels or kills: in the
    same unit (``inline``), or noted in ``later`` for the store to act on, each in its own
    operation, after this one commits."""

    inline: bool = True
    later: list[tuple[Action, str]] = field(default_factory=list)
    reached: bool = False  # inline: a call was cancelled (killed) in this unit


async def open_calls(u: Unit, invocation_id: str) -> list[str]:
    """The invocations started by ``invocation_id``'s calls that have no result yet."""
    items = await u.query(layout.invocation_pk(invocation_id))
    return [
        entry.command["invocation_id"]
        for entry in layout.timeline_of(items)
        if entry.command["kind"] == "call" and entry.completion is None
    ]


async def _each_open_call(
    u: Unit, row: InvocationRow, action: Action, now: int, effects: Effects, cascade: Cascade
) -> None:
    for child_id in await open_calls(u, row.record.id):
        if not cascade.inline:
            cascade.later.append((action, child_id))
            continue
        child = await ops.load(u, child_id)
        if child is None:  # an idempotent call attached to an invocation made elsewhere
            continue
        cascade.reached = True
        await ACTIONS[action](u, child, now, effects, cascade)


async def deliver_cancel(
    u: Unit,
    invocation_id: str,
    waiting_on: list[int],
    now: int,
    effects: Effects,
    cascade: Cascade,
) -> None:
    """Fail the entries a started invocation waits on with CANCELLED (so its code can
    compensate) and cancel the calls it has not had results from."""
    row = await ops.must_load(u, invocation_id)
    ops.save(u, row.with_(interrupt=None))
    await _each_open_call(u, row, "cancel", now, effects, cascade)
    cancelled: Completion = {"failure": CANCELLED}
    for index in waiting_on:
        await ops.add_completion(u, invocation_id, index, cancelled, now, effects)


async def cancel(u: Unit, row: InvocationRow, now: int, effects: Effects, cascade: Cascade) -> None:
    inv = row.record
    if inv.status == "completed":
        return
    if inv.status in ("scheduled", "pending") or inv.attempts == 0:
        # Never ran (also: ready or paused before a first attempt): nothing to compensate.
        await ops.drop_timers(u, inv.id)
        await ops.complete(u, row, {"failure": CANCELLED}, now, effects)
        return
    if inv.status == "suspended":
        await deliver_cancel(u, inv.id, inv.waiting_on, now, effects, cascade)
        return
    # running, ready, backing-off, paused: delivered (with its calls cancelled) when an attempt
    # suspends (end_attempt). A pause asked before stays asked, but the cancel comes first.
    row = row.with_(interrupt="cancel")
    if inv.status == "paused":  # it must run to see the cancellation
        await ops.enqueue(u, row.with_(retry_count=0), now, effects)
    else:
        ops.save(u, row)


async def kill(u: Unit, row: InvocationRow, now: int, effects: Effects, cascade: Cascade) -> None:
    if row.record.status == "completed":
        return
    await ops.drop_timers(u, row.record.id)
    await ops.complete(u, row, {"failure": KILLED}, now, effects)
    # after: their ends must not wake it
    await _each_open_call(u, row, "kill", now, effects, cascade)


ACTIONS: dict[Action, Callable[[Unit, InvocationRow, int, Effects, Cascade], Awaitable[None]]] = {
    "cancel": cancel,
    "kill": kill,
}


async def pause(u: Unit, row: InvocationRow, now: int, effects: Effects) -> None:
    step = pausing(row.record)
    if step == "when-attempt-ends" and row.record.interrupt is None:
        ops.save(u, row.with_(interrupt="pause"))
    elif step == "now":
        await park(u, row, now)


async def park(u: Unit, row: InvocationRow, now: int) -> None:
    """Pause ``row``. It keeps its place on its object key: an exclusive handler may have made
    half of its state changes, and the next one must not see them half-made. One still queued
    leaves the queue but keeps its position, to be queued there again on resume."""
    if row.record.status == "pending":
        await ops.dequeue(u, row)
    ops.save(u, row.with_(status="paused", interrupt=None, modified_at=now))


async def edit_state(
    u: Unit,
    service: str,
    key: str,
    set_values: dict[str, Any],
    clear: list[str],
    clear_all: bool,
) -> dict[str, Any]:
    """Change an idle object's state. The key's turn item is read, so re-asserted at commit:
    an invocation that takes the key meanwhile makes this run again, and be refused."""
    turn = await ops.object_turn(u, service, key)
    if turn.holder is not None:
        raise key_in_use(service, key, turn.holder)
    pk = layout.object_pk(service, key)
    if clear_all:
        for attrs in await u.query(pk, layout.STATE_PREFIX, layout.STATE_END):
            u.delete(layout.key_of(attrs))
    for name in clear:
        u.delete(layout.state_key(service, key, name))
    for name, value in set_values.items():
        u.put(layout.state_attrs(service, key, name, value))
    return layout.state_of(await u.query(pk, layout.STATE_PREFIX, layout.STATE_END))


__all__ = [
    "ACTIONS",
    "KILLED",
    "Action",
    "Cascade",
    "cancel",
    "deliver_cancel",
    "edit_state",
    "kill",
    "open_calls",
    "park",
    "pause",
]
