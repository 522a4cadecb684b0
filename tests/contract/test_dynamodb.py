"""What only the DynamoDB store has to get right: DynamoDB's limits, several store instances (or
processes) on one table racing, and the cost of the hot path in requests.

The behaviour every store shares is in test_store.py, which runs against DynamoDB Local too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tarry.protocol import Command
from tarry.runtime.store import AttemptEnd, StaleEpoch, ValueTooLarge
from tarry.runtime.store import dynamodb_layout as layout
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.dynamodb_table import create_table
from tests.contract.helpers import COMPLETED, OUTPUT, T0, new, started, status
from tests.dynamodb_local import Requests, dynamodb_table

BIG = "x" * 410_000  # over DynamoDB's 400 KB item limit


@pytest.fixture
async def store() -> AsyncIterator[DynamoDBStore]:
    async with dynamodb_table() as s:
        yield s


@pytest.fixture
async def other(store: DynamoDBStore) -> AsyncIterator[DynamoDBStore]:
    """A second store instance on the same table, as another process would have."""
    s = DynamoDBStore(store.table)
    try:
        yield s
    finally:
        await s.close()


# -- limits ----------------------------------------------------------------------------------


async def test_an_input_too_large_is_refused_and_nothing_is_stored(store: DynamoDBStore) -> None:
    inv = new(input=BIG, idempotency_key="idem")
    with pytest.raises(ValueTooLarge, match="400 KB"):
        await store.create(inv, T0, start=True)
    assert await store.get(inv.id) is None
    # the idempotency key was not claimed either
    again = await store.create(new(idempotency_key="idem"), T0)
    assert not again.previously_accepted


async def test_a_step_result_too_large_is_refused_before_anything_is_written(
    store: DynamoDBStore,
) -> None:
    a = await started(store, new(service="Obj", key="k"))
    inv_id = a.invocation.id
    commands: list[Command] = [
        {"kind": "set_state", "name": "x", "value": 1},
        {"kind": "run", "name": "big"},
    ]
    with pytest.raises(ValueTooLarge, match="step result"):
        await store.append(inv_id, 1, commands, {"2": {"value": BIG}}, [], T0)
    with pytest.raises(ValueTooLarge, match="400 KB"):
        big_state: list[Command] = [{"kind": "set_state", "name": "x", "value": BIG}]
        await store.end_attempt(inv_id, 1, big_state, {}, [], COMPLETED, T0)
    assert await store.journal(inv_id) == ([{"kind": "input", "value": "in"}], {})
    assert await store.state("Obj", "k") == {}
    assert await status(store, inv_id) == "running"


async def test_a_write_over_one_transaction_is_stored_as_journal_prefixes(
    store: DynamoDBStore,
) -> None:
    a = await started(store, new(service="Obj", key="k"))
    inv_id = a.invocation.id
    # each set_state is two items (journal entry, state entry): 240 > 100 actions
    sets: list[Command] = [{"kind": "set_state", "name": f"n{i}", "value": i} for i in range(120)]
    runs: dict[str, Any] = {}
    effects = await store.end_attempt(inv_id, 1, [*sets, *OUTPUT], runs, [], COMPLETED, T0)
    assert [i.id for i in effects.finished] == [inv_id]
    commands, _ = await store.journal(inv_id)
    assert commands[1:] == [*sets, *OUTPUT]
    assert await store.state("Obj", "k") == {f"n{i}": i for i in range(120)}
    got = await store.get(inv_id)
    assert got is not None
    assert (got.status, got.journal_length) == ("completed", 122)


# -- several stores on one table -------------------------------------------------------------


async def test_a_zombie_attempt_in_another_store_is_fenced_off(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    a = await started(store, new())  # this store drives attempt 1 (and remembers it)
    inv_id = a.invocation.id
    # its lease lapses unrenewed: another process takes over, attempt 2 runs
    lapsed = T0 + store.lease_ms
    assert await other.sweep(lapsed) == ([inv_id], [])
    b = await other.start_attempt(inv_id, lapsed)
    assert b is not None and b.invocation.epoch == 2
    await other.append(inv_id, 2, [{"kind": "run", "name": "two"}], {"1": {"value": 2}}, [], T0)
    # the zombie writes from what it remembers; the condition stops it, with the current record
    with pytest.raises(StaleEpoch) as raised:
        await store.append(inv_id, 1, [{"kind": "run", "name": "one"}], {"1": {"value": 1}}, [], T0)
    assert raised.value.current is not None
    assert (raised.value.current.epoch, raised.value.current.journal_length) == (2, 2)
    assert await store.journal(inv_id) == (
        [{"kind": "input", "value": "in"}, {"kind": "run", "name": "two"}],
        {"1": {"value": 2}},
    )


async def test_stores_racing_for_one_key_run_one_at_a_time_in_order(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    invs = [new(service="Obj", key="k") for _ in range(8)]
    results = await asyncio.gather(
        *(s.create(i, T0, start=True) for s, i in zip([store, other] * 4, invs, strict=True))
    )
    running = [r.started for r in results if r.started is not None]
    assert len(running) == 1
    order = [running[0].invocation.id]
    current = running[0]
    # completing each one hands the key to exactly one next, whichever store completes it
    for n in range(7):
        s = (store, other)[n % 2]
        effects = await s.end_attempt(current.invocation.id, 1, OUTPUT, {}, [], COMPLETED, T0 + n)
        (next_id,) = effects.ready
        nxt = await s.start_attempt(next_id, T0 + n)
        assert nxt is not None
        order.append(next_id)
        current = nxt
    assert sorted(order) == sorted(i.id for i in invs)
    assert {await status(store, i.id) for i in invs} == {"completed", "running"}


async def test_a_timer_fired_by_two_stores_fires_once(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    sleep: list[Command] = [{"kind": "sleep", "name": "", "wake_at": T0 + 5}]
    effects = await store.end_attempt(
        inv_id, 1, sleep, {}, [], AttemptEnd("suspended", waiting_on=(1,)), T0
    )
    (timer,) = effects.timers
    fired = await asyncio.gather(
        *(s.fire_timer(timer, T0 + 5) for s in (store, other, store, other))
    )
    assert sum(len(f.ready) for f in fired) == 1
    assert await store.timers() == []
    assert await status(store, inv_id) == "ready"


async def test_concurrent_idempotent_creates_from_two_stores_make_one_invocation(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    results = await asyncio.gather(
        *(
            s.create(new(idempotency_key="idem", request_hash="h"), T0, start=True)
            for s in (store, other) * 3
        )
    )
    assert len({r.invocation.id for r in results}) == 1
    assert sum(r.started is not None for r in results) == 1
    assert len(await store.list_invocations()) == 1


# -- leases and sweeps -----------------------------------------------------------------------


async def test_a_held_lease_is_not_taken_over_and_renewing_keeps_it(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    lease = store.lease_ms
    # another process starting up leaves a live attempt alone
    assert await other.recover(T0 + 1) == []
    assert await other.sweep(T0 + lease - 1) == ([], [])
    assert await status(store, inv_id) == "running"
    # renewed before it lapses: still held where it would have lapsed
    await store.renew_leases(T0 + lease // 2)
    assert await other.sweep(T0 + lease) == ([], [])
    assert await other.sweep(T0 + lease // 2 + lease) == ([inv_id], [])
    assert await status(store, inv_id) == "ready"
    # the old attempt's renewal is fenced off, and it stops renewing
    await store.renew_leases(T0 + 2 * lease)
    with pytest.raises(StaleEpoch):
        await store.end_attempt(inv_id, 1, OUTPUT, {}, [], COMPLETED, T0 + 2 * lease)


async def test_an_ended_attempt_holds_no_lease(store: DynamoDBStore, other: DynamoDBStore) -> None:
    a = await started(store, new())
    await store.end_attempt(
        a.invocation.id, 1, [], {}, [], AttemptEnd("suspended", waiting_on=(5,)), T0
    )
    assert await other.sweep(T0 + 10 * store.lease_ms) == ([], [])


async def test_a_sweep_finds_what_a_dead_process_left_ready_and_due(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    # made ready by a process that died before starting it
    left = new()
    await store.create(left, T0)
    a = await started(store, new())
    sleep: list[Command] = [{"kind": "sleep", "name": "", "wake_at": T0 + 50}]
    await store.end_attempt(
        a.invocation.id, 1, sleep, {}, [], AttemptEnd("suspended", waiting_on=(1,)), T0
    )
    # one sweep to notice it ready, the next to take it; the timer only once due
    assert await other.sweep(T0 + 10) == ([], [])
    ready, due = await other.sweep(T0 + 50)
    assert ready == [left.id]
    assert [(t.invocation_id, t.kind, t.index) for t in due] == [(a.invocation.id, "sleep", 1)]
    assert (await other.fire_timer(due[0], T0 + 50)).ready == [a.invocation.id]
    assert await other.start_attempt(left.id, T0 + 50) is not None


# -- the table -------------------------------------------------------------------------------


async def test_create_table_is_idempotent(store: DynamoDBStore) -> None:
    client = await store.client()
    assert await create_table(client, store.table) is False
    table = (await client.describe_table(TableName=store.table))["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {
        layout.BY_SERVICE,
        layout.BY_STATUS,
        layout.TIMERS,
    }


# -- cost ------------------------------------------------------------------------------------


async def test_the_hot_path_costs_one_write_per_step_and_no_reads(store: DynamoDBStore) -> None:
    requests = Requests(await store.client())
    a = await started(store, new())
    inv_id = a.invocation.id
    assert requests.take() == {"TransactWriteItems": 1}  # create and start
    for i in range(3):
        run: list[Command] = [{"kind": "run", "name": f"s{i}"}]
        await store.append(inv_id, 1, run, {str(i + 1): {"value": i}}, [], T0)
        assert requests.take() == {"TransactWriteItems": 1}
    await store.end_attempt(inv_id, 1, OUTPUT, {}, [], COMPLETED, T0)
    assert requests.take() == {"TransactWriteItems": 1}


async def test_a_keyed_invocation_costs_one_read_for_its_state(store: DynamoDBStore) -> None:
    requests = Requests(await store.client())
    a = await started(store, new(service="Obj", key="k"))
    assert requests.take() == {"Query": 1, "TransactWriteItems": 1}  # state and turn, one Query
    set_x: list[Command] = [{"kind": "set_state", "name": "x", "value": 1}, *OUTPUT]
    await store.end_attempt(a.invocation.id, 1, set_x, {}, [], COMPLETED, T0)
    assert requests.take() == {"TransactWriteItems": 1}  # nobody waits: the release reads nothing
