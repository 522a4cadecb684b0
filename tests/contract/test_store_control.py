"""The Store contract, continued: the operations people use to look at and steer invocations —
cancel, kill, pause and resume, purge, the journal timeline, and state edits."""

import pytest

from tarry.protocol import Command
from tarry.runtime.store import (
    AttemptEnd,
    JournalEntry,
    NotAllowed,
    StaleEpoch,
    Store,
    Timer,
)
from tests.contract.helpers import (
    CANCELLED_RESULT,
    COMPLETED,
    KILLED,
    OUTPUT,
    T0,
    awakeable_command,
    awk,
    call_command,
    complete,
    complete_promise,
    completions,
    get,
    new,
    set_state,
    sleep_at,
    started,
    status,
    suspended,
    suspended_on_awakeable,
    workflow_run,
    workflow_shared,
)


async def call_chain(
    store: Store, top_awaits_awakeable: bool = False, start_leaf: bool = True
) -> tuple[str, str, str]:
    """Top calls Mid, Mid calls Leaf; each caller suspended on its call (Top also on an
    awakeable at entry 2, if asked). Returns the three ids."""
    top = await started(store, new(service="Top"))
    tid = top.invocation.id
    mid = new(service="Mid", caller_id=tid, caller_index=1)
    extra = [awakeable_command(top.invocation, 2)] if top_awaits_awakeable else []
    end = suspended(*range(1, 2 + len(extra)))
    await store.end_attempt(tid, 1, [call_command(mid), *extra], {}, [mid], end, T0)
    assert await store.start_attempt(mid.id, T0) is not None
    leaf = new(service="Leaf", caller_id=mid.id, caller_index=1)
    await store.end_attempt(mid.id, 1, [call_command(leaf)], {}, [leaf], suspended(1), T0)
    if start_leaf:
        assert await store.start_attempt(leaf.id, T0) is not None
    return tid, mid.id, leaf.id


# -- cancel --------------------------------------------------------------------------------


async def test_cancelling_a_queued_invocation_completes_it_and_the_queue_moves_on(
    store: Store,
) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    queued = new(service="Obj", key="k", caller_id=pid, caller_index=1)
    await store.end_attempt(pid, 1, [call_command(queued)], {}, [queued], suspended(1), T0)
    behind = new(service="Obj", key="k")
    await store.create(behind, T0)
    assert await status(store, queued.id) == "pending"

    result = await store.cancel(queued.id, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.completion, inv.completed_at) == ("completed", CANCELLED_RESULT, T0 + 1)
    assert [i.id for i in effects.finished] == [queued.id]
    assert effects.ready == [pid]  # its caller sees the failure
    assert await completions(store, pid) == {"1": CANCELLED_RESULT}
    assert await status(store, behind.id) == "pending"
    assert (await complete(store, holder)).ready == [behind.id]


async def test_cancelling_a_scheduled_invocation_drops_its_start_timer(store: Store) -> None:
    inv = new(start_at=T0 + 60_000)
    await store.create(inv, T0)
    result = await store.cancel(inv.id, T0 + 1)
    assert result is not None
    assert (result[0].status, result[0].completion) == ("completed", CANCELLED_RESULT)
    assert await store.timers() == []


async def test_cancelling_an_invocation_that_never_started_completes_it_at_once(
    store: Store,
) -> None:
    inv = new()
    await store.create(inv, T0)  # ready, but no attempt has begun
    result = await store.cancel(inv.id, T0 + 1)
    assert result is not None
    assert (result[0].status, result[0].completion) == ("completed", CANCELLED_RESULT)
    assert await store.start_attempt(inv.id, T0 + 2) is None


async def test_cancelling_a_suspended_invocation_fails_its_waits_and_cancels_its_calls(
    store: Store,
) -> None:
    tid, mid_id, leaf_id = await call_chain(store, top_awaits_awakeable=True)

    result = await store.cancel(tid, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt) == ("ready", None)
    assert sorted(effects.ready) == sorted([tid, mid_id])
    assert effects.finished == []
    assert await completions(store, tid) == {"1": CANCELLED_RESULT, "2": CANCELLED_RESULT}
    # the call it waits on is cancelled too, and the call that one waits on, in turn
    assert await completions(store, mid_id) == {"1": CANCELLED_RESULT}
    assert await status(store, mid_id) == "ready"
    leaf_inv = await get(store, leaf_id)
    assert (leaf_inv.status, leaf_inv.interrupt) == ("running", "cancel")

    again = await store.start_attempt(tid, T0 + 2)
    assert again is not None
    assert again.completions == {"1": CANCELLED_RESULT, "2": CANCELLED_RESULT}


async def test_a_running_invocation_is_cancelled_at_its_next_suspension(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    result = await store.cancel(inv_id, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt) == ("running", "cancel")
    assert (effects.ready, effects.finished) == ([], [])

    # a flush in between keeps the request ...
    await store.end_attempt(inv_id, 1, [], {}, [], AttemptEnd("ready"), T0 + 2)
    assert (await get(store, inv_id)).interrupt == "cancel"
    assert await store.start_attempt(inv_id, T0 + 3) is not None
    # ... and the suspension delivers it
    end = suspended(1)
    awaiting = [awakeable_command(a.invocation, 1)]
    ended = await store.end_attempt(inv_id, 2, awaiting, {}, [], end, T0 + 4)
    assert ended.ready == [inv_id]
    got = await get(store, inv_id)
    assert (got.status, got.interrupt) == ("ready", None)
    assert await completions(store, inv_id) == {"1": CANCELLED_RESULT}
    again = await store.start_attempt(inv_id, T0 + 5)
    assert again is not None
    assert again.invocation.interrupt is None
    assert again.completions == {"1": CANCELLED_RESULT}


async def test_a_running_invocation_that_completes_ignores_the_cancel(store: Store) -> None:
    a = await started(store, new())
    await store.cancel(a.invocation.id, T0 + 1)
    await complete(store, a, now=T0 + 2)
    got = await get(store, a.invocation.id)
    assert (got.status, got.completion, got.interrupt) == ("completed", {"value": "out"}, None)


async def test_a_call_is_cancelled_once_when_its_running_caller_is(store: Store) -> None:
    parent = await started(store, new(service="Parent"))
    pid = parent.invocation.id
    child = new(service="Child", caller_id=pid, caller_index=1)
    await store.append(pid, 1, [call_command(child)], {}, [child], T0)
    assert await store.start_attempt(child.id, T0) is not None
    end = suspended(1)
    await store.end_attempt(child.id, 1, [awakeable_command(child, 1)], {}, [], end, T0)

    await store.cancel(pid, T0 + 1)
    assert await completions(store, child.id) == {}  # the parent's running attempt goes on
    # the parent's attempt then suspends on the call: the cancel reaches it, and its call
    ended = await store.end_attempt(pid, 1, [], {}, [], suspended(1), T0 + 2)
    assert pid in ended.ready
    assert await completions(store, pid) == {"1": CANCELLED_RESULT}
    assert await completions(store, child.id) == {"1": CANCELLED_RESULT}

    # the child compensates: it runs a step and waits again; that wait is not cancelled
    c = await store.start_attempt(child.id, T0 + 3)
    assert c is not None
    assert c.invocation.interrupt is None
    undo: list[Command] = [{"kind": "run", "name": "undo"}, awakeable_command(child, 3)]
    epoch = c.invocation.epoch
    ended = await store.end_attempt(child.id, epoch, undo, {"2": {}}, [], suspended(3), T0 + 4)
    assert ended.ready == []
    assert await status(store, child.id) == "suspended"
    assert "3" not in await completions(store, child.id)


async def test_a_pause_asked_after_a_cancel_does_not_lose_the_cancel(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    await store.cancel(inv_id, T0 + 1)
    await store.pause(inv_id, T0 + 2)
    end = suspended(1)
    awaiting = [awakeable_command(a.invocation, 1)]
    await store.end_attempt(inv_id, 1, awaiting, {}, [], end, T0 + 3)
    if await status(store, inv_id) == "paused":  # the pause took effect first ...
        await store.resume(inv_id, T0 + 4)
        again = await store.start_attempt(inv_id, T0 + 5)
        assert again is not None
        await store.end_attempt(inv_id, again.invocation.epoch, [], {}, [], end, T0 + 6)
    # ... either way the cancel reaches its await
    assert await completions(store, inv_id) == {"1": CANCELLED_RESULT}
    assert await status(store, inv_id) == "ready"


async def test_cancelling_a_paused_holder_makes_it_ready_to_see_the_cancel(store: Store) -> None:
    a = await started(store, new(service="Obj", key="k"))
    hid = a.invocation.id
    await store.append(hid, 1, [awakeable_command(a.invocation, 1)], {}, [], T0)
    gave_up = AttemptEnd("paused", failure="gave up")
    await store.end_attempt(hid, 1, [], {}, [], gave_up, T0 + 1)
    waiting = new(service="Obj", key="k")
    await store.create(waiting, T0 + 2)
    assert (await get(store, hid)).retry_count == 1

    result = await store.cancel(hid, T0 + 3)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt, inv.retry_count) == ("ready", "cancel", 0)
    assert effects.ready == [hid]  # it still holds its key
    assert await status(store, waiting.id) == "pending"

    again = await store.start_attempt(hid, T0 + 4)
    assert again is not None
    end = suspended(1)
    ended = await store.end_attempt(hid, again.invocation.epoch, [], {}, [], end, T0 + 5)
    assert ended.ready == [hid]
    assert await completions(store, hid) == {"1": CANCELLED_RESULT}
    assert await status(store, waiting.id) == "pending"


async def test_cancelling_an_invocation_paused_while_queued_completes_it_at_once(
    store: Store,
) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    queued = new(service="Obj", key="k")
    await store.create(queued, T0)
    await store.pause(queued.id, T0 + 1)  # it never ran

    result = await store.cancel(queued.id, T0 + 2)
    assert result is not None
    assert (result[0].status, result[0].completion) == ("completed", CANCELLED_RESULT)
    assert (await complete(store, holder, now=T0 + 3)).ready == []


async def test_cancelling_a_paused_invocation_on_a_free_key_makes_it_ready(store: Store) -> None:
    paused_id = await suspended_on_awakeable(store, new())
    await store.pause(paused_id, T0 + 1)
    result = await store.cancel(paused_id, T0 + 2)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt) == ("ready", "cancel")
    assert effects.ready == [paused_id]


async def test_cancel_leaves_a_completed_invocation_and_knows_no_unknown_one(store: Store) -> None:
    assert await store.cancel("inv_missing", T0) is None
    a = await started(store, new())
    await complete(store, a)
    result = await store.cancel(a.invocation.id, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.completion) == ("completed", {"value": "out"})
    assert (effects.ready, effects.finished) == ([], [])


async def test_a_handler_cancels_another_invocation_with_a_command(store: Store) -> None:
    await started(store, new(service="Obj", key="k"))
    queued = new(service="Obj", key="k")
    await store.create(queued, T0)
    canceller = await started(store, new(service="Canceller"))
    cid = canceller.invocation.id
    commands: list[Command] = [
        {"kind": "cancel_invocation", "name": queued.id, "invocation_id": queued.id},
        {"kind": "cancel_invocation", "name": "inv_missing", "invocation_id": "inv_missing"},
    ]
    effects = await store.append(cid, 1, commands, {}, [], T0 + 1)
    assert [i.id for i in effects.finished] == [queued.id]
    got = await get(store, queued.id)
    assert (got.status, got.completion) == ("completed", CANCELLED_RESULT)
    assert await completions(store, cid) == {}  # a cancel has no result to wait for
    assert await status(store, cid) == "running"


# -- kill ----------------------------------------------------------------------------------


async def test_kill_completes_at_once_fences_the_attempt_and_frees_the_key(store: Store) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    hid = holder.invocation.id
    await store.append(hid, 1, [sleep_at(T0 + 1_000)], {}, [], T0)
    waiting = new(service="Obj", key="k")
    await store.create(waiting, T0)

    result = await store.kill(hid, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.completion, inv.completed_at) == ("completed", KILLED, T0 + 1)
    assert effects.ready == [waiting.id]
    assert [i.id for i in effects.finished] == [hid]
    assert await store.timers() == []

    with pytest.raises(StaleEpoch):
        await store.append(hid, 1, [set_state("x", 1)], {}, [], T0 + 2)
    with pytest.raises(StaleEpoch):
        await store.end_attempt(hid, 1, OUTPUT, {}, [], COMPLETED, T0 + 2)
    assert (await get(store, hid)).completion == KILLED
    assert await store.state("Obj", "k") == {}
    assert await store.start_attempt(waiting.id, T0 + 2) is not None


async def test_a_killed_invocations_awakeable_is_no_longer_found(store: Store) -> None:
    inv = new()
    inv_id = await suspended_on_awakeable(store, inv)
    await store.kill(inv_id, T0 + 1)
    outcome, effects = await store.complete_awakeable(awk(inv, 1), {"value": "late"}, T0 + 2)
    assert (outcome, effects.ready) == ("not-found", [])
    assert await completions(store, inv_id) == {}


async def test_listing_tells_failed_from_succeeded(store: Store) -> None:
    ok = await started(store, new(service="L"))
    await complete(store, ok)
    failed = await started(store, new(service="L"))
    await store.kill(failed.invocation.id, T0)
    running = await started(store, new(service="L"))
    ids = {
        status: [i.id for i in await store.list_invocations("L", status)]
        for status in ("completed", "succeeded", "failed", "running")
    }
    assert ids == {
        "completed": [failed.invocation.id, ok.invocation.id],
        "succeeded": [ok.invocation.id],
        "failed": [failed.invocation.id],
        "running": [running.invocation.id],
    }


async def test_kill_reaches_its_callers_and_its_calls(store: Store) -> None:
    tid, mid_id, leaf_id = await call_chain(store)

    result = await store.kill(mid_id, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.completion) == ("completed", KILLED)
    assert {i.id for i in effects.finished} == {mid_id, leaf_id}
    assert tid in effects.ready
    assert await completions(store, tid) == {"1": KILLED}
    assert await status(store, tid) == "ready"
    got = await get(store, leaf_id)
    assert (got.status, got.completion) == ("completed", KILLED)
    with pytest.raises(StaleEpoch):
        await store.append(leaf_id, 1, [{"kind": "run", "name": "late"}], {}, [], T0 + 2)


async def test_kill_reports_only_the_woken_callers_as_ready(store: Store) -> None:
    tid, mid_id, _ = await call_chain(store, start_leaf=False)

    result = await store.kill(mid_id, T0 + 1)
    assert result is not None
    # mid is completed: nothing is left to drive of it (nor of its killed call)
    assert result[1].ready == [tid]


async def test_kill_of_a_scheduled_invocation_drops_its_timer(store: Store) -> None:
    inv = new(start_at=T0 + 60_000)
    await store.create(inv, T0)
    result = await store.kill(inv.id, T0 + 1)
    assert result is not None
    assert (result[0].status, result[0].completion) == ("completed", KILLED)
    assert await store.timers() == []


async def test_kill_leaves_a_completed_invocation_and_knows_no_unknown_one(store: Store) -> None:
    assert await store.kill("inv_missing", T0) is None
    a = await started(store, new())
    await complete(store, a)
    result = await store.kill(a.invocation.id, T0 + 1)
    assert result is not None
    assert result[0].completion == {"value": "out"}
    assert result[1].finished == []


# -- pause and resume ----------------------------------------------------------------------


async def test_a_paused_invocation_keeps_its_key_and_resumes_in_place(store: Store) -> None:
    holder = new(service="Obj", key="k")
    hid = await suspended_on_awakeable(store, holder)
    waiting = new(service="Obj", key="k")
    await store.create(waiting, T0 + 1)

    result = await store.pause(hid, T0 + 2)
    assert result is not None
    inv, effects = result
    assert (inv.status, effects.ready) == ("paused", [])
    # it may have made half of its state changes: the next on the key waits
    assert await status(store, waiting.id) == "pending"
    assert await store.start_attempt(waiting.id, T0 + 2) is None

    # a completion while paused is kept, and wakes nothing
    outcome, fx = await store.complete_awakeable(awk(holder, 1), {"value": "v"}, T0 + 3)
    assert (outcome, fx.ready) == ("completed", [])
    assert await status(store, hid) == "paused"

    resumed = await store.resume(hid, T0 + 4)
    assert resumed is not None
    assert (resumed[0].status, resumed[1].ready) == ("ready", [hid])
    h = await store.start_attempt(hid, T0 + 5)
    assert h is not None
    assert h.completions == {"1": {"value": "v"}}
    assert (await complete(store, h, now=T0 + 6)).ready == [waiting.id]


async def test_killing_a_paused_invocation_frees_its_key(store: Store) -> None:
    hid = await suspended_on_awakeable(store, new(service="Obj", key="k"))
    waiting = new(service="Obj", key="k")
    await store.create(waiting, T0 + 1)
    await store.pause(hid, T0 + 2)
    result = await store.kill(hid, T0 + 3)
    assert result is not None
    assert (result[0].completion, result[1].ready) == (KILLED, [waiting.id])


async def test_a_paused_queued_invocation_keeps_its_place(store: Store) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    first, second = new(service="Obj", key="k"), new(service="Obj", key="k")
    await store.create(first, T0)
    await store.create(second, T0)
    result = await store.pause(first.id, T0 + 1)
    assert result is not None
    assert (result[0].status, result[1].ready) == ("paused", [])

    assert (await complete(store, holder, now=T0 + 2)).ready == [second.id]
    await store.resume(first.id, T0 + 3)
    assert await status(store, first.id) == "pending"
    b = await store.start_attempt(second.id, T0 + 4)
    assert b is not None
    assert (await complete(store, b, now=T0 + 5)).ready == [first.id]


async def test_pausing_a_running_invocation_takes_effect_when_its_attempt_ends(
    store: Store,
) -> None:
    holder = await started(store, new(service="Obj", key="k"))
    hid = holder.invocation.id
    waiting = new(service="Obj", key="k")
    await store.create(waiting, T0)

    result = await store.pause(hid, T0 + 1)
    assert result is not None
    inv, effects = result
    assert (inv.status, inv.interrupt) == ("running", "pause")
    assert effects.ready == []
    assert await status(store, waiting.id) == "pending"

    end = suspended(1)
    awaiting = [awakeable_command(holder.invocation, 1)]
    ended = await store.end_attempt(hid, 1, awaiting, {}, [], end, T0 + 2)
    assert ended.ready == []  # it keeps its key
    got = await get(store, hid)
    assert (got.status, got.interrupt) == ("paused", None)
    assert await status(store, waiting.id) == "pending"
    resumed = await store.resume(hid, T0 + 3)
    assert resumed is not None
    assert resumed[1].ready == [hid]


async def test_a_running_invocation_that_completes_is_not_paused(store: Store) -> None:
    a = await started(store, new())
    await store.pause(a.invocation.id, T0 + 1)
    await complete(store, a, now=T0 + 2)
    got = await get(store, a.invocation.id)
    assert (got.status, got.interrupt) == ("completed", None)


async def test_resume_before_a_deferred_pause_takes_effect_clears_it(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    await store.pause(inv_id, T0 + 1)
    resumed = await store.resume(inv_id, T0 + 2)
    assert resumed is not None
    inv, effects = resumed
    assert (inv.status, inv.interrupt) == ("running", None)
    assert effects.ready == []
    end = suspended(1)
    awaiting = [awakeable_command(a.invocation, 1)]
    await store.end_attempt(inv_id, 1, awaiting, {}, [], end, T0 + 3)
    assert await status(store, inv_id) == "suspended"


async def test_a_paused_invocation_is_not_woken_by_its_retry_timer(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    retry = AttemptEnd("backing-off", retry_at=T0 + 100, failure="boom")
    (timer,) = (await store.end_attempt(inv_id, 1, [], {}, [], retry, T0)).timers
    result = await store.pause(inv_id, T0 + 1)
    assert result is not None
    assert result[0].status == "paused"
    assert (await store.fire_timer(timer, T0 + 100)).ready == []
    assert await status(store, inv_id) == "paused"


async def test_pause_is_not_allowed_for_a_scheduled_or_completed_invocation(store: Store) -> None:
    assert await store.pause("inv_missing", T0) is None
    scheduled = new(start_at=T0 + 60_000)
    await store.create(scheduled, T0)
    with pytest.raises(NotAllowed):
        await store.pause(scheduled.id, T0 + 1)
    assert await status(store, scheduled.id) == "scheduled"
    a = await started(store, new())
    await complete(store, a)
    with pytest.raises(NotAllowed):
        await store.pause(a.invocation.id, T0 + 1)
    assert await status(store, a.invocation.id) == "completed"


# -- purge ---------------------------------------------------------------------------------


async def test_only_a_completed_invocation_can_be_purged(store: Store) -> None:
    assert await store.purge("inv_missing", T0) is None
    running = await started(store, new())
    sleeping = await suspended_on_awakeable(store, new())
    for inv_id in (running.invocation.id, sleeping):
        with pytest.raises(NotAllowed):
            await store.purge(inv_id, T0 + 1)
    assert await status(store, running.invocation.id) == "running"
    assert await status(store, sleeping) == "suspended"
    assert len((await store.journal(sleeping))[0]) == 2


async def test_purge_forgets_an_invocation_and_frees_its_idempotency_key(store: Store) -> None:
    inv = new(idempotency_key="idem", request_hash="h", retention_ms=10**9)
    a = await started(store, inv)
    await store.append(inv.id, 1, [{"kind": "run", "name": "a"}], {"1": {"value": 1}}, [], T0)
    await complete(store, a, now=T0 + 1)

    purged = await store.purge(inv.id, T0 + 2)
    assert purged is not None and purged.id == inv.id
    assert await store.get(inv.id) is None
    assert await store.journal(inv.id) == ([], {})
    assert await store.timeline(inv.id) == []
    assert await store.find("Svc", None, "h", "idem", T0 + 3) is None
    fresh = await store.create(new(idempotency_key="idem", request_hash="h"), T0 + 3)
    assert not fresh.previously_accepted
    assert fresh.invocation.id != inv.id
    assert await store.purge(inv.id, T0 + 4) is None


async def test_purging_a_workflows_run_clears_its_state_and_promises(store: Store) -> None:
    run = await started(store, workflow_run())
    commands = [set_state("x", 1), complete_promise("p", {"value": 1}), *OUTPUT]
    await store.end_attempt(run.invocation.id, 1, commands, {}, [], COMPLETED, T0)
    other = await started(store, workflow_run(key="k2"))
    await store.append(other.invocation.id, 1, [set_state("y", 2)], {}, [], T0)
    assert await store.state("Wf", "k") == {"x": 1}

    assert await store.purge(run.invocation.id, T0 + 1) is not None
    assert await store.state("Wf", "k") == {}
    assert await store.find("Wf", "k", "run", "", T0 + 2) is None
    again = await store.create(workflow_run(), T0 + 2, start=True)
    assert not again.previously_accepted
    assert again.started is not None
    assert (again.started.state, again.started.promises) == ({}, {})
    assert await store.state("Wf", "k2") == {"y": 2}


async def test_purging_an_object_invocation_keeps_the_objects_state(store: Store) -> None:
    a = await started(store, new(service="Obj", key="k", idempotency_key="idem"))
    commands = [set_state("x", 1), *OUTPUT]
    await store.end_attempt(a.invocation.id, 1, commands, {}, [], COMPLETED, T0)
    assert await store.purge(a.invocation.id, T0 + 1) is not None
    assert await store.state("Obj", "k") == {"x": 1}


async def test_purging_an_expired_workflow_run_leaves_the_keys_new_run_alone(
    store: Store,
) -> None:
    first = workflow_run(retention_ms=1_000)
    await complete(store, await started(store, first), now=T0 + 10)
    second = workflow_run()
    created = await store.create(second, T0 + 2_000, start=True)
    assert not created.previously_accepted and created.started is not None
    commands = [set_state("x", 2), complete_promise("p", {"value": 2})]
    await store.append(second.id, 1, commands, {}, [], T0 + 2_001)

    assert await store.purge(first.id, T0 + 2_002) is not None
    assert await store.state("Wf", "k") == {"x": 2}
    found = await store.find("Wf", "k", "run", "", T0 + 2_003)
    assert found is not None and found.id == second.id
    reader = await started(store, workflow_shared(handler="reader"), T0 + 2_003)
    assert reader.promises == {"p": {"value": 2}}


# -- timeline ------------------------------------------------------------------------------


async def test_the_timeline_shows_each_entry_with_its_result_and_times(store: Store) -> None:
    a = await started(store, new(input=1))
    inv_id = a.invocation.id
    run: Command = {"kind": "run", "name": "a"}
    await store.append(inv_id, 1, [run], {"1": {"value": "A"}}, [], T0 + 5)
    await store.end_attempt(inv_id, 1, [sleep_at(T0 + 100)], {}, [], suspended(2), T0 + 6)
    await store.fire_timer(Timer(T0 + 100, "sleep", inv_id, 2), T0 + 100)

    assert await store.timeline(inv_id) == [
        JournalEntry(0, {"kind": "input", "value": 1}, T0),
        JournalEntry(1, run, T0 + 5, {"value": "A"}, T0 + 5),
        JournalEntry(2, sleep_at(T0 + 100), T0 + 6, {"value": None}, T0 + 100),
    ]
    assert await store.timeline("inv_missing") == []


# -- state edits ---------------------------------------------------------------------------


async def test_edit_state_sets_and_clears_an_idle_objects_state(store: Store) -> None:
    edit = store.edit_state
    assert await edit("Obj", "k", {"a": 1, "b": {"deep": [1]}}, [], False, T0) == {
        "a": 1,
        "b": {"deep": [1]},
    }
    assert await edit("Obj", "k", {"c": 3}, ["a"], False, T0) == {"b": {"deep": [1]}, "c": 3}
    assert await store.state("Obj", "k") == {"b": {"deep": [1]}, "c": 3}
    await edit("Obj", "k2", {"other": True}, [], False, T0)
    assert await edit("Obj", "k", {}, [], True, T0) == {}
    assert await store.state("Obj", "k2") == {"other": True}

    await edit("Obj", "k", {"n": 5}, [], False, T0)
    a = await started(store, new(service="Obj", key="k"))
    assert a.state == {"n": 5}


async def test_edit_state_is_refused_while_an_invocation_holds_the_key(store: Store) -> None:
    await store.edit_state("Obj", "k", {"n": 1}, [], False, T0)
    holder = await started(store, new(service="Obj", key="k"))
    hid = holder.invocation.id
    with pytest.raises(NotAllowed):
        await store.edit_state("Obj", "k", {"n": 2, "m": 3}, [], True, T0)
    assert await store.state("Obj", "k") == {"n": 1}

    # suspended, it still holds the key
    awaiting = [awakeable_command(holder.invocation, 1)]
    await store.end_attempt(hid, 1, awaiting, {}, [], suspended(1), T0)
    with pytest.raises(NotAllowed):
        await store.edit_state("Obj", "k", {}, ["n"], False, T0)
    assert await store.state("Obj", "k") == {"n": 1}

    # paused, it still holds the key
    await store.pause(hid, T0 + 1)
    with pytest.raises(NotAllowed):
        await store.edit_state("Obj", "k", {"n": 2}, [], False, T0 + 1)
    await store.resume(hid, T0 + 1)

    # a shared handler holds no key
    await started(store, new(service="Obj", key="k2", exclusive=False))
    assert await store.edit_state("Obj", "k2", {"n": 9}, [], False, T0) == {"n": 9}

    again = await store.start_attempt(hid, T0 + 2)
    assert again is not None
    await complete(store, again, now=T0 + 3)
    assert await store.edit_state("Obj", "k", {"n": 2}, [], False, T0 + 4) == {"n": 2}
