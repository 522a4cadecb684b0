"""What a handler passes that cannot be stored is a TerminalError (400) at the call — not an
attempt that fails in the store and is retried for ever — and nothing of it is journaled; a
result that is not JSON fails the invocation (or the step) terminally."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import tarry
from tarry import Context, ObjectContext, TerminalError, WorkflowContext
from tarry.limits import MAX_IDEMPOTENCY_KEY_BYTES, MAX_KEY_BYTES, MAX_STATE_NAME_BYTES

from .fakes import T0, MemoryChannel, invoke, request

callee = tarry.VirtualObject("Callee")


@callee.handler()
async def work(ctx: ObjectContext, x: Any) -> Any:
    return x


flow = tarry.Workflow("Flow")


@flow.main()
async def run(ctx: WorkflowContext) -> None:
    return None


# Each of these is refused at the call; the handler catches the TerminalError and says why.
ATTEMPTS: dict[str, Callable[[Any], Any]] = {
    "negative sleep": lambda ctx: ctx.sleep(timedelta(seconds=-1)),
    "negative sleep, a microsecond": lambda ctx: ctx.sleep(timedelta(microseconds=-1)),
    "sleep over 100 years": lambda ctx: ctx.sleep(timedelta(days=365 * 100 + 1)),
    "sleep of an int": lambda ctx: ctx.sleep(5),
    "negative send delay": lambda ctx: ctx.object_send(
        work, key="k", arg=1, delay=timedelta(seconds=-1)
    ),
    "send delay over 100 years": lambda ctx: ctx.object_send(
        work, key="k", arg=1, delay=timedelta(days=365 * 100 + 1)
    ),
    "send delay of a float": lambda ctx: ctx.object_send(work, key="k", arg=1, delay=1.5),
    "key over the limit": lambda ctx: ctx.object_call(work, key="k" * (MAX_KEY_BYTES + 1)),
    "key over the limit in UTF-8 bytes": lambda ctx: ctx.object_send(
        work, key="é" * (MAX_KEY_BYTES // 2 + 1)
    ),
    "workflow key over the limit": lambda ctx: ctx.workflow_send(run, key="k" * 300),
    "idempotency key over the limit": lambda ctx: ctx.object_call(
        work, key="k", idempotency_key="i" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)
    ),
    "a key that is not a string": lambda ctx: ctx.object_call(work, key=5),
    "NaN as an argument": lambda ctx: ctx.object_call(work, key="k", arg=float("nan")),
    "Infinity nested in an argument": lambda ctx: ctx.object_send(
        work, key="k", arg={"a": [float("inf")]}
    ),
    "an argument that is not JSON": lambda ctx: ctx.object_call(work, key="k", arg=object()),
    "an argument nested too deeply": lambda ctx: ctx.object_call(work, key="k", arg=_nested(200)),
    "a long generic service name": lambda ctx: ctx.generic_call("S" * 100, "h", 1),
    "a long attach id": lambda ctx: ctx.attach_invocation("inv_" + "0" * 300),
    "NaN resolving an awakeable": lambda ctx: ctx.resolve_awakeable("awk_x", float("nan")),
}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def caller_service() -> tarry.Service:
    svc = tarry.Service("Caller")

    @svc.handler()
    async def attempt(ctx: Context, what: str) -> str:
        try:
            ATTEMPTS[what](ctx)
        except TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "not refused"

    @svc.handler()
    async def returns_nan(ctx: Context) -> float:
        return float("nan")

    @svc.handler()
    async def run_returns_inf(ctx: Context) -> str:
        try:
            await ctx.run("inf", lambda: float("inf"))
        except TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "not refused"

    @svc.handler()
    async def sleeps_till(ctx: Context, deadline_ms: int) -> str:
        await ctx.sleep(timedelta(milliseconds=deadline_ms - T0))
        return "woke"

    return svc


# What the message says, for some of them.
MESSAGES = {
    "negative sleep": "a sleep cannot be negative",
    "sleep over 100 years": "over the maximum of 100 years",
    "sleep of an int": "ctx.sleep takes a timedelta, not int",
    "negative send delay": "a send's delay cannot be negative",
    "send delay of a float": "a send's delay is a timedelta, not float",
    "key over the limit": "the key is 257 bytes long; at most 256 bytes",
    "key over the limit in UTF-8 bytes": "the key is 258 bytes long",
    "idempotency key over the limit": "the idempotency key is 257 bytes",
    "a key that is not a string": "must be strings",
    "NaN as an argument": "not JSON: NaN and Infinity are not JSON numbers",
    "an argument nested too deeply": "nests deeper than 128 levels",
    "a long generic service name": "the service name is 100 bytes long; at most 64",
    "a long attach id": "the invocation id is 304 bytes",
}


@pytest.mark.parametrize("what", list(ATTEMPTS))
async def test_a_call_that_cannot_be_stored_raises_terminal_error_at_the_call(what: str) -> None:
    response = await invoke([caller_service(), callee, flow], request("Caller", "attempt", what))
    outcome = response["outcome"]
    assert outcome["kind"] == "completed", outcome  # not a retry
    assert outcome["value"].startswith("400: "), outcome
    assert MESSAGES.get(what, "") in outcome["value"]
    assert [c["kind"] for c in response["commands"]] == ["output"]  # nothing else journaled


async def test_state_that_cannot_be_stored_raises_at_the_call() -> None:
    obj = tarry.VirtualObject("Obj")

    @obj.handler()
    async def put(ctx: ObjectContext, what: str) -> str:
        try:
            if what == "long name":
                ctx.set("n" * (MAX_STATE_NAME_BYTES + 1), 1)
            elif what == "nan":
                ctx.set("v", float("nan"))
            elif what == "long get":
                await ctx.get("n" * (MAX_STATE_NAME_BYTES + 1))
            else:
                ctx.clear("n" * (MAX_STATE_NAME_BYTES + 1))
        except TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "not refused"

    for what, words in [("long name", "the state name is 257 bytes"),
                        ("nan", "the value of state v is not JSON"),
                        ("long get", "the state name is 257 bytes"),
                        ("long clear", "the state name is 257 bytes")]:  # fmt: skip
        response = await invoke(obj, request("Obj", "put", what, key="k", state={}))
        assert response["outcome"]["kind"] == "completed"
        assert response["outcome"]["value"].startswith(f"400: {words}"), response["outcome"]
        assert [c["kind"] for c in response["commands"]] == ["output"]


async def test_a_promise_name_over_the_limit_raises_at_the_call() -> None:
    wf = tarry.Workflow("Wf")

    @wf.main()
    async def run(ctx: WorkflowContext) -> str:
        try:
            ctx.promise("p" * (MAX_STATE_NAME_BYTES + 1)).resolve(1)
        except TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "not refused"

    req = request("Wf", "run", key="k", state={})
    req["promises"] = {}
    response = await invoke(wf, req)
    assert response["outcome"]["value"].startswith("400: the promise name is 257 bytes")


async def test_a_result_that_is_not_json_fails_the_invocation_terminally() -> None:
    response = await invoke(caller_service(), request("Caller", "returns_nan"))
    assert response["outcome"]["kind"] == "failed"
    failure = response["outcome"]["failure"]
    assert failure["message"] == (
        "the handler's result is not JSON: NaN and Infinity are not JSON numbers"
    )


async def test_a_step_result_that_is_not_json_fails_the_step_not_retried() -> None:
    channel = MemoryChannel()
    req = request("Caller", "run_returns_inf", checkpoint="channel")
    response = await invoke(caller_service(), req, channel)
    assert response["outcome"]["kind"] == "completed"
    assert response["outcome"]["value"] == (
        "500: the result of run 'inf' is not JSON: NaN and Infinity are not JSON numbers"
    )
    assert channel.completions["1"]["failure"]["code"] == 500  # the step failed, durably


async def test_a_replayed_sleep_keeps_its_wake_time_whatever_the_duration_is_now() -> None:
    # First run: a sleep 10 s ahead; the replay computes a negative duration (the clock moved
    # on): the journaled wake time stands, nothing is refused.
    first = await invoke(caller_service(), request("Caller", "sleeps_till", T0 + 10_000))
    (sleep,) = first["commands"]
    assert sleep["wake_at"] == T0 + 10_000
    replay = request("Caller", "sleeps_till", T0 - 5_000, journal=[sleep],
                     completions={"1": {"value": None}})  # fmt: skip
    again = await invoke(caller_service(), replay)
    assert again["outcome"] == {"kind": "completed", "value": "woke"}


async def test_the_sdk_http_endpoint_answers_400_to_a_request_nested_too_deeply() -> None:
    import httpx

    transport = httpx.ASGITransport(app=tarry.app([caller_service()]))
    async with httpx.AsyncClient(transport=transport, base_url="http://deployment") as client:
        reply = await client.post("/invoke/Caller/attempt", content=b"[" * 100_000)
    assert reply.status_code == 400, reply.text  # a RecursionError, and a 500, before
    assert "nests too deeply" in reply.json()["error"]["message"]


def test_names_over_the_limit_are_refused_where_they_are_defined() -> None:
    with pytest.raises(ValueError, match="the service name is 65 bytes long; at most 64"):
        tarry.Service("S" * 65)
    svc = tarry.Service("S" * 64)
    with pytest.raises(ValueError, match="the handler name is 65 bytes long"):

        @svc.handler(name="h" * 65)
        async def h(ctx: Context) -> None:
            return None
