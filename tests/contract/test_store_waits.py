"""The Store contract, continued: waiting on the outside world — awakeables, durable promises,
attach, and finding an invocation by idempotency key (or a workflow's run by its key)."""

from dataclasses import replace

from tarry.protocol import Command, Completion
from tarry.runtime.store import (
    AttemptEnd,
    Store,
)
from tests.contract.helpers import (
    COMPLETED,
    OUTPUT,
    T0,
    attach_command,
    awakeable_command,
    awk,
    call_command,
    complete,
    complete_promise,
    completions,
    get_promise,
    new,
    resolve_command,
    started,
    status,
    suspended,
    suspended_on_awakeable,
    workflow_run,
    workflow_shared,
)

# -- awakeables ----------------------------------------------------------------------------


async def test_completing_an_awakeable_wakes_its_waiter_and_the_first_completion_wins(
    store: Store,
) -> None:
    inv = new()
    inv_id = await suspended_on_awakeable(store, inv)
    assert await status(store, inv_id) == "suspended"

    outcome, effects = await store.complete_awakeable(awk(inv, 1), {"value": 42}, T0 + 1)
    assert outcome == "completed"
    assert effects.ready == [inv_id]
    assert await status(store, inv_id) == "ready"

    attempt = await store.start_attempt(inv_id, T0 + 2)
    assert attempt is not None
    assert attempt.journal[1] == awakeable_command(attempt.invocation, 1)
    assert attempt.completions == {"1": {"value": 42}}

    failure: Completion = {"failure": {"code": 500, "message": "late"}}
    outcome, effects = await store.complete_awakeable(awk(inv, 1), failure, T0 + 3)
    assert outcome == "already-completed"
    assert effects.ready == []
    assert await completions(store, inv_id) == {"1": {"value": 42}}


async def test_completing_what_is_not_an_awakeable_is_not_found(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    run: Command = {"kind": "run", "name": "step"}
    commands = [run, awakeable_command(a.invocation, 2)]
    await store.end_attempt(inv_id, 1, commands, {"1": {"value": 1}}, [], suspended(2), T0)

    for awakeable in [
        awk(replace(a.invocation, id="inv_missing"), 1),  # no such invocation
        awk(a.invocation, 0),  # the input
        awk(a.invocation, 1),  # a run
        awk(a.invocation, -1),
        awk(a.invocation, 3),  # not stored, and no attempt is in flight that could store it
        "not-an-awakeable-id",
    ]:
        outcome, effects = await store.complete_awakeable(awakeable, {"value": 0}, T0 + 1)
        assert outcome == "not-found", awakeable
        assert effects.ready == []
    assert await completions(store, inv_id) == {"1": {"value": 1}}
    assert await status(store, inv_id) == "suspended"


async def test_a_completion_that_arrives_before_its_awakeable_is_stored_is_kept(
    store: Store,
) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    # The attempt handed the id out (say, from a run) before its commands were stored.
    outcome, effects = await store.complete_awakeable(
        awk(a.invocation, 1), {"value": "early"}, T0 + 1
    )
    assert outcome == "completed"
    assert effects.ready == []
    assert await status(store, inv_id) == "running"
    outcome, _ = await store.complete_awakeable(awk(a.invocation, 1), {"value": "later"}, T0 + 2)
    assert outcome == "already-completed"

    end = suspended(1)
    awaiting = [awakeable_command(a.invocation, 1)]
    ended = await store.end_attempt(inv_id, 1, awaiting, {}, [], end, T0 + 3)
    assert ended.ready == [inv_id]
    assert await status(store, inv_id) == "ready"
    assert await completions(store, inv_id) == {"1": {"value": "early"}}


async def test_a_completion_that_arrives_between_attempts_is_kept(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    retry = AttemptEnd("backing-off", retry_at=T0 + 100, failure="boom")
    (timer,) = (await store.end_attempt(inv_id, 1, [], {}, [], retry, T0)).timers
    outcome, _ = await store.complete_awakeable(awk(a.invocation, 1), {"value": "early"}, T0 + 1)
    assert outcome == "completed"

    assert (await store.fire_timer(timer, T0 + 100)).ready == [inv_id]
    again = await store.start_attempt(inv_id, T0 + 100)
    assert again is not None
    end = suspended(1)
    ended = await store.end_attempt(
        inv_id, 2, [awakeable_command(again.invocation, 1)], {}, [], end, T0 + 101
    )
    assert ended.ready == [inv_id]
    assert await completions(store, inv_id) == {"1": {"value": "early"}}


async def test_a_handler_completes_an_awakeable_with_a_command(store: Store) -> None:
    waiting = new(service="Waiter")
    waiter = await suspended_on_awakeable(store, waiting)
    awakeable = awk(waiting, 1)
    resolver = await started(store, new(service="Resolver"))
    rid = resolver.invocation.id

    command = resolve_command(awakeable, {"value": "yes"})
    effects = await store.append(rid, 1, [command], {}, [], T0 + 1)
    assert effects.ready == [waiter]
    assert await completions(store, waiter) == {"1": {"value": "yes"}}
    assert await completions(store, rid) == {"1": {"value": None}}  # the resolver's own entry

    again = resolve_command(awakeable, {"value": "no"})
    unknown = resolve_command(awk(replace(waiting, id="inv_missing"), 1), {"value": 1})
    garbled = resolve_command("not-an-awakeable-id", {"value": 1})
    end = suspended(2, 3, 4)
    effects = await store.end_attempt(rid, 1, [again, unknown, garbled], {}, [], end, T0 + 2)
    assert effects.ready == [rid]  # what it waits on is done already
    results = await completions(store, rid)
    assert [results[i].get("failure", {}).get("code") for i in ("2", "3", "4")] == [409, 404, 404]
    assert await completions(store, waiter) == {"1": {"value": "yes"}}


async def test_a_handler_rejects_an_awakeable_with_a_command(store: Store) -> None:
    waiting = new(service="Waiter")
    waiter = await suspended_on_awakeable(store, waiting)
    resolver = await started(store, new(service="Resolver"))
    rejection: Completion = {"failure": {"code": 403, "message": "denied"}}
    command = resolve_command(awk(waiting, 1), rejection)
    effects = await store.append(resolver.invocation.id, 1, [command], {}, [], T0 + 1)
    assert effects.ready == [waiter]
    assert await completions(store, waiter) == {"1": rejection}
    assert await completions(store, resolver.invocation.id) == {"1": {"value": None}}


# -- durable promises ----------------------------------------------------------------------


async def test_a_promise_awaited_before_it_is_resolved_wakes_its_waiters(store: Store) -> None:
    run = await started(store, workflow_run())
    run_id = run.invocation.id
    assert run.promises == {}
    await store.end_attempt(run_id, 1, [get_promise("p")], {}, [], suspended(1), T0)
    assert await status(store, run_id) == "suspended"
    assert await completions(store, run_id) == {}
    reader = await started(store, workflow_shared(handler="reader"))
    rid = reader.invocation.id
    await store.end_attempt(rid, 1, [get_promise("p")], {}, [], suspended(1), T0)

    signal = await started(store, workflow_shared())
    sid = signal.invocation.id
    effects = await store.append(sid, 1, [complete_promise("p", {"value": 5})], {}, [], T0 + 1)
    assert sorted(effects.ready) == sorted([run_id, rid])
    assert await completions(store, run_id) == {"1": {"value": 5}}
    assert await completions(store, rid) == {"1": {"value": 5}}
    assert await completions(store, sid) == {"1": {"value": None}}

    again = await store.start_attempt(run_id, T0 + 2)
    assert again is not None
    assert again.completions == {"1": {"value": 5}}
    assert again.promises == {"p": {"value": 5}}


async def test_a_promise_awaited_after_it_is_completed_is_completed_at_once(store: Store) -> None:
    signal = await started(store, workflow_shared())
    rejection: Completion = {"failure": {"code": 403, "message": "denied"}}
    commands = [complete_promise("p", rejection), *OUTPUT]
    await store.end_attempt(signal.invocation.id, 1, commands, {}, [], COMPLETED, T0)

    run = await started(store, workflow_run(), T0 + 1)
    run_id = run.invocation.id
    assert run.promises == {"p": rejection}
    ended = await store.end_attempt(run_id, 1, [get_promise("p")], {}, [], suspended(1), T0 + 2)
    assert ended.ready == [run_id]
    assert await completions(store, run_id) == {"1": rejection}


async def test_a_promise_is_completed_once(store: Store) -> None:
    first = await started(store, workflow_shared(handler="first"))
    second = await started(store, workflow_shared(handler="second"))
    await store.append(first.invocation.id, 1, [complete_promise("p", {"value": 1})], {}, [], T0)
    command = complete_promise("p", {"value": 2})
    await store.append(second.invocation.id, 1, [command], {}, [], T0 + 1)

    assert await completions(store, first.invocation.id) == {"1": {"value": None}}
    (late,) = (await completions(store, second.invocation.id)).values()
    assert late.get("failure", {}).get("code") == 409
    run = await started(store, workflow_run(), T0 + 2)
    assert run.promises == {"p": {"value": 1}}


async def test_promises_belong_to_one_workflow_key(store: Store) -> None:
    signal = await started(store, workflow_shared(key="k"))
    await store.append(signal.invocation.id, 1, [complete_promise("p", {"value": 1})], {}, [], T0)
    other = await started(store, workflow_run(key="k2"))
    assert other.promises == {}
    oid = other.invocation.id
    ended = await store.end_attempt(oid, 1, [get_promise("p")], {}, [], suspended(1), T0)
    assert ended.ready == []
    assert await status(store, oid) == "suspended"


async def test_peeking_a_promise_has_no_effect_in_the_store(store: Store) -> None:
    run = await started(store, workflow_run())
    run_id = run.invocation.id
    peek: Command = {"kind": "peek_promise", "name": "p"}
    # A peek records what it saw; even a (bogus) recorded result does not make a promise.
    seen: Command = {"kind": "peek_promise", "name": "q", "completion": {"value": "bogus"}}
    effects = await store.append(run_id, 1, [peek, seen], {}, [], T0)
    assert (effects.ready, effects.timers, effects.finished) == ([], [], [])
    assert await store.journal(run_id) == ([{"kind": "input", "value": "in"}, peek, seen], {})

    signal = await started(store, workflow_shared())
    effects = await store.append(
        signal.invocation.id, 1, [complete_promise("p", {"value": 1})], {}, [], T0 + 1
    )
    assert effects.ready == []  # a peek does not wait
    assert await completions(store, run_id) == {}
    assert await status(store, run_id) == "running"
    reader = await started(store, workflow_shared(handler="reader"), T0 + 2)
    assert reader.promises == {"p": {"value": 1}}


# -- attach --------------------------------------------------------------------------------


async def test_attaching_to_a_completed_invocation_completes_at_once(store: Store) -> None:
    target = await started(store, new(service="Callee"))
    await complete(store, target)
    caller = await started(store, new(service="Caller"))
    cid = caller.invocation.id
    command = attach_command(target.invocation.id)
    effects = await store.end_attempt(cid, 1, [command], {}, [], suspended(1), T0 + 1)
    assert effects.ready == [cid]
    assert await completions(store, cid) == {"1": {"value": "out"}}


async def test_attaching_to_a_running_invocation_completes_when_it_does(store: Store) -> None:
    target = await started(store, new(service="Callee"))
    tid = target.invocation.id
    waiters = []
    for _ in range(2):
        caller = await started(store, new(service="Caller"))
        cid = caller.invocation.id
        effects = await store.end_attempt(cid, 1, [attach_command(tid)], {}, [], suspended(1), T0)
        assert effects.ready == []
        waiters.append(cid)
    assert await status(store, waiters[0]) == "suspended"

    effects = await complete(store, target, now=T0 + 1)
    assert sorted(effects.ready) == sorted(waiters)
    for cid in waiters:
        assert await completions(store, cid) == {"1": {"value": "out"}}


async def test_attaching_to_an_unknown_invocation_fails_with_404(store: Store) -> None:
    caller = await started(store, new(service="Caller"))
    cid = caller.invocation.id
    command = attach_command("inv_missing")
    effects = await store.end_attempt(cid, 1, [command], {}, [], suspended(1), T0)
    assert effects.ready == [cid]
    (result,) = (await completions(store, cid)).values()
    assert result.get("failure", {}).get("code") == 404


# -- find ----------------------------------------------------------------------------------


async def test_find_names_an_idempotent_invocation_within_its_retention(store: Store) -> None:
    inv = new(idempotency_key="idem", request_hash="h", retention_ms=1_000)
    a = await started(store, inv)
    found = await store.find("Svc", None, "h", "idem", T0 + 10**9)  # running: no expiry
    assert found is not None
    assert (found.id, found.status) == (inv.id, "running")
    assert await store.find("Svc", None, "h", "other", T0) is None
    assert await store.find("Svc", None, "h2", "idem", T0) is None
    assert await store.find("Svc2", None, "h", "idem", T0) is None

    await complete(store, a, now=T0 + 10)
    found = await store.find("Svc", None, "h", "idem", T0 + 1_009)
    assert found is not None
    assert (found.id, found.completion) == (inv.id, {"value": "out"})
    assert await store.find("Svc", None, "h", "idem", T0 + 1_010) is None


async def test_the_empty_idempotency_key_names_a_workflows_run(store: Store) -> None:
    first = workflow_run()
    await store.create(first, T0)
    found = await store.find("Wf", "k", "run", "", T0)
    assert found is not None and found.id == first.id
    assert await store.find("Wf", "k2", "run", "", T0) is None

    again = await store.create(workflow_run(), T0 + 1)
    assert again.previously_accepted
    assert again.invocation.id == first.id
    assert again.effects.ready == []
    assert [i.id for i in await store.list_invocations(service="Wf")] == [first.id]
    other_key = await store.create(workflow_run(key="k2"), T0 + 1)
    assert not other_key.previously_accepted


async def test_a_second_call_to_a_workflows_run_fails_the_caller_with_409(store: Store) -> None:
    first = workflow_run()
    await store.create(first, T0)
    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    child = workflow_run(caller_id=pid, caller_index=1)
    effects = await store.end_attempt(
        pid, 1, [call_command(child)], {}, [child], suspended(1), T0 + 1
    )
    assert effects.ready == [pid]
    (result,) = (await completions(store, pid)).values()
    assert result.get("failure", {}).get("code") == 409
    assert await store.get(child.id) is None
    assert await status(store, first.id) == "ready"


async def test_a_retried_first_call_to_a_workflows_run_gets_its_result(store: Store) -> None:
    parent = await started(store, new(service="Caller"))
    pid = parent.invocation.id
    child = workflow_run(caller_id=pid, caller_index=1)
    await store.append(pid, 1, [call_command(child)], {}, [child], T0)
    again = await store.create(child, T0 + 1)  # the same call, made again
    assert again.previously_accepted
    assert again.invocation.id == child.id
    assert await completions(store, pid) == {}

    run = await store.start_attempt(child.id, T0 + 2)
    assert run is not None
    await complete(store, run, now=T0 + 3)
    assert await completions(store, pid) == {"1": {"value": "out"}}
