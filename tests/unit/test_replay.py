"""The replay engine without I/O, continued: object state, the replay-aware logger,
deterministic randomness, ``gather``/``select``, and calls and sends to other handlers."""

import hashlib
import logging
import random
from datetime import timedelta
from typing import Any

import pytest

import tarry
from tarry import Context, ObjectContext, ObjectSharedContext, TerminalError
from tarry.operations.call import child_invocation_id
from tarry.protocol import LATE_SECRET_PREFIX

from .fakes import INVOCATION_ID, SECRET, T0, MemoryChannel, invoke, request

# -- state ---------------------------------------------------------------------------------


def counter_object() -> tarry.VirtualObject:
    counter = tarry.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: ObjectContext, delta: int) -> int:
        total: int = (await ctx.get("total")) or 0
        ctx.set("total", total + delta)
        return total + delta

    @counter.handler()
    async def reset(ctx: ObjectContext) -> list[str]:
        ctx.clear("total")
        ctx.clear_all()
        return await ctx.state_keys()

    @counter.handler(kind="shared")
    async def peek(ctx: ObjectSharedContext) -> Any:
        return await ctx.get("total")

    @counter.handler(kind="shared")
    async def sneaky_set(ctx: ObjectSharedContext) -> None:
        ctx.set("total", 0)  # type: ignore[attr-defined]

    return counter


async def test_get_is_journaled_with_its_value_and_set_is_a_command() -> None:
    req = request("Counter", "add", 2, key="a", state={"total": 5})
    response = await invoke(counter_object(), req)
    assert response["commands"] == [
        {"kind": "get_state", "name": "total", "value": 5},
        {"kind": "set_state", "name": "total", "value": 7},
        {"kind": "output", "value": 7},
    ]
    assert response["outcome"] == {"kind": "completed", "value": 7}


async def test_get_of_a_missing_name_is_none() -> None:
    response = await invoke(counter_object(), request("Counter", "add", 2, key="a", state={}))
    assert response["commands"][0] == {"kind": "get_state", "name": "total"}
    assert response["outcome"] == {"kind": "completed", "value": 2}


async def test_a_replayed_get_returns_the_recorded_value() -> None:
    # The eager state already holds the journaled set; the replayed get still sees 5.
    req = request(
        "Counter",
        "add",
        2,
        key="a",
        state={"total": 7},
        journal=[
            {"kind": "get_state", "name": "total", "value": 5},
            {"kind": "set_state", "name": "total", "value": 7},
        ],
    )
    response = await invoke(counter_object(), req)
    assert response["commands"] == [{"kind": "output", "value": 7}]


async def test_clear_and_clear_all_are_commands() -> None:
    req = request("Counter", "reset", key="a", state={"total": 1, "other": 2})
    response = await invoke(counter_object(), req)
    assert response["commands"] == [
        {"kind": "clear_state", "name": "total"},
        {"kind": "clear_all_state", "name": ""},
        {"kind": "state_keys", "name": "", "value": []},
        {"kind": "output", "value": []},
    ]


async def test_a_shared_handler_reads_but_cannot_set() -> None:
    counter = counter_object()
    response = await invoke(counter, request("Counter", "peek", key="a", state={"total": 3}))
    assert response["outcome"] == {"kind": "completed", "value": 3}

    response = await invoke(counter, request("Counter", "sneaky_set", key="a", state={}))
    assert response["outcome"]["kind"] == "retry"
    assert "shared handler cannot set" in response["outcome"]["error"]
    assert all(c["kind"] != "set_state" for c in response["commands"])


# -- logging and randomness ----------------------------------------------------------------


def logging_service() -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> str:
        ctx.logger.info("before the step")

        async def step() -> int:
            return 1

        await ctx.run("step", step)
        ctx.logger.info("after the step")
        return "ok"

    return svc


async def test_the_logger_is_quiet_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tarry.handler")
    req = request("S", "h", journal=[{"kind": "run", "name": "step"}], completions={"1": {}})
    response = await invoke(logging_service(), req)
    assert response["outcome"]["kind"] == "completed"
    messages = [r.getMessage() for r in caplog.records]
    assert not any("before the step" in m for m in messages)
    assert any("after the step" in m for m in messages)


async def test_the_logger_speaks_past_the_journal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tarry.handler")
    response = await invoke(logging_service(), request("S", "h"))
    assert response["outcome"] == {"kind": "flush"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("before the step" in m and INVOCATION_ID in m for m in messages)


async def test_random_and_uuid_repeat_on_replay_and_follow_the_secret_not_the_id() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> list[Any]:
        return [ctx.random().random(), str(ctx.uuid()), str(ctx.uuid())]

    def values(invocation_id: str, secret: str) -> Any:
        return invoke(svc, request("S", "h", invocation_id=invocation_id, secret=secret))

    first = await values("inv_1", "secret-a")
    again = await values("inv_1", "secret-a")
    assert first["outcome"] == again["outcome"]  # a replay draws the same numbers
    assert first["outcome"]["value"][1] != first["outcome"]["value"][2]
    # what someone who knows only the invocation id cannot predict: another secret, other values
    other_secret = await values("inv_1", "secret-b")
    assert first["outcome"]["value"] != other_secret["outcome"]["value"]
    other = await values("inv_2", "secret-c")
    assert first["outcome"]["value"] != other["outcome"]["value"]

    # an invocation stored before secrets drew from a generator seeded by its id; given a
    # secret late, it draws the same again, so its replays do not diverge
    seed = int.from_bytes(hashlib.sha256(b"inv_1").digest()[:8], "big")
    before = random.Random(seed).random()
    late = await values("inv_1", LATE_SECRET_PREFIX + "0" * 64)
    assert late["outcome"]["value"][0] == before
    assert first["outcome"]["value"][0] != before


# -- gather and select ---------------------------------------------------------------------


def combinators_service(target: Any) -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def both_runs(ctx: Context) -> list[Any]:
        async def a() -> str:
            return "a"

        async def b() -> str:
            return "b"

        return await tarry.gather(ctx.run("a", a), ctx.run("b", b))

    @svc.handler()
    async def both_sleeps(ctx: Context) -> list[Any]:
        return await tarry.gather(ctx.sleep(timedelta(seconds=1)), ctx.sleep(timedelta(seconds=2)))

    @svc.handler()
    async def race(ctx: Context) -> list[Any]:
        name, value = await tarry.select(
            done=ctx.service_call(target, 1), timeout=ctx.sleep(timedelta(seconds=5))
        )
        return [name, value]

    return svc


def callee_service() -> tuple[tarry.Service, Any]:
    callee = tarry.Service("Callee")

    @callee.handler()
    async def work(ctx: Context, n: int) -> int:
        return n * 10

    return callee, work


async def test_gather_waits_for_every_run() -> None:
    _, work = callee_service()
    channel = MemoryChannel()
    req = request("S", "both_runs", checkpoint="channel")
    response = await invoke(combinators_service(work), req, channel)
    assert response["outcome"] == {"kind": "completed", "value": ["a", "b"]}
    assert channel.commands == [{"kind": "run", "name": "a"}, {"kind": "run", "name": "b"}]
    assert channel.completions == {"1": {"value": "a"}, "2": {"value": "b"}}


async def test_gather_suspends_on_what_is_not_done() -> None:
    _, work = callee_service()
    svc = combinators_service(work)
    response = await invoke(svc, request("S", "both_sleeps"))
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1, 2]}

    sleeps = response["commands"]
    req = request("S", "both_sleeps", journal=sleeps, completions={"1": {"value": None}})
    response = await invoke(svc, req)
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [2]}

    done = {"1": {"value": None}, "2": {"value": None}}
    response = await invoke(svc, request("S", "both_sleeps", journal=sleeps, completions=done))
    assert response["outcome"] == {"kind": "completed", "value": [None, None]}


def race_journal(work: Any) -> list[Any]:
    return [
        {
            "kind": "call",
            "name": "Callee/work",
            "service": "Callee",
            "handler": "work",
            "key": None,
            "arg": 1,
            "headers": {},
            "idempotency_key": None,
            "invocation_id": child_invocation_id(INVOCATION_ID, 1, SECRET),
        },
        {"kind": "sleep", "name": "", "wake_at": T0 + 5_000},
    ]


async def test_select_suspends_until_one_is_done_then_journals_the_choice() -> None:
    _, work = callee_service()
    svc = combinators_service(work)
    response = await invoke(svc, request("S", "race"))
    assert response["commands"] == race_journal(work)
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1, 2]}

    req = request("S", "race", journal=race_journal(work), completions={"2": {"value": None}})
    response = await invoke(svc, req)
    assert response["commands"] == [
        {"kind": "select", "name": "done,timeout", "value": 1},
        {"kind": "output", "value": ["timeout", None]},
    ]


async def test_select_replay_takes_the_recorded_branch_even_when_both_are_done() -> None:
    _, work = callee_service()
    both_done = {"1": {"value": 10}, "2": {"value": None}}
    journal = [*race_journal(work), {"kind": "select", "name": "done,timeout", "value": 1}]
    req = request("S", "race", journal=journal, completions=both_done)
    response = await invoke(combinators_service(work), req)
    assert response["outcome"] == {"kind": "completed", "value": ["timeout", None]}
    assert response["commands"] == [{"kind": "output", "value": ["timeout", None]}]


async def test_select_over_fewer_futures_than_recorded_is_non_deterministic() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def race(ctx: Context) -> list[Any]:
        first = ctx.sleep(timedelta(seconds=1))
        ctx.sleep(timedelta(seconds=2))
        name, value = await tarry.select(first=first)
        return [name, value]

    journal = [
        {"kind": "sleep", "name": "", "wake_at": T0 + 1_000},
        {"kind": "sleep", "name": "", "wake_at": T0 + 2_000},
        {"kind": "select", "name": "first,second", "value": 1},
    ]
    done = {"1": {"value": None}, "2": {"value": None}}
    response = await invoke(svc, request("S", "race", journal=journal, completions=done))
    assert response["outcome"]["kind"] == "retry"
    assert response["outcome"].get("non_deterministic") is True
    assert "select('first,second')" in response["outcome"]["error"]


# -- calls and sends -----------------------------------------------------------------------


def caller_service(work: Any, add: Any) -> tarry.Service:
    svc = tarry.Service("Caller")

    @svc.handler()
    async def call_service(ctx: Context, n: int) -> Any:
        try:
            return await ctx.service_call(work, n) + 1
        except TerminalError as exc:
            return f"failed {exc.status_code}: {exc.message}"

    @svc.handler()
    async def call_object(ctx: Context, n: int) -> Any:
        return await ctx.object_call(add, key="k1", arg=n)

    @svc.handler()
    async def send_later(ctx: Context) -> str:
        handle = ctx.service_send(work, 3, delay=timedelta(seconds=30))
        return handle.invocation_id

    @svc.handler()
    async def wrong_kind(ctx: Context) -> Any:
        return await ctx.service_call(add, 1)

    return svc


def caller() -> tarry.Service:
    _, work = callee_service()
    counter = counter_object()
    return caller_service(work, counter.handlers["add"].fn)


async def test_a_service_call_is_a_command_with_a_derived_id_and_suspends() -> None:
    svc = caller()
    response = await invoke(svc, request("Caller", "call_service", 4))
    assert response["commands"] == [
        {
            "kind": "call",
            "name": "Callee/work",
            "service": "Callee",
            "handler": "work",
            "key": None,
            "arg": 4,
            "headers": {},
            "idempotency_key": None,
            "invocation_id": child_invocation_id(INVOCATION_ID, 1, SECRET),
        }
    ]
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}

    again = await invoke(svc, request("Caller", "call_service", 4))
    other = await invoke(svc, request("Caller", "call_service", 4, invocation_id="inv_other"))
    call_id = response["commands"][0]["invocation_id"]
    assert again["commands"][0]["invocation_id"] == call_id
    assert other["commands"][0]["invocation_id"] != call_id


async def test_a_calls_invocation_id_cannot_be_derived_from_its_callers() -> None:
    """Whoever holds the caller's id (its caller, say) cannot work out the ids of the
    invocations it started, and read their results: the id is keyed with the caller's secret.
    A replay names the invocation the first attempt named, even one named the older way."""
    svc = caller()
    first = (await invoke(svc, request("Caller", "call_service", 4)))["commands"][0]
    derived = "inv_" + hashlib.sha256(f"{INVOCATION_ID}/1".encode()).hexdigest()[:32]
    assert first["invocation_id"] != derived
    other = request("Caller", "call_service", 4, secret="1" * 64)
    assert (await invoke(svc, other))["commands"][0]["invocation_id"] != first["invocation_id"]

    older = {**first, "invocation_id": derived}  # recorded by an earlier version
    replayed = request(
        "Caller", "call_service", 4, journal=[older], completions={"1": {"value": 1}}
    )
    assert (await invoke(svc, replayed))["outcome"] == {"kind": "completed", "value": 2}
    sent = await invoke(svc, request("Caller", "send_later"))
    assert sent["outcome"]["value"] == sent["commands"][0]["invocation_id"] != derived


async def test_a_completed_call_returns_its_value_or_raises_its_failure() -> None:
    svc = caller()
    journal = (await invoke(svc, request("Caller", "call_service", 4)))["commands"]

    req = request("Caller", "call_service", 4, journal=journal, completions={"1": {"value": 40}})
    response = await invoke(svc, req)
    assert response["outcome"] == {"kind": "completed", "value": 41}

    failure = {"failure": {"code": 404, "message": "no such thing"}}
    req = request("Caller", "call_service", 4, journal=journal, completions={"1": failure})
    response = await invoke(svc, req)
    assert response["outcome"] == {"kind": "completed", "value": "failed 404: no such thing"}


async def test_an_object_call_names_its_key() -> None:
    response = await invoke(caller(), request("Caller", "call_object", 2))
    (command,) = response["commands"]
    assert (command["kind"], command["service"], command["handler"]) == ("call", "Counter", "add")
    assert (command["key"], command["arg"]) == ("k1", 2)
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}


async def test_calling_a_handler_of_another_kind_is_refused() -> None:
    response = await invoke(caller(), request("Caller", "wrong_kind"))
    assert response["outcome"]["kind"] == "retry"
    assert "not a service handler" in response["outcome"]["error"]
    assert response["commands"] == []


async def test_a_delayed_send_journals_its_delay_and_does_not_wait() -> None:
    response = await invoke(caller(), request("Caller", "send_later"))
    send, output = response["commands"]
    assert (send["kind"], send["service"], send["handler"]) == ("send", "Callee", "work")
    assert send["delay_ms"] == 30_000
    assert send["invocation_id"] == child_invocation_id(INVOCATION_ID, 1, SECRET)
    assert response["outcome"] == {"kind": "completed", "value": send["invocation_id"]}
    assert output == {"kind": "output", "value": send["invocation_id"]}
