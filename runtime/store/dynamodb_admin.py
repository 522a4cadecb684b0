"""The DynamoDB store's operations from outside an attempt: completing an awakeable, finding
an invocation by its idempotency key, and what the admin API does — cancel, kill, pause, resume,
purge, the journal timeline, state edits. A base of :class:`.dynamodb.DynamoDBStore`, which runs
each operation as one optimistic transaction (``_do``); the steps inside are in
:mod:`.dynamodb_control` and :mod:`.dynamodb_waits`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tarry.protocol import Completion

from . import dynamodb_control as control
from . import dynamodb_layout as layout
from . import dynamodb_ops as ops
from . import dynamodb_waits as waits
from .base import (
    AwakeableOutcome,
    Effects,
    Invocation,
    JournalEntry,
    NewInvocation,
    StoreError,
    check_purgeable,
)
from .dynamodb_control import Action, Cascade
from .dynamodb_layout import Key
from .dynamodb_unit import TransactionTooLarge, Unit, query_all

T = TypeVar("T")

log = logging.getLogger("tarry.runtime.store.dynamodb")


class AdminOperations:
    """What :class:`~.dynamodb.DynamoDBStore` does from outside an attempt."""

    table: str

    async def client(self) -> Any:
        raise NotImplementedError

    async def get(self, invocation_id: str) -> Invocation | None:
        raise NotImplementedError

    async def _do(self, op: Callable[[Unit], Awaitable[T]], forget: list[Key] | None = None) -> T:
        raise NotImplementedError

    async def _cascading(
        self,
        op: Callable[[Unit, Cascade], Awaitable[T]],
        now: int,
        forget: list[Key] | None = None,
    ) -> tuple[T, Effects]:
        """Run ``op`` as one transaction, cancelling (killing) the calls of what it cancels
        (kills) within it. If that needs more than one transaction holds because of those
        calls, run it again with them cut off, then cancel (kill) each, in order, with an
        operation of its own, and return their effects too (see :mod:`.dynamodb_control`)."""
        runs: list[Cascade] = []

        async def run_with(u: Unit, cascade: Cascade) -> T:
            runs.append(cascade)
            return await op(u, cascade)

        try:
            return await self._do(lambda u: run_with(u, Cascade()), forget), Effects()
        except TransactionTooLarge:
            if not runs or not runs[-1].reached:
                raise
        result = await self._do(lambda u: run_with(u, Cascade(inline=False)), forget)
        effects = Effects()
        for action, call_id in runs[-1].later:
            try:
                done = await self._act(action, call_id, now)
            except StoreError as exc:  # what committed stands; this call is left as it is
                log.warning("could not %s call %s: %s", action, call_id, exc)
                continue
            if done is not None:
                effects.merge(done[1])
        return result, effects

    async def resume(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        async def op(u: Unit) -> tuple[Invocation, Effects] | None:
            effects = Effects()
            row = await ops.load(u, invocation_id)
            if row is None:
                return None
            if row.record.status == "paused":
                await ops.enqueue(u, row.with_(retry_count=0), now, effects)
            elif row.record.interrupt == "pause":  # resumed before the pause took effect
                ops.save(u, row.with_(interrupt=None))
            return (await ops.must_load(u, invocation_id)).record, effects

        return await self._do(op)

    async def _act(
        self, action: Action, invocation_id: str, now: int
    ) -> tuple[Invocation, Effects] | None:
        async def op(u: Unit, cascade: Cascade) -> tuple[Invocation, Effects] | None:
            row = await ops.load(u, invocation_id)
            if row is None:
                return None
            effects = Effects()
            await control.ACTIONS[action](u, row, now, effects, cascade)
            return (await ops.must_load(u, invocation_id)).record, effects

        done, later = await self._cascading(op, now)
        if done is None:
            return None
        return done[0], done[1].merge(later)

    async def cancel(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        return await self._act("cancel", invocation_id, now)

    async def kill(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        return await self._act("kill", invocation_id, now)

    async def pause(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        async def op(u: Unit) -> tuple[Invocation, Effects] | None:
            row = await ops.load(u, invocation_id)
            if row is None:
                return None
            effects = Effects()
            await control.pause(u, row, now, effects)
            return (await ops.must_load(u, invocation_id)).record, effects

        return await self._do(op)

    async def purge(self, invocation_id: str, now: int) -> Invocation | None:
        """Delete a completed invocation, in steps of one transaction each, every one correct
        on its own (the invocation is completed, so nothing adds to its journal any more):

        1. its journal entries, completions and timers, a chunk at a time;
        2. the invocation item and its idempotency record, together with (a workflow's run
           that still owns its key's record) the key's promises and state, or (any other
           keyed invocation) its place among the waiters of the key's promises. More of the
           key's items than one transaction holds are deleted a chunk at a time first, each
           chunk conditional on the record and the invocation being unchanged.

        A purge cut short leaves the invocation completed with less of its journal (or the
        workflow key with less of its state); purging it again finishes the job."""
        inv = await self.get(invocation_id)
        if inv is None:
            return None
        check_purgeable(inv)
        chunk = _chunk()
        pk = layout.invocation_pk(invocation_id)

        async def journal(u: Unit) -> bool:
            items = await u.query(pk, limit=chunk + 1)
            for attrs in [a for a in items if a[layout.SK] != "inv"][:chunk]:
                u.delete(layout.key_of(attrs))
            return len(items) > chunk  # more may be left

        while await self._do(journal):
            pass

        async def rest(u: Unit) -> bool:
            row = await ops.load(u, invocation_id)
            if row is None:  # purged meanwhile
                return True
            record_key = None
            if inv.idempotency_key is not None:
                record_key = layout.idempotency_key(
                    inv.service, inv.key, inv.handler, inv.idempotency_key
                )
                attrs = await u.get(record_key)
                if attrs is None or attrs["invocation_id"] != inv.id:
                    record_key = None  # expired, and claimed by another since
            if inv.key is not None:
                if record_key is not None and inv.idempotency_key == "":
                    obj = layout.object_pk(inv.service, inv.key)
                    items = await u.query(obj, layout.PROMISE_PREFIX, layout.STATE_END, chunk)
                    for attrs in items:
                        u.delete(layout.key_of(attrs))
                    if len(items) == chunk:
                        return False  # a chunk of the key's items; more may be left
                else:
                    await waits.forget_waiter(u, inv.service, inv.key, inv.id)
            if record_key is not None:
                u.delete(record_key)
            for attrs in await u.query(pk):  # the invocation, and what was added since step 1
                u.delete(layout.key_of(attrs))
            return True

        while not await self._do(rest):
            pass
        return inv

    async def _clear_expired_run(self, new: NewInvocation, now: int) -> None:
        """Forget the state and promises of a workflow key whose run's record expired, a chunk
        per transaction, each conditional on the record being unchanged (still expired, not
        claimed by a new run meanwhile)."""
        assert new.key is not None
        record_key = layout.idempotency_key(new.service, new.key, new.handler, "")
        obj = layout.object_pk(new.service, new.key)
        chunk = _chunk()

        async def op(u: Unit) -> bool:
            attrs = await u.get(record_key)
            if attrs is None or not layout.idempotency_record(attrs).expired(now):
                return False
            items = await u.query(obj, layout.PROMISE_PREFIX, layout.STATE_END, chunk)
            for item in items:
                u.delete(layout.key_of(item))
            return len(items) == chunk

        while await self._do(op):
            pass

    async def complete_awakeable(
        self, awakeable_id: str, completion: Completion, now: int
    ) -> tuple[AwakeableOutcome, Effects]:
        async def op(u: Unit) -> tuple[AwakeableOutcome, Effects]:
            effects = Effects()
            outcome = await waits.complete_awakeable(u, awakeable_id, completion, now, effects)
            return outcome, effects

        return await self._do(op)

    async def find(
        self, service: str, key: str | None, handler: str, idempotency_key: str, now: int
    ) -> Invocation | None:
        return await self._do(lambda u: waits.find(u, service, key, handler, idempotency_key, now))

    async def timeline(self, invocation_id: str) -> list[JournalEntry]:
        client = await self.client()
        items = await query_all(client, self.table, layout.invocation_pk(invocation_id))
        return layout.timeline_of(items)

    async def edit_state(
        self,
        service: str,
        key: str,
        set_values: dict[str, Any],
        clear: list[str],
        clear_all: bool,
        now: int,
    ) -> dict[str, Any]:
        return await self._do(
            lambda u: control.edit_state(u, service, key, set_values, clear, clear_all)
        )


def _chunk() -> int:
    """How many items a bulk deletion removes per transaction (room left for its checks)."""
    return max(1, layout.MAX_TRANSACTION_ACTIONS - 5)


__all__ = ["AdminOperations"]
