"""An attempt's writes inside one unit of work: its new commands with what each causes (one
processor per command kind), its completions and calls, and how it ended. The same steps as
``apply``, the processors and ``end_attempt`` of the SQLite store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tarry.protocol import Command, Completion, Failure

from . import dynamodb_control as control
from . import dynamodb_layout as layout
from . import dynamodb_ops as ops
from . import dynamodb_waits as waits
from .base import AttemptEnd, Effects, NewInvocation, StoreError
from .dynamodb_control import Cascade
from .dynamodb_layout import InvocationRow
from .dynamodb_unit import Unit


async def apply(
    u: Unit,
    row: InvocationRow,
    commands: list[Command],
    completions: dict[str, Completion],
    children: list[NewInvocation],
    now: int,
    effects: Effects,
    cascade: Cascade,
) -> bool:
    """Store an attempt's new commands and completions and what they cause. True if anything
    new was stored."""
    inv = row.record
    base = inv.journal_length
    starts = {child.id: child for child in children}
    for offset, command in enumerate(commands):
        index = base + offset
        u.put(layout.journal_attrs(inv.id, index, command, now))
        # A call or send starts its invocation here, in journal order: an attach or a cancel
        # after it in the same batch finds it.
        child = starts.pop(str(command.get("invocation_id")), None)
        if child is not None and command["kind"] in ("call", "send"):
            await ops.create(u, child, now, effects)
        process = _PROCESSORS.get(command["kind"], _no_effect)
        await process(u, row, index, command, now, effects, cascade)
    if commands:
        ops.save(u, (await ops.must_load(u, inv.id)).with_(journal_length=base + len(commands)))
    for key, completion in completions.items():
        await ops.add_completion(u, inv.id, int(key), completion, now, effects)
    for child in starts.values():
        await ops.create(u, child, now, effects)
    return bool(commands or completions)


async def end(
    u: Unit,
    invocation_id: str,
    end: AttemptEnd,
    interrupt: str | None,
    now: int,
    effects: Effects,
    cascade: Cascade,
) -> None:
    """Move the invocation on as the attempt ended (after its last commands were applied).
    ``interrupt``: what was asked of it while the attempt ran, as the attempt's fence read it."""
    row = await ops.must_load(u, invocation_id)
    inv = row.record
    if end.kind == "completed":
        assert end.completion is not None
        await ops.complete(u, row, end.completion, now, effects)
    elif interrupt == "pause":
        await control.park(u, row, now)
    elif interrupt == "cancel" and end.kind == "suspended":
        ops.set_status(u, row, "ready", now)
        effects.ready.append(invocation_id)
        await control.deliver_cancel(u, invocation_id, list(end.waiting_on), now, effects, cascade)
    elif end.kind == "suspended":
        if await ops.any_completed(u, invocation_id, list(end.waiting_on)):
            ops.set_status(u, row, "ready", now)
            effects.ready.append(invocation_id)
        else:
            waiting = list(end.waiting_on)
            ops.save(u, row.with_(status="suspended", waiting_on=waiting, modified_at=now))
    elif end.kind == "ready":
        ops.set_status(u, row, "ready", now)
        effects.ready.append(invocation_id)
    elif end.kind == "backing-off":
        assert end.retry_at is not None
        changes = {"next_retry_at": end.retry_at, "last_failure": end.failure}
        retries = inv.retry_count + 1
        ops.save(
            u, row.with_(status="backing-off", retry_count=retries, modified_at=now, **changes)
        )
        effects.timers.append(ops.add_timer(u, end.retry_at, "retry", invocation_id, 0))
    elif end.kind == "paused":
        # It keeps its object key (see control.park).
        retries = inv.retry_count + 1
        paused = row.with_(
            status="paused", retry_count=retries, last_failure=end.failure, modified_at=now
        )
        ops.save(u, paused)


# One processor per command kind that has consequences in the store.

_Processor = Callable[[Unit, InvocationRow, int, Command, int, Effects, Cascade], Awaitable[None]]


async def _no_effect(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    return None


async def _on_sleep(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    fx.timers.append(ops.add_timer(u, command["wake_at"], "sleep", row.record.id, index))


def _object(row: InvocationRow) -> tuple[str, str]:
    if row.record.key is None:
        raise StoreError(f"{row.record.id}: a state command needs an object key")
    return row.record.service, row.record.key


async def _on_set_state(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    service, key = _object(row)
    u.put(layout.state_attrs(service, key, command["name"], command["value"]))


async def _on_clear_state(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    service, key = _object(row)
    u.delete(layout.state_key(service, key, command["name"]))


async def _on_clear_all_state(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    service, key = _object(row)
    items = await u.query(layout.object_pk(service, key), layout.STATE_PREFIX, layout.STATE_END)
    for attrs in items:
        u.delete(layout.key_of(attrs))


async def _on_complete_awakeable(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    awk_id = command["awakeable_id"]
    outcome = await waits.complete_awakeable(u, awk_id, command["completion"], now, fx)
    result: Completion = {"value": None}
    if outcome == "already-completed":
        result = {"failure": {"code": 409, "message": f"awakeable {awk_id} was already completed"}}
    elif outcome == "not-found":
        result = {"failure": {"code": 404, "message": f"no awakeable {awk_id}"}}
    await ops.add_completion(u, row.record.id, index, result, now, fx)


async def _on_get_promise(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    await waits.get_promise(u, row, index, command["name"], now, fx)


async def _on_complete_promise(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    name, completion = command["name"], command["completion"]
    await waits.complete_promise(u, row, index, name, completion, now, fx)


async def _on_attach(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    target = await ops.load(u, command["invocation_id"])
    if target is None:
        failure: Failure = {"code": 404, "message": f"no invocation {command['invocation_id']}"}
        await ops.add_completion(u, row.record.id, index, {"failure": failure}, now, fx)
        return
    await ops.attach(u, target, row.record.id, index, now, fx)


async def _on_cancel_invocation(
    u: Unit, row: InvocationRow, index: int, command: Command, now: int, fx: Effects, c: Cascade
) -> None:
    target = await ops.load(u, command["invocation_id"])
    if target is not None:
        await control.cancel(u, target, now, fx, c)


_PROCESSORS: dict[str, _Processor] = {
    "sleep": _on_sleep,
    "set_state": _on_set_state,
    "clear_state": _on_clear_state,
    "clear_all_state": _on_clear_all_state,
    "complete_awakeable": _on_complete_awakeable,
    "get_promise": _on_get_promise,
    "complete_promise": _on_complete_promise,
    "attach": _on_attach,
    "cancel_invocation": _on_cancel_invocation,
}


__all__ = ["apply", "end"]
