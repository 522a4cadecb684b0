"""The Store contract: one suite, run against every implementation (``STORES`` in
``conftest.py``), written against :class:`tarry.runtime.store.Store` only. This part: creation,
idempotency, attempts and epochs, state, timers, per-key exclusivity, retries, calls, recovery.
"""

import asyncio
from typing import Any

import pytest

from tarry.protocol import Command, Completion
from tarry.runtime.store import (
    AttemptEnd,
    Deployment,
    IdempotencyConflict,
    StaleEpoch,
    Store,
    Timer,
)
from tests.contract.helpers import (
    COMPLETED,
    OUTPUT,
    T0,
    call_command,
    complete,
    new,
    sleep_at,
    started,
    status,
    suspended,
)

# -- create --------------------------------------------------------------------------------


async def test_create_makes_an_invocation_ready(store: Store) -> None:
    inv = new(input={"x": 1}, headers={"h": "v"})
    created = await store.create(inv, T0)
    assert not created.previously_accepted
    assert created.started is None
    assert created.effects.ready == [inv.id]
    assert created.invocation.status == "ready"
    got = await store.get(inv.id)
    assert got is not None
    assert (got.service, got.handler, got.key, got.status) == ("Svc", "h", None, "ready")
    assert got.headers == {"h": "v"}
    assert got.created_at == T0
    assert await store.journal(inv.id) == ([{"kind": "input", "value": {"x": 1}}], {})


async def test_create_with_start_begins_the_first_attempt(store: Store) -> None:
    inv = new(input=[1, 2])
    created = await store.create(inv, T0, start=True)
    assert created.started is not None
    assert inv.id not in created.effects.ready
    a = created.started
    assert (a.invocation.id, a.invocation.status, a.invocation.epoch) == (inv.id, "running", 1)
    assert a.journal == [{"kind": "input", "value": [1, 2]}]
    assert a.completions == {}
    assert a.state is None
    assert await status(store, inv.id) == "running"


async def test_a_keyed_attempt_gets_the_eager_state(store: Store) -> None:
    a = await started(store, new(service="Obj", key="k"))
    assert a.state == {}


async def test_unknown_invocation_reads(store: Store) -> None:
    assert await store.get("inv_missing") is None


# -- idempotency ---------------------------------------------------------------------------


async def test_the_same_idempotency_scope_names_the_same_invocation(store: Store) -> None:
    first = await store.create(new(idempotency_key="idem", request_hash="h1"), T0)
    again = await store.create(new(idempotency_key="idem", request_hash="h1"), T0 + 1)
    assert again.previously_accepted
    assert again.invocation.id == first.invocation.id
    assert again.effects.ready == []
    assert [i.id for i in await store.list_invocations(service="Svc")] == [first.invocation.id]


async def test_a_different_request_under_one_key_is_a_conflict(store: Store) -> None:
    first = await store.create(new(idempotency_key="idem", request_hash="h1"), T0)
    with pytest.raises(IdempotencyConflict) as raised:
        await store.create(new(idempotency_key="idem", request_hash="h2"), T0 + 1)
    assert raised.value.existing.id == first.invocation.id
    assert len(await store.list_invocations()) == 1


async def test_the_scope_is_service_key_handler_and_idempotency_key(store: Store) -> None:
    base: dict[str, Any] = {"service": "Obj", "key": "k", "handler": "h", "idempotency_key": "idem"}
    first = await store.create(new(**base), T0)
    for change in ({"service": "Obj2"}, {"key": "k2"}, {"handler": "h2"}, {"idempotency_key": "x"}):
        other = await store.create(new(**{**base, **change}), T0)
        assert not other.previously_accepted
        assert other.invocation.id != first.invocation.id


async def test_an_idempotency_record_expires_after_completion_and_retention(
    store: Store,
) -> None:
    inv = new(idempotency_key="idem", request_hash="h", retention_ms=1_000)
    a = await started(store, inv)
    # while it runs, the key holds however late the retry comes
    late = await store.create(new(idempotency_key="idem", request_hash="h"), T0 + 10**9)
    assert late.invocation.id == inv.id
    await complete(store, a, now=T0 + 10)
    within = await store.create(new(idempotency_key="idem", request_hash="h"), T0 + 500)
    assert within.previously_accepted
    assert within.invocation.id == inv.id
    assert within.invocation.completion == {"value": "out"}
    after = await store.create(new(idempotency_key="idem", request_hash="h"), T0 + 1_010)
    assert not after.previously_accepted
    assert after.invocation.id != inv.id
    assert after.invocation.status == "ready"


async def test_concurrent_creates_under_one_key_make_one_invocation(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create(new(idempotency_key="idem", request_hash="h"), T0) for _ in range(5))
    )
    assert len({r.invocation.id for r in results}) == 1
    assert sum(not r.previously_accepted for r in results) == 1
    assert len(await store.list_invocations()) == 1


# -- attempts and epochs -------------------------------------------------------------------


async def test_start_attempt_bumps_the_epoch_of_a_ready_invocation_only(store: Store) -> None:
    inv = new()
    await store.create(inv, T0)
    a1 = await store.start_attempt(inv.id, T0)
    assert a1 is not None
    assert (a1.invocation.epoch, a1.invocation.status, a1.invocation.attempts) == (1, "running", 1)
    assert await store.start_attempt(inv.id, T0) is None  # running, not ready
    await store.end_attempt(inv.id, 1, [], {}, [], AttemptEnd("ready"), T0)
    a2 = await store.start_attempt(inv.id, T0)
    assert a2 is not None
    assert (a2.invocation.epoch, a2.invocation.attempts) == (2, 2)
    await complete(store, a2)
    assert await store.start_attempt(inv.id, T0) is None  # completed


async def test_only_one_of_concurrent_starts_wins(store: Store) -> None:
    inv = new()
    await store.create(inv, T0)
    starts = await asyncio.gather(*(store.start_attempt(inv.id, T0) for _ in range(4)))
    winners = [s for s in starts if s is not None]
    assert len(winners) == 1
    assert winners[0].invocation.epoch == 1


async def test_writes_from_a_stale_epoch_are_rejected_and_write_nothing(store: Store) -> None:
    inv = new(service="Obj", key="k")
    await started(store, inv)
    await store.end_attempt(inv.id, 1, [], {}, [], AttemptEnd("ready"), T0)
    a2 = await store.start_attempt(inv.id, T0)
    assert a2 is not None and a2.invocation.epoch == 2
    before = await store.journal(inv.id)
    stale: list[Command] = [
        {"kind": "set_state", "name": "x", "value": 1},
        sleep_at(T0 + 1_000),
    ]
    with pytest.raises(StaleEpoch):
        await store.append(inv.id, 1, stale, {"1": {"value": 1}}, [new()], T0)
    with pytest.raises(StaleEpoch):
        await store.end_attempt(inv.id, 1, stale, {}, [new()], COMPLETED, T0)
    assert await store.journal(inv.id) == before
    assert await store.state("Obj", "k") == {}
    assert await store.timers() == []
    assert len(await store.list_invocations()) == 1
    got = await store.get(inv.id)
    assert got is not None
    assert (got.status, got.epoch, got.journal_length) == ("running", 2, 1)


async def test_an_ended_attempt_cannot_write_again(store: Store) -> None:
    a = await started(store, new())
    inv = a.invocation
    await store.end_attempt(inv.id, 1, [sleep_at(T0 + 5)], {}, [], suspended(1), T0)
    with pytest.raises(StaleEpoch):
        await store.append(inv.id, 1, [{"kind": "run", "name": "late"}], {}, [], T0)
    assert len((await store.journal(inv.id))[0]) == 2


async def test_append_stores_commands_and_completions_in_order(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    await store.append(inv_id, 1, [{"kind": "run", "name": "a"}], {"1": {"value": "A"}}, [], T0)
    await store.append(
        inv_id,
        1,
        [{"kind": "run", "name": "b"}, {"kind": "run", "name": "c"}],
        {"2": {"failure": {"code": 500, "message": "no"}}},
        [],
        T0,
    )
    commands, completions = await store.journal(inv_id)
    assert [c.get("name") for c in commands] == [None, "a", "b", "c"]
    assert completions == {"1": {"value": "A"}, "2": {"failure": {"code": 500, "message": "no"}}}
    got = await store.get(inv_id)
    assert got is not None and got.journal_length == 4


async def test_end_attempt_completed_stores_output_and_result(store: Store) -> None:
    a = await started(store, new())
    effects = await complete(store, a, now=T0 + 7)
    assert [i.id for i in effects.finished] == [a.invocation.id]
    assert effects.finished[0].completion == {"value": "out"}
    got = await store.get(a.invocation.id)
    assert got is not None
    assert (got.status, got.completion, got.completed_at) == ("completed", {"value": "out"}, T0 + 7)
    assert (await store.journal(a.invocation.id))[0][-1] == OUTPUT[0]


# -- state ---------------------------------------------------------------------------------


async def test_state_commands_change_the_objects_state(store: Store) -> None:
    a = await started(store, new(service="Obj", key="k"))
    inv_id = a.invocation.id
    sets: list[Command] = [
        {"kind": "set_state", "name": "x", "value": 1},
        {"kind": "set_state", "name": "y", "value": {"deep": [1, 2]}},
        {"kind": "set_state", "name": "x", "value": 2},
    ]
    await store.append(inv_id, 1, sets, {}, [], T0)
    assert await store.state("Obj", "k") == {"x": 2, "y": {"deep": [1, 2]}}
    assert await store.state("Obj", "other") == {}
    await store.append(inv_id, 1, [{"kind": "clear_state", "name": "x"}], {}, [], T0)
    assert await store.state("Obj", "k") == {"y": {"deep": [1, 2]}}
    await store.end_attempt(
        inv_id, 1, [{"kind": "clear_all_state", "name": ""}], {}, [], AttemptEnd("ready"), T0
    )
    assert await store.state("Obj", "k") == {}

    # the next attempt on a key sees its state as it is now
    b = await started(store, new(service="Obj", key="k2"))
    await store.append(b.invocation.id, 1, sets[:1], {}, [], T0)
    await complete(store, b)
    c = await started(store, new(service="Obj", key="k2"))
    assert c.state == {"x": 1}


# -- timers --------------------------------------------------------------------------------


async def test_a_sleep_timer_never_fires_early_and_wakes_the_sleeper(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    effects = await store.end_attempt(inv_id, 1, [sleep_at(T0 + 1_000)], {}, [], suspended(1), T0)
    timer = Timer(T0 + 1_000, "sleep", inv_id, 1)
    assert effects.timers == [timer]
    assert effects.ready == []
    assert await store.timers() == [timer]
    assert await status(store, inv_id) == "suspended"

    early = await store.fire_timer(timer, T0 + 999)
    assert early.timers == [timer]
    assert early.ready == []
    assert await store.journal(inv_id) == (
        [{"kind": "input", "value": "in"}, sleep_at(T0 + 1_000)],
        {},
    )
    assert await store.timers() == [timer]
    assert await status(store, inv_id) == "suspended"

    due = await store.fire_timer(timer, T0 + 1_000)
    assert due.ready == [inv_id]
    assert "1" in (await store.journal(inv_id))[1]
    assert "failure" not in (await store.journal(inv_id))[1]["1"]
    assert await status(store, inv_id) == "ready"
    assert await store.timers() == []

    twice = await store.fire_timer(timer, T0 + 2_000)
    assert twice.ready == []
    assert await status(store, inv_id) == "ready"
    assert list((await store.journal(inv_id))[1]) == ["1"]


async def test_a_timer_due_while_running_completes_without_waking(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    effects = await store.append(inv_id, 1, [sleep_at(T0 + 10)], {}, [], T0)
    (timer,) = effects.timers
    fired = await store.fire_timer(timer, T0 + 10)
    assert fired.ready == []
    assert await status(store, inv_id) == "running"
    # the attempt then suspends on what is already done: it is ready at once
    ended = await store.end_attempt(inv_id, 1, [], {}, [], suspended(1), T0 + 11)
    assert ended.ready == [inv_id]
    assert await status(store, inv_id) == "ready"


async def test_suspending_on_a_completion_stored_in_the_same_write_is_ready(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    run: list[Command] = [{"kind": "run", "name": "a"}]
    ended = await store.end_attempt(inv_id, 1, run, {"1": {"value": 1}}, [], suspended(1), T0)
    assert ended.ready == [inv_id]
    assert await status(store, inv_id) == "ready"


async def test_a_suspended_invocation_wakes_on_any_of_its_entries(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    sleeps = [sleep_at(T0 + 100), sleep_at(T0 + 50)]
    effects = await store.end_attempt(inv_id, 1, sleeps, {}, [], suspended(1, 2), T0)
    by_index = {t.index: t for t in effects.timers}
    assert set(by_index) == {1, 2}
    assert (await store.fire_timer(by_index[2], T0 + 50)).ready == [inv_id]
    assert (await store.fire_timer(by_index[1], T0 + 100)).ready == []
    assert set((await store.journal(inv_id))[1]) == {"1", "2"}


# -- per-key exclusivity -------------------------------------------------------------------


async def test_exclusive_invocations_on_one_key_run_one_at_a_time_in_order(store: Store) -> None:
    first, second, third = (new(service="Obj", key="k") for _ in range(3))
    a = await started(store, first)
    for inv in (second, third):
        created = await store.create(inv, T0, start=True)
        assert created.started is None
        assert created.effects.ready == []
        assert created.invocation.status == "pending"
    assert await store.start_attempt(second.id, T0) is None

    effects = await complete(store, a)
    assert effects.ready == [second.id]
    assert await status(store, second.id) == "ready"
    assert await status(store, third.id) == "pending"

    b = await store.start_attempt(second.id, T0)
    assert b is not None
    effects = await complete(store, b)
    assert effects.ready == [third.id]
    assert await status(store, third.id) == "ready"


async def test_concurrent_exclusive_creates_on_one_key_start_one(store: Store) -> None:
    invs = [new(service="Obj", key="k") for _ in range(4)]
    results = await asyncio.gather(*(store.create(i, T0, start=True) for i in invs))
    assert sum(r.started is not None for r in results) == 1
    assert sorted(r.invocation.status for r in results) == ["pending"] * 3 + ["running"]


async def test_a_key_stays_held_while_its_holder_waits(store: Store) -> None:
    holder, waiting = new(service="Obj", key="k"), new(service="Obj", key="k")
    await started(store, holder)
    await store.create(waiting, T0)
    # suspended on a sleep: still the key's holder
    effects = await store.end_attempt(holder.id, 1, [sleep_at(T0 + 5)], {}, [], suspended(1), T0)
    assert effects.ready == []
    assert await status(store, waiting.id) == "pending"
    (timer,) = effects.timers
    assert (await store.fire_timer(timer, T0 + 5)).ready == [holder.id]
    assert await status(store, waiting.id) == "pending"
    # backing off after a failure: still the key's holder
    assert await store.start_attempt(holder.id, T0 + 5) is not None
    retry = AttemptEnd("backing-off", retry_at=T0 + 50, failure="boom")
    effects = await store.end_attempt(holder.id, 2, [], {}, [], retry, T0 + 5)
    assert effects.ready == []
    assert await status(store, waiting.id) == "pending"
    assert await store.start_attempt(waiting.id, T0 + 5) is None


async def test_other_keys_and_non_exclusive_invocations_are_never_blocked(store: Store) -> None:
    await started(store, new(service="Obj", key="k"))
    for inv in (
        new(service="Obj", key="k2"),
        new(service="Obj2", key="k"),
        new(service="Obj", key="k", exclusive=False),
        new(service="Obj", key=None),
    ):
        created = await store.create(inv, T0, start=True)
        assert created.started is not None, inv


async def test_a_paused_invocation_keeps_its_key(store: Store) -> None:
    holder, waiting = new(service="Obj", key="k"), new(service="Obj", key="k")
    await started(store, holder)
    await store.create(waiting, T0)
    paused = AttemptEnd("paused", failure="gave up after 30 attempts")
    effects = await store.end_attempt(holder.id, 1, [], {}, [], paused, T0)
    assert effects.ready == []
    assert await status(store, waiting.id) == "pending"  # it may have made half its changes
    got = await store.get(holder.id)
    assert got is not None
    assert (got.status, got.last_failure) == ("paused", "gave up after 30 attempts")


async def test_resume_makes_a_paused_holder_ready_with_a_fresh_budget(store: Store) -> None:
    holder, other = new(service="Obj", key="k"), new(service="Obj", key="k")
    await started(store, holder)
    await store.create(other, T0)
    await store.end_attempt(holder.id, 1, [], {}, [], AttemptEnd("paused", failure="x"), T0)

    resumed = await store.resume(holder.id, T0 + 1)
    assert resumed is not None
    inv, effects = resumed
    assert (inv.status, inv.retry_count) == ("ready", 0)  # still first on the key
    assert effects.ready == [holder.id]
    a2 = await store.start_attempt(holder.id, T0 + 2)
    assert a2 is not None and a2.invocation.epoch == 2
    assert (await complete(store, a2)).ready == [other.id]
    assert await status(store, other.id) == "ready"


async def test_resume_leaves_what_is_not_paused(store: Store) -> None:
    assert await store.resume("inv_missing", T0) is None
    a = await started(store, new())
    resumed = await store.resume(a.invocation.id, T0)
    assert resumed is not None
    inv, effects = resumed
    assert inv.status == "running"
    assert effects.ready == []
    assert await status(store, a.invocation.id) == "running"


async def test_resume_of_an_unkeyed_invocation_makes_it_ready(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    await store.end_attempt(inv_id, 1, [], {}, [], AttemptEnd("paused", failure="x"), T0)
    resumed = await store.resume(inv_id, T0)
    assert resumed is not None
    assert resumed[0].status == "ready"
    assert resumed[1].ready == [inv_id]


# -- retries -------------------------------------------------------------------------------


async def test_backing_off_arms_a_retry_timer_that_makes_it_ready(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    end = AttemptEnd("backing-off", retry_at=T0 + 500, failure="boom")
    effects = await store.end_attempt(inv_id, 1, [], {}, [], end, T0)
    (timer,) = effects.timers
    assert (timer.kind, timer.fire_at, timer.invocation_id) == ("retry", T0 + 500, inv_id)
    assert await store.timers() == [timer]
    got = await store.get(inv_id)
    assert got is not None
    assert (got.status, got.retry_count, got.last_failure) == ("backing-off", 1, "boom")
    assert got.next_retry_at == T0 + 500

    assert (await store.fire_timer(timer, T0 + 499)).ready == []
    assert await status(store, inv_id) == "backing-off"
    assert (await store.fire_timer(timer, T0 + 500)).ready == [inv_id]
    a2 = await store.start_attempt(inv_id, T0 + 500)
    assert a2 is not None
    assert (a2.invocation.epoch, a2.invocation.retry_count) == (2, 1)

    # the journal growing resets the count of failed attempts
    await store.append(inv_id, 2, [{"kind": "run", "name": "a"}], {"1": {}}, [], T0 + 501)
    got = await store.get(inv_id)
    assert got is not None and got.retry_count == 0


# -- calls between invocations -------------------------------------------------------------


async def test_a_completed_child_completes_the_callers_entry_and_wakes_it(store: Store) -> None:
    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    child = new(service="Callee", input=4, caller_id=pid, caller_index=1)
    effects = await store.end_attempt(pid, 1, [call_command(child)], {}, [child], suspended(1), T0)
    assert effects.ready == [child.id]
    assert await status(store, pid) == "suspended"
    got = await store.get(child.id)
    assert got is not None
    assert (got.caller_id, got.caller_index) == (pid, 1)
    assert (await store.journal(child.id))[0] == [{"kind": "input", "value": 4}]

    c = await store.start_attempt(child.id, T0)
    assert c is not None
    end = AttemptEnd("completed", completion={"value": 40})
    effects = await store.end_attempt(child.id, 1, [], {}, [], end, T0 + 1)
    assert [i.id for i in effects.finished] == [child.id]
    assert effects.ready == [pid]
    assert (await store.journal(pid))[1] == {"1": {"value": 40}}
    assert await status(store, pid) == "ready"


async def test_a_child_failure_reaches_the_caller(store: Store) -> None:
    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    child = new(service="Callee", caller_id=pid, caller_index=1)
    await store.append(pid, 1, [call_command(child)], {}, [child], T0)
    c = await store.start_attempt(child.id, T0)
    assert c is not None
    failure: Completion = {"failure": {"code": 409, "message": "exists"}}
    await store.end_attempt(child.id, 1, [], {}, [], AttemptEnd("completed", failure), T0)
    # the caller was still running: the completion waits for it
    assert (await store.journal(pid))[1] == {"1": failure}
    assert await status(store, pid) == "running"


async def test_calling_a_completed_idempotent_invocation_delivers_its_result(
    store: Store,
) -> None:
    target = new(service="Callee", idempotency_key="once")
    done = await started(store, target)
    await complete(store, done)

    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    again = new(service="Callee", idempotency_key="once", caller_id=pid, caller_index=1)
    effects = await store.end_attempt(pid, 1, [call_command(again)], {}, [again], suspended(1), T0)
    assert effects.ready == [pid]
    assert (await store.journal(pid))[1] == {"1": {"value": "out"}}
    assert await store.get(again.id) is None


async def test_a_caller_attached_to_a_running_invocation_gets_its_result(store: Store) -> None:
    target = new(service="Callee", idempotency_key="once")
    running = await started(store, target)

    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    again = new(service="Callee", idempotency_key="once", caller_id=pid, caller_index=1)
    effects = await store.end_attempt(pid, 1, [call_command(again)], {}, [again], suspended(1), T0)
    assert effects.ready == []
    assert await status(store, pid) == "suspended"

    effects = await complete(store, running)
    assert effects.ready == [pid]
    assert (await store.journal(pid))[1] == {"1": {"value": "out"}}


async def test_a_delayed_child_is_scheduled(store: Store) -> None:
    parent = await started(store, new(service="Caller"))
    child = new(service="Callee", start_at=T0 + 30_000)
    send: Command = {**call_command(child), "kind": "send", "delay_ms": 30_000}
    effects = await store.append(parent.invocation.id, 1, [send], {}, [child], T0)
    assert effects.ready == []
    (timer,) = effects.timers
    assert (timer.kind, timer.fire_at, timer.invocation_id) == ("start", T0 + 30_000, child.id)
    assert await status(store, child.id) == "scheduled"


# -- delayed invocations and recovery ------------------------------------------------------


async def test_a_delayed_invocation_is_scheduled_until_its_start_timer(store: Store) -> None:
    inv = new(start_at=T0 + 60_000)
    created = await store.create(inv, T0, start=True)
    assert created.started is None
    assert created.effects.ready == []
    assert created.invocation.status == "scheduled"
    (timer,) = created.effects.timers
    assert (timer.kind, timer.fire_at, timer.invocation_id) == ("start", T0 + 60_000, inv.id)
    assert await store.timers() == [timer]
    assert await store.start_attempt(inv.id, T0 + 60_000) is None

    assert (await store.fire_timer(timer, T0 + 59_999)).ready == []
    assert await status(store, inv.id) == "scheduled"
    assert (await store.fire_timer(timer, T0 + 60_000)).ready == [inv.id]
    assert await status(store, inv.id) == "ready"


async def test_a_delayed_exclusive_invocation_queues_behind_its_key(store: Store) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    inv = new(service="Obj", key="k", start_at=T0 + 10)
    (timer,) = (await store.create(inv, T0)).effects.timers
    assert (await store.fire_timer(timer, T0 + 10)).ready == []
    assert await status(store, inv.id) == "pending"
    assert (await complete(store, holder)).ready == [inv.id]


async def test_a_start_time_in_the_past_is_ready_now(store: Store) -> None:
    created = await store.create(new(start_at=T0 - 1), T0)
    assert created.invocation.status == "ready"
    assert created.effects.timers == []


async def test_recover_makes_running_invocations_ready(store: Store) -> None:
    running = await started(store, new())
    ready = new()
    await store.create(ready, T0)
    sleeping = await started(store, new())
    sid = sleeping.invocation.id
    await store.end_attempt(sid, 1, [sleep_at(T0 + 5)], {}, [], suspended(1), T0)

    recovered = await store.recover(T0 + 1)
    assert set(recovered) == {running.invocation.id, ready.id}
    assert await status(store, running.invocation.id) == "ready"
    assert await status(store, sid) == "suspended"
    again = await store.start_attempt(running.invocation.id, T0 + 1)
    assert again is not None and again.invocation.epoch == 2
    with pytest.raises(StaleEpoch):
        await store.append(running.invocation.id, 1, [{"kind": "run", "name": "x"}], {}, [], T0)


# -- listing and deployments ---------------------------------------------------------------


async def test_list_filters_by_service_and_status(store: Store) -> None:
    a = await started(store, new(service="A"))
    await store.create(new(service="A"), T0)
    await store.create(new(service="B"), T0)
    await complete(store, a)

    assert len(await store.list_invocations()) == 3
    assert {i.service for i in await store.list_invocations(service="A")} == {"A"}
    assert len(await store.list_invocations(service="A")) == 2
    assert [i.id for i in await store.list_invocations(status="completed")] == [a.invocation.id]
    assert len(await store.list_invocations(service="B", status="ready")) == 1
    assert await store.list_invocations(service="B", status="completed") == []
    assert len(await store.list_invocations(limit=2)) == 2


async def test_deployments_are_upserted_by_uri(store: Store) -> None:
    assert await store.deployments() == []
    services: list[dict[str, Any]] = [{"name": "Greeter", "kind": "service", "handlers": []}]
    await store.put_deployment(Deployment("dp_1", "http://a:9080", services, T0))
    await store.put_deployment(Deployment("dp_2", "inprocess:app", [], T0 + 1))
    updated = [*services, {"name": "Counter", "kind": "object", "handlers": []}]
    await store.put_deployment(Deployment("dp_3", "http://a:9080", updated, T0 + 2))
    by_uri = {d.uri: d for d in await store.deployments()}
    assert set(by_uri) == {"http://a:9080", "inprocess:app"}
    assert by_uri["http://a:9080"].services == updated
    assert by_uri["inprocess:app"].id == "dp_2"
