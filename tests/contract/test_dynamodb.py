"""What only the DynamoDB store has to get right: DynamoDB's limits (and the operations that
take several transactions because of them), several store instances (or processes) on one table
racing, and the cost of the hot path in requests.

The behaviour every store shares is in test_store*.py, which runs against DynamoDB Local too.
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
from tarry.runtime.store.dynamodb_unit import query_all
from tests.contract.helpers import (
    CANCELLED_RESULT,
    COMPLETED,
    KILLED,
    OUTPUT,
    T0,
    attach_command,
    call_command,
    complete,
    complete_promise,
    completions,
    get,
    get_promise,
    new,
    set_state,
    sleep_at,
    started,
    status,
    suspended,
    workflow_run,
    workflow_shared,
)
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


# -- operations over more items than one transaction holds --------------------------------


async def call_chain(store: DynamoDBStore, depth: int, top_running: bool = False) -> list[str]:
    """``depth`` invocations, each waiting on a call to the next (suspended on it; the top one
    still running, if ``top_running``); the last one runs."""
    ids = [(await started(store, new(service="C0"))).invocation.id]
    for level in range(1, depth):
        child = new(service=f"C{level}", caller_id=ids[-1], caller_index=1)
        if level == 1 and top_running:
            await store.append(ids[-1], 1, [call_command(child)], {}, [child], T0)
        else:
            await store.end_attempt(
                ids[-1], 1, [call_command(child)], {}, [child], suspended(1), T0
            )
        assert await store.start_attempt(child.id, T0) is not None
        ids.append(child.id)
    return ids


def small_transactions(monkeypatch: pytest.MonkeyPatch, actions: int) -> None:
    """From now on, a transaction holds at most ``actions`` items (DynamoDB's limit is 100)."""
    monkeypatch.setattr(layout, "MAX_TRANSACTION_ACTIONS", actions)


async def test_a_cancel_too_large_for_one_transaction_reaches_every_call_in_steps(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await call_chain(store, 6)
    small_transactions(monkeypatch, 6)
    requests = Requests(await store.client())
    result = await store.cancel(ids[0], T0 + 1)
    assert requests.take()["TransactWriteItems"] > 1  # it did take several
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt) == ("ready", None)
    assert sorted(effects.ready) == sorted(ids[:-1])
    for inv_id in ids[:-1]:  # as in one transaction: each fails its wait and is ready
        assert await completions(store, inv_id) == {"1": CANCELLED_RESULT}
        assert await status(store, inv_id) == "ready"
    last = await get(store, ids[-1])
    assert (last.status, last.interrupt) == ("running", "cancel")


async def test_a_kill_too_large_for_one_transaction_reaches_every_call_in_steps(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await call_chain(store, 6)
    small_transactions(monkeypatch, 6)
    requests = Requests(await store.client())
    result = await store.kill(ids[0], T0 + 1)
    assert requests.take()["TransactWriteItems"] > 1
    assert result is not None
    inv, effects = result
    assert inv.completion == KILLED
    assert sorted(i.id for i in effects.finished) == sorted(ids)
    assert effects.ready == []
    for inv_id in ids:
        assert (await get(store, inv_id)).completion == KILLED
    with pytest.raises(StaleEpoch):
        await store.append(ids[-1], 1, [{"kind": "run", "name": "late"}], {}, [], T0 + 2)


async def test_a_cancel_delivered_at_a_suspension_reaches_a_large_tree_in_steps(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await call_chain(store, 6, top_running=True)
    await store.cancel(ids[0], T0 + 1)
    small_transactions(monkeypatch, 6)
    requests = Requests(await store.client())
    effects = await store.end_attempt(ids[0], 1, [], {}, [], suspended(1), T0 + 2)
    assert requests.take()["TransactWriteItems"] > 1
    assert sorted(effects.ready) == sorted(ids[:-1])
    for inv_id in ids[:-1]:
        assert await completions(store, inv_id) == {"1": CANCELLED_RESULT}
        got = await get(store, inv_id)
        assert (got.status, got.interrupt) == ("ready", None)
    assert (await get(store, ids[-1])).interrupt == "cancel"


async def test_purging_more_than_a_transaction_holds_deletes_it_in_steps(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await started(store, new(idempotency_key="idem"))
    inv_id = a.invocation.id
    runs: list[Command] = [{"kind": "run", "name": f"s{i}"} for i in range(30)]
    await store.append(inv_id, 1, runs, {str(i + 1): {"value": i} for i in range(30)}, [], T0)
    await store.end_attempt(inv_id, 1, [sleep_at(T0 + 10**6), *OUTPUT], {}, [], COMPLETED, T0)
    small_transactions(monkeypatch, 10)

    assert await store.purge(inv_id, T0 + 1) is not None
    assert await store.get(inv_id) is None
    client = await store.client()
    assert await query_all(client, store.table, layout.invocation_pk(inv_id)) == []
    assert await store.timers() == []
    assert await store.find("Svc", None, "h", "idem", T0 + 2) is None


async def test_purging_a_workflow_run_with_much_state_clears_the_key_in_steps(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await started(store, workflow_run())
    commands = [*(set_state(f"n{i}", i) for i in range(30)), complete_promise("p", {"value": 1})]
    await store.end_attempt(run.invocation.id, 1, [*commands, *OUTPUT], {}, [], COMPLETED, T0)
    small_transactions(monkeypatch, 10)

    assert await store.purge(run.invocation.id, T0 + 1) is not None
    assert await store.state("Wf", "k") == {}
    client = await store.client()
    left = await query_all(client, store.table, layout.object_pk("Wf", "k"))
    assert [a[layout.SK] for a in left] == [layout.TURN]  # no promise, no state
    again = await started(store, workflow_run(), T0 + 2)
    assert (again.state, again.promises) == ({}, {})


async def test_a_new_run_of_an_expired_workflow_with_much_state_starts_afresh(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await started(store, workflow_run(retention_ms=1_000))
    commands = [*(set_state(f"n{i}", i) for i in range(30)), complete_promise("p", {"value": 1})]
    await store.end_attempt(first.invocation.id, 1, [*commands, *OUTPUT], {}, [], COMPLETED, T0)
    small_transactions(monkeypatch, 10)

    created = await store.create(workflow_run(), T0 + 2_000, start=True)
    assert not created.previously_accepted
    assert created.started is not None
    assert (created.started.state, created.started.promises) == ({}, {})
    assert await store.state("Wf", "k") == {}


async def test_a_stale_queued_turn_is_skipped_when_the_key_is_handed_on(
    store: DynamoDBStore,
) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    gone, waiting = new(service="Obj", key="k"), new(service="Obj", key="k")
    await store.create(gone, T0)
    await store.create(waiting, T0)
    await store.cancel(gone.id, T0)  # it leaves the queue
    # ... but as an earlier version would have left it, its queued turn is still there
    client = await store.client()
    queued = layout.queued_attrs("Obj", "k", 0, gone.id)
    await client.put_item(TableName=store.table, Item=layout.to_wire(queued))
    pk, sk = layout.turn_key("Obj", "k")
    reply = await client.get_item(TableName=store.table, Key=layout.to_wire({"pk": pk, "sk": sk}))
    turn = layout.from_wire(reply["Item"])
    turn["waiting"] += 1
    turn[layout.VERSION] += 1
    await client.put_item(TableName=store.table, Item=layout.to_wire(turn))

    assert (await complete(store, holder)).ready == [waiting.id]
    assert await status(store, waiting.id) == "ready"


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


async def test_many_stores_arriving_on_one_key_at_once_all_get_their_turn(
    store: DynamoDBStore,
) -> None:
    # six processes, each with its own arrivals on one hot key: every arrival writes the key's
    # turn item, so most commits find it changed by another process and must run again; they
    # back off and keep trying rather than give up after a fixed number of runs
    others = [DynamoDBStore(store.table) for _ in range(5)]
    try:
        stores = [store, *others] * 10
        invs = [new(service="Obj", key="hot") for _ in stores]
        results = await asyncio.gather(
            *(s.create(i, T0, start=True) for s, i in zip(stores, invs, strict=True))
        )
    finally:
        for s in others:
            await s.close()
    assert sum(r.started is not None for r in results) == 1
    assert sorted([await status(store, i.id) for i in invs]) == ["pending"] * 59 + ["running"]


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


async def test_a_promise_awaited_and_completed_at_once_in_two_stores_wakes_its_waiter(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    for n in range(4):
        key = f"k{n}"
        run = await started(store, workflow_run(key=key))
        signal = await started(other, workflow_shared(key=key))
        value = {"value": n}
        await asyncio.gather(
            store.end_attempt(run.invocation.id, 1, [get_promise("p")], {}, [], suspended(1), T0),
            other.append(signal.invocation.id, 1, [complete_promise("p", value)], {}, [], T0),
        )
        assert await completions(store, run.invocation.id) == {"1": value}
        assert await status(store, run.invocation.id) == "ready"


# -- leases and sweeps -----------------------------------------------------------------------


async def test_attaching_to_a_running_invocation_leaves_its_lease_alone(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    target = await started(store, new(service="Callee"))
    caller = await started(store, new(service="Caller"))
    command = attach_command(target.invocation.id)
    await store.end_attempt(caller.invocation.id, 1, [command], {}, [], suspended(1), T0)
    assert await other.sweep(T0 + 1) == ([], [])
    assert await status(store, target.invocation.id) == "running"


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
    # ready for two sweep intervals with nobody starting it: taken, by a sweep that remembers
    # nothing from before (each may run in another process); the timer only once due
    assert await other.sweep(T0 + 10) == ([], [])
    stale = T0 + 2 * other.sweep_interval_ms
    assert (await other.sweep(stale - 1))[0] == []
    fresh = DynamoDBStore(store.table)
    try:
        ready, due = await fresh.sweep(stale)
    finally:
        await fresh.close()
    assert ready == [left.id]
    assert [(t.invocation_id, t.kind, t.index) for t in due] == [(a.invocation.id, "sleep", 1)]
    assert (await other.fire_timer(due[0], stale)).ready == [a.invocation.id]
    assert await other.start_attempt(left.id, stale) is not None


async def test_a_sweep_reads_timers_due_within_its_horizon(
    store: DynamoDBStore, other: DynamoDBStore
) -> None:
    a = await started(store, new())
    wake_at = T0 + 20 * 60_000
    sleep: list[Command] = [{"kind": "sleep", "name": "", "wake_at": wake_at}]
    await store.end_attempt(
        a.invocation.id, 1, sleep, {}, [], AttemptEnd("suspended", waiting_on=(1,)), T0
    )
    horizon = 15 * 60_000
    assert await other.sweep(wake_at - horizon - 1, horizon) == ([], [])
    _, due = await other.sweep(wake_at - horizon, horizon)
    assert [(t.invocation_id, t.fire_at) for t in due] == [(a.invocation.id, wake_at)]
    # found early, it is still not fired early
    assert (await other.fire_timer(due[0], wake_at - 1)).ready == []
    assert (await other.fire_timer(due[0], wake_at)).ready == [a.invocation.id]


# -- listings --------------------------------------------------------------------------------


async def test_listing_by_outcome_reads_past_invocations_that_ended_otherwise(
    store: DynamoDBStore,
) -> None:
    failed = []
    for n in range(3):
        a = await started(store, new(service="L"), T0 + n)
        await store.kill(a.invocation.id, T0 + n)
        failed.append(a.invocation.id)
    for n in range(3, 9):
        await complete(store, await started(store, new(service="L"), T0 + n))
    # the newest completed ones all succeeded: the newest two that failed lie past them
    for service in ("L", None):
        found = await store.list_invocations(service, "failed", 2)
        assert [i.id for i in found] == failed[::-1][:2], service
        assert len(await store.list_invocations(service, "succeeded", 100)) == 6


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
    run = await started(store, workflow_run())
    assert run.promises == {}
    assert requests.take() == {"Query": 1, "TransactWriteItems": 1}  # promises, state, turn
    a = await started(store, new(service="Obj", key="k"))
    assert requests.take() == {"Query": 1, "TransactWriteItems": 1}  # state and turn, one Query
    set_x: list[Command] = [{"kind": "set_state", "name": "x", "value": 1}, *OUTPUT]
    await store.end_attempt(a.invocation.id, 1, set_x, {}, [], COMPLETED, T0)
    assert requests.take() == {"TransactWriteItems": 1}  # nobody waits: the release reads nothing
