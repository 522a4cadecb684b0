"""One DynamoDB store operation as an optimistic transaction: the DynamoDB store's engine.

An operation reads the items it needs (consistent reads, each at most once), decides, and
collects its writes in memory; :meth:`Unit.commit` then writes them all in one
TransactWriteItems. Every decision rests on a read that the commit re-asserts: a versioned item
(invocation, key turn, idempotency record) or a completion that was read is either written
conditional on being unchanged, or checked with a ConditionCheck. If anything changed in between,
the transaction is cancelled, DynamoDB returns the items as they are now (ALL_OLD), and
:func:`run` runs the operation again knowing them. The result: operations behave as if they ran
one at a time, like SQLite's, without any lock.

An operation may start from a *guess* (an item this process wrote last, or "absent" for an item
it is about to create) instead of reading: a wrong guess costs one retry, never a wrong write.

A commit whose answer was lost (the connection cut or timed out after DynamoDB had the request,
or a 5xx) may have been carried out. It is sent again as it was, with the same
``ClientRequestToken``: DynamoDB carries a token's transaction out at most once, and answers a
repeat within ten minutes of one it carried out with success, changing nothing (even once its
conditions would fail); one it cancelled changed nothing, and its repeat is evaluated anew. So
the operation learns that its own write is in and returns what it did, instead of failing — or
running again on reads that already include its own write.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from . import dynamodb_layout as layout
from .base import StoreBusy, StoreError, ValueTooLarge
from .dynamodb_errors import Unanswered
from .dynamodb_layout import Attrs, Condition, Key

log = logging.getLogger("tarry.runtime.store.dynamodb")

T = TypeVar("T")


class TransactionTooLarge(StoreError):
    """One operation needs more than DynamoDB allows in a transaction."""


class _Retry(Exception):
    """The commit was cancelled; run the operation again with what was learned."""

    def __init__(self, learned: dict[Key, Attrs | None], forget: set[Key], contended: bool):
        super().__init__("transaction cancelled")
        self.learned = learned  # items as DynamoDB returned them (None: absent)
        self.forget = forget  # items to read afresh
        self.contended = contended  # another transaction was in the way: back off first


class Unit:
    """The reads and writes of one run of one operation."""

    def __init__(
        self,
        client: Any,
        table: str,
        known: dict[Key, Attrs | None],
        guesses: dict[Key, Attrs],
        unsure: frozenset[Key] = frozenset(),
    ) -> None:
        self._client = client
        self._table = table
        self._read: dict[Key, Attrs | None] = dict(known)  # as DynamoDB has them
        self._guessed: set[Key] = set()  # entries of _read that were not read
        self._guesses = guesses
        self._unsure = unsure  # items an earlier run's guess about failed: read them
        self._writes: dict[Key, Attrs | None] = {}  # final state (None: delete)
        self._conditions: dict[Key, Condition] = {}  # explicit conditions
        self._checked: set[Key] = set()  # reads the commit re-asserts
        self._queries: dict[tuple[str, str | None, str | None, int | None], list[Attrs]] = {}
        self._complete: list[tuple[str, str | None, str | None]] = []  # ranges read whole
        self.committed: dict[Key, Attrs | None] = {}

    # -- reads -------------------------------------------------------------------------------

    def assume(self, key: Key, attrs: Attrs | None) -> None:
        """Take ``attrs`` (None: absent) as the item's state without reading it; the commit
        checks the assumption. Not for an item an earlier run of the operation could not
        decide on a guess about (it is read instead)."""
        if key not in self._read and key not in self._unsure:
            self._read[key] = attrs
            self._guessed.add(key)

    def guessed(self, key: Key) -> bool:
        return key in self._guessed

    async def get(self, key: Key, guess: bool = False) -> Attrs | None:
        """The item as this operation sees it (its own writes included). With ``guess``, the
        version this process last wrote stands in for a read."""
        if key in self._writes:
            return self._writes[key]
        if key not in self._read:
            if guess and key in self._guesses and key not in self._unsure:
                self.assume(key, self._guesses[key])
            elif any(_within(key, *r) for r in self._complete):
                self._read[key] = None  # a Query read its whole range and it was not there
            else:
                self._read[key] = await self._fetch(key)
        if layout.kind_of(key) in layout.VERSIONED or layout.kind_of(key) == "completion":
            self._checked.add(key)
        return self._read[key]

    async def fresh(self, key: Key) -> Attrs | None:
        """The item read now, whatever was guessed."""
        self._read[key] = await self._fetch(key)
        self._guessed.discard(key)
        return await self.get(key)

    async def query(
        self, pk: str, low: str | None = None, high: str | None = None, limit: int | None = None
    ) -> list[Attrs]:
        """The items of partition ``pk`` with a sort key in ``[low, high]``, in sort key order,
        as this operation sees them (its own writes included). Versioned items among them are
        not re-asserted unless also read with :meth:`get`."""
        cache_key = (pk, low, high, limit)
        if cache_key not in self._queries:
            found = await query_all(self._client, self._table, pk, low, high, limit)
            for attrs in found:
                key = layout.key_of(attrs)
                if key not in self._read or key in self._guessed:
                    self._read[key] = attrs
                    self._guessed.discard(key)
            self._queries[cache_key] = found
            if limit is None:
                self._complete.append((pk, low, high))
        by_key = {layout.key_of(a): a for a in self._queries[cache_key]}
        for key, written in self._writes.items():
            if _within(key, pk, low, high):
                if written is None:
                    by_key.pop(key, None)
                else:
                    by_key[key] = written
        return [by_key[k] for k in sorted(by_key, key=lambda k: k[1])]

    async def _fetch(self, key: Key) -> Attrs | None:
        reply = await self._client.get_item(
            TableName=self._table, Key=layout.to_wire(layout.key_attrs(key)), ConsistentRead=True
        )
        item = reply.get("Item")
        return layout.from_wire(item) if item else None

    # -- writes ------------------------------------------------------------------------------

    def put(self, attrs: Attrs, condition: Condition | None = None) -> None:
        """Write the item (replacing it) at commit; a versioned item gets its next version."""
        key = layout.key_of(attrs)
        self._writes[key] = attrs
        if condition is not None:
            self._conditions[key] = condition

    def delete(self, key: Key, condition: Condition | None = None) -> None:
        if key in self._writes and self._read.get(key, "unread") is None:
            del self._writes[key]  # created and deleted within this operation
        else:
            self._writes[key] = None
        if condition is not None:
            self._conditions[key] = condition

    def fence(self, key: Key, epoch: int) -> None:
        """The invocation ``key`` must still run the attempt ``epoch`` when this commits."""
        attrs = self._read.get(key)
        version = attrs[layout.VERSION] if attrs else 0
        self._conditions[key] = layout.fenced(version, epoch)
        self._checked.add(key)

    # -- commit ------------------------------------------------------------------------------

    def _condition(self, key: Key, action: str) -> Condition | None:
        """The condition an action on ``key`` (``put``, ``delete`` or ``check``) carries: the
        explicit one, else what the operation's read of it established."""
        if key in self._conditions:
            return self._conditions[key]
        kind = layout.kind_of(key)
        before = self._read.get(key)
        if kind in layout.VERSIONED:
            if before is None:
                return layout.ABSENT
            return layout.unchanged(before[layout.VERSION])
        if kind in layout.IMMUTABLE:
            if action == "put":
                return layout.ABSENT
            if action == "delete":
                return layout.PRESENT
            return layout.ABSENT if before is None else layout.PRESENT
        return None

    def actions(self) -> list[tuple[Key, dict[str, Any]]]:
        """The transaction: one action per item written or re-asserted."""
        actions: list[tuple[Key, dict[str, Any]]] = []
        for key, attrs in self._writes.items():
            condition = self._condition(key, "put" if attrs is not None else "delete")
            extra = condition.params() if condition else {}
            if attrs is None:
                action = {"Delete": {"Key": layout.to_wire(layout.key_attrs(key)), **extra}}
            else:
                if layout.kind_of(key) in layout.VERSIONED:
                    before = self._read.get(key) or {}
                    attrs = {**attrs, layout.VERSION: before.get(layout.VERSION, 0) + 1}
                    self._writes[key] = attrs
                action = {"Put": {"Item": layout.to_wire(attrs), **extra}}
            actions.append((key, action))
        for key in sorted(self._checked - self._writes.keys()):
            condition = self._condition(key, "check")
            if condition is not None:
                item = {"Key": layout.to_wire(layout.key_attrs(key)), **condition.params()}
                actions.append((key, {"ConditionCheck": item}))
        for _, action in actions:
            ((_, body),) = action.items()
            body["TableName"] = self._table
            body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return actions

    async def commit(self) -> None:
        """Write everything in one transaction, or raise :class:`_Retry` if a read no longer
        holds. Nothing is sent if an item or the transaction is too large for DynamoDB."""
        if not self._writes:
            if self._checked & self._guessed:
                # decided on guesses alone and wrote nothing: decide again on reads
                raise _Retry({}, self._checked & self._guessed, False)
            return
        actions = self.actions()
        check_limits(self._writes.values(), len(actions))
        token = str(uuid.uuid4())  # the same for every send of this commit
        request = {"TransactItems": [a for _, a in actions], "ClientRequestToken": token}
        try:
            await transact(self._client, request)
        except self._client.exceptions.TransactionCanceledException as exc:
            raise _cancelled(
                exc.response, [k for k, _ in actions], self._read, self._guessed
            ) from None
        self.committed = dict(self._writes)


RESEND_S = 2.0  # how long a write whose answer was lost is sent again before giving up


async def transact(client: Any, request: dict[str, Any]) -> None:
    """Send a TransactWriteItems ``request`` until DynamoDB answers it: again as it was (its
    ``ClientRequestToken`` too) while the answer is lost or the first is still being carried
    out, for up to ``RESEND_S``; then :class:`Unanswered` (it may or may not have been
    carried out)."""
    deadline = asyncio.get_running_loop().time() + RESEND_S
    pause = 0.05
    while True:
        try:
            await client.transact_write_items(**request)
            return
        except Unanswered:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("a DynamoDB write got no answer; sending it again, as it was")
        except client.exceptions.TransactionInProgressException:
            # the first send is still being carried out: its answer is the one to wait for
            if asyncio.get_running_loop().time() > deadline:
                raise Unanswered(
                    f"a DynamoDB write was still being carried out after {RESEND_S:g} s"
                ) from None
        await asyncio.sleep(random.uniform(pause / 2, pause))
        pause = min(1.0, pause * 2)


def check_limits(written: Iterable[Attrs | None], actions: int) -> None:
    """Raise before anything is sent if DynamoDB would refuse the transaction for its size."""
    total = 0
    for attrs in written:
        if attrs is None:
            continue
        size = layout.item_size(attrs)
        if size > layout.MAX_ITEM_BYTES:
            kind = layout.kind_of(layout.key_of(attrs))
            raise ValueTooLarge(
                f"a {kind} item of {size} bytes exceeds DynamoDB's item limit of "
                f"{layout.MAX_ITEM_BYTES} bytes (400 KB); nothing was written"
            )
        total += size
    if actions > layout.MAX_TRANSACTION_ACTIONS:
        raise TransactionTooLarge(
            f"one write needs {actions} items changed together; a DynamoDB transaction takes "
            f"at most {layout.MAX_TRANSACTION_ACTIONS}; nothing was written"
        )
    if total > layout.MAX_TRANSACTION_BYTES:
        raise TransactionTooLarge(
            f"one write of {total} bytes exceeds DynamoDB's transaction limit of "
            f"{layout.MAX_TRANSACTION_BYTES} bytes (4 MB); nothing was written"
        )


def _cancelled(
    response: dict[str, Any],
    keys: list[Key],
    read: dict[Key, Attrs | None],
    guessed: set[Key],
) -> _Retry | StoreError:
    learned: dict[Key, Attrs | None] = {}
    forget: set[Key] = set()
    contended = False
    for key, reason in zip(keys, response.get("CancellationReasons", []), strict=False):
        code = reason.get("Code")
        if code == "ConditionalCheckFailed":
            item = reason.get("Item")
            learned[key] = now = layout.from_wire(item) if item else None
            if key in read and key not in guessed and now != read[key]:
                # read from DynamoDB by this run and changed since: another writer got there
                # first (a hot key written by several processes), not a stale guess
                contended = True
        elif code == "TransactionConflict":
            forget.add(key)
            contended = True
        elif code not in (None, "None"):
            if code in ("ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"):
                forget.add(key)
                contended = True
                continue
            return StoreError(f"DynamoDB cancelled the transaction: {code} on {key}: {reason}")
    return _Retry(learned, forget, contended)


def _within(key: Key, pk: str, low: str | None, high: str | None) -> bool:
    return key[0] == pk and (low is None or key[1] >= low) and (high is None or key[1] <= high)


async def query_all(
    client: Any,
    table: str,
    pk: str,
    low: str | None = None,
    high: str | None = None,
    limit: int | None = None,
) -> list[Attrs]:
    """Every item of partition ``pk`` with a sort key in ``[low, high]`` (consistent, all
    pages), at most ``limit``."""
    params = layout.partition_query(table, pk, low, high)
    return await query_pages(client, params, limit)


async def query_pages(client: Any, params: dict[str, Any], limit: int | None) -> list[Attrs]:
    """The items a Query finds, page after page, at most ``limit``."""
    found: list[Attrs] = []
    while True:
        if limit is not None:
            params["Limit"] = limit - len(found)
        reply = await client.query(**params)
        found += [layout.from_wire(i) for i in reply.get("Items", [])]
        last = reply.get("LastEvaluatedKey")
        if not last or (limit is not None and len(found) >= limit):
            return found
        params["ExclusiveStartKey"] = last


MAX_RUNS = 25  # runs that correct a stale read (no other writer in the way)
CONTENTION_S = 30.0  # how long a write keeps trying against other writers before giving up


async def run(
    client: Any,
    table: str,
    op: Callable[[Unit], Awaitable[T]],
    guesses: dict[Key, Attrs],
    known: dict[Key, Attrs | None] | None = None,
) -> tuple[T, Unit]:
    """Run ``op`` and commit its writes; run it again while its reads were overtaken by
    another writer: at most ``MAX_RUNS`` times to correct stale reads, and for up to
    ``CONTENTION_S`` (with jittered backoff) while other writers keep winning — a hot object
    key written by several processes. Returns its result and the committed unit."""
    known = dict(known or {})
    unsure: frozenset[Key] = frozenset()
    deadline = asyncio.get_running_loop().time() + CONTENTION_S
    stale = 0
    for attempt in itertools.count():
        unit = Unit(client, table, known, guesses, unsure)
        result = await op(unit)
        try:
            await unit.commit()
        except _Retry as retry:
            known = {**retry.learned}
            for key in retry.forget:
                known.pop(key, None)
            guesses = {k: v for k, v in guesses.items() if k not in retry.learned}
            guesses = {k: v for k, v in guesses.items() if k not in retry.forget}
            unsure |= retry.forget
            if retry.contended:
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreBusy(
                        f"a DynamoDB write lost to concurrent writers for {CONTENTION_S:g} s "
                        f"({attempt + 1} tries); nothing was written"
                    ) from None
                await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2 ** min(attempt, 6))))
            else:
                stale += 1
                if stale >= MAX_RUNS:
                    raise StoreError(
                        f"a DynamoDB write found stale reads {MAX_RUNS} times"
                    ) from None
            continue
        return result, unit
    raise AssertionError("unreachable")


__all__ = ["TransactionTooLarge", "Unit", "check_limits", "query_all", "query_pages", "run"]
