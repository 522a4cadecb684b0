"""The replay engine without I/O, continued: what a handler waits for that the outside world
completes — awakeables, durable promises, attached invocations — and cancellation seen at an
await."""

import base64
from datetime import timedelta
from typing import Any

import tarry
from tarry import Context, ObjectContext, TerminalError, WorkflowContext, WorkflowSharedContext
from tarry.protocol import (
    CANCELLED,
    Command,
    Completion,
    InvokeRequest,
    authentic_awakeable_id,
    parse_awakeable_id,
)
from tarry.protocol import awakeable_id as make_awakeable_id

from .fakes import INVOCATION_ID, SECRET, T0, MemoryChannel, invoke, request

# -- awakeables ----------------------------------------------------------------------------


def awakeable_service() -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def wait(ctx: Context) -> Any:
        awk_id, approved = ctx.awakeable(int)
        try:
            return [awk_id, await approved]
        except TerminalError as exc:
            return [awk_id, f"failed {exc.status_code}: {exc.message}"]

    @svc.handler()
    async def after_a_step(ctx: Context) -> str:
        async def step() -> int:
            return 1

        await ctx.run("step", step)
        awk_id, _ = ctx.awakeable()
        return awk_id

    @svc.handler()
    async def approve(ctx: Context, awk_id: str) -> Any:
        try:
            await ctx.resolve_awakeable(awk_id, {"ok": True})
        except TerminalError as exc:
            return f"failed {exc.status_code}: {exc.message}"
        return "resolved"

    @svc.handler()
    async def deny(ctx: Context, awk_id: str) -> str:
        ctx.reject_awakeable(awk_id, "denied", code=403)  # not awaited: fire and forget
        return "rejected"

    return svc


def awakeable_command(index: int = 1) -> Command:
    awk_id = make_awakeable_id(INVOCATION_ID, index, SECRET)
    return {"kind": "awakeable", "name": "", "awakeable_id": awk_id}


async def test_an_awakeable_is_journaled_with_an_id_naming_its_entry_and_suspends() -> None:
    response = await invoke(awakeable_service(), request("S", "wait"))
    (command,) = response["commands"]
    assert command == awakeable_command(1)
    assert parse_awakeable_id(command["awakeable_id"]) == (INVOCATION_ID, 1)
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}


async def test_an_awakeables_id_is_the_same_on_every_replay() -> None:
    journal = [{"kind": "run", "name": "step"}]
    req = request("S", "after_a_step", journal=journal, completions={"1": {"value": 1}})
    first = await invoke(awakeable_service(), req)
    again = await invoke(awakeable_service(), req)
    assert first["outcome"] == again["outcome"]
    awk_id = first["outcome"]["value"]
    assert parse_awakeable_id(awk_id) == (INVOCATION_ID, 2)
    assert first["commands"][0] == awakeable_command(2)


async def test_awakeable_ids_of_other_invocations_or_entries_are_unrelated() -> None:
    """Each id carries a MAC keyed with its invocation's secret: knowing one id, or the
    invocation id, tells nothing of another's."""
    other_secret = "1" * 64
    ids = {
        (inv, index, secret): make_awakeable_id(inv, index, secret)
        for inv in (INVOCATION_ID, "inv_other")
        for index in (1, 2)
        for secret in (SECRET, other_secret)
    }
    assert len(set(ids.values())) == len(ids)
    tags = {awk: base64_tag(awk) for awk in ids.values()}
    assert len(set(tags.values())) == len(ids)  # no two share their MAC, not even in part
    for a in tags.values():
        for b in tags.values():
            if a is not b:
                assert sum(x == y for x, y in zip(a, b, strict=True)) < 8
    for (inv, index, _), awk in ids.items():
        assert parse_awakeable_id(awk) == (inv, index)
        assert authentic_awakeable_id(awk, SECRET) == (awk in (ids[inv, index, SECRET],))
    # the id of a replayed attempt is the id its first attempt handed out
    first = await invoke(awakeable_service(), request("S", "wait"))
    replayed = request("S", "wait", journal=first["commands"], completions={"1": {"value": 3}})
    awk_id = (await invoke(awakeable_service(), replayed))["outcome"]["value"][0]
    assert awk_id == first["commands"][0]["awakeable_id"] == ids[INVOCATION_ID, 1, SECRET]


def base64_tag(awk: str) -> bytes:
    body = awk.removeprefix("awk_2")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:16]


async def test_an_awakeable_is_replayed_with_the_id_recorded_even_in_an_older_format() -> None:
    old = "awk_1" + base64.urlsafe_b64encode(f"{INVOCATION_ID}:1".encode()).decode().rstrip("=")
    recorded: Command = {"kind": "awakeable", "name": "", "awakeable_id": old}
    req = request("S", "wait", journal=[recorded], completions={"1": {"value": 5}})
    assert (await invoke(awakeable_service(), req))["outcome"]["value"] == [old, 5]


async def test_without_the_runtimes_secret_no_awakeable_is_made() -> None:
    response = await invoke(awakeable_service(), request("S", "wait", secret=None))
    assert response["commands"] == []
    assert response["outcome"]["kind"] == "retry"
    assert "no secret" in response["outcome"]["error"]


async def test_a_completed_awakeable_returns_its_value() -> None:
    req = request("S", "wait", journal=[awakeable_command()], completions={"1": {"value": 7}})
    response = await invoke(awakeable_service(), req)
    awk_id = make_awakeable_id(INVOCATION_ID, 1, SECRET)
    assert response["outcome"] == {"kind": "completed", "value": [awk_id, 7]}
    assert response["commands"] == [{"kind": "output", "value": [awk_id, 7]}]


async def test_a_rejected_awakeable_raises_a_terminal_error() -> None:
    failure: Completion = {"failure": {"code": 403, "message": "denied"}}
    req = request("S", "wait", journal=[awakeable_command()], completions={"1": failure})
    response = await invoke(awakeable_service(), req)
    awk_id = make_awakeable_id(INVOCATION_ID, 1, SECRET)
    assert response["outcome"] == {"kind": "completed", "value": [awk_id, "failed 403: denied"]}


async def test_resolve_awakeable_journals_its_completion_and_waits_for_the_outcome() -> None:
    awk_id = make_awakeable_id("inv_other", 3, "1" * 64)
    response = await invoke(awakeable_service(), request("S", "approve", awk_id))
    assert response["commands"] == [
        {
            "kind": "complete_awakeable",
            "name": awk_id,
            "awakeable_id": awk_id,
            "completion": {"value": {"ok": True}},
        }
    ]
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}

    done = request("S", "approve", awk_id, journal=response["commands"], completions={"1": {}})
    assert (await invoke(awakeable_service(), done))["outcome"] == {
        "kind": "completed",
        "value": "resolved",
    }
    late: Completion = {"failure": {"code": 409, "message": "already completed"}}
    req = request("S", "approve", awk_id, journal=response["commands"], completions={"1": late})
    assert (await invoke(awakeable_service(), req))["outcome"] == {
        "kind": "completed",
        "value": "failed 409: already completed",
    }


async def test_reject_awakeable_journals_a_failure_and_need_not_be_awaited() -> None:
    awk_id = make_awakeable_id("inv_other", 3, "1" * 64)
    response = await invoke(awakeable_service(), request("S", "deny", awk_id))
    assert response["commands"] == [
        {
            "kind": "complete_awakeable",
            "name": awk_id,
            "awakeable_id": awk_id,
            "completion": {"failure": {"code": 403, "message": "denied"}},
        },
        {"kind": "output", "value": "rejected"},
    ]
    assert response["outcome"] == {"kind": "completed", "value": "rejected"}


# -- durable promises ----------------------------------------------------------------------


def workflow() -> tarry.Workflow:
    wf = tarry.Workflow("Wf")

    @wf.main()
    async def run(ctx: WorkflowContext) -> Any:
        try:
            return await ctx.promise("approved", bool).value()
        except TerminalError as exc:
            return f"failed {exc.status_code}: {exc.message}"

    @wf.handler()
    async def peek(ctx: WorkflowSharedContext) -> Any:
        return await ctx.promise("approved").peek()

    @wf.handler()
    async def approve(ctx: WorkflowSharedContext) -> str:
        await ctx.promise("approved").resolve(True)
        return "approved"

    @wf.handler()
    async def deny(ctx: WorkflowSharedContext) -> str:
        ctx.promise("approved").reject("no", code=403)
        return "denied"

    return wf


def workflow_request(
    handler: str, promises: dict[str, Completion] | None = None, **fields: Any
) -> InvokeRequest:
    req = request("Wf", handler, key="k", state={}, **fields)
    if promises is not None:
        req["promises"] = promises
    return req


async def test_a_promise_the_attempt_knows_completes_without_suspending() -> None:
    req = workflow_request("run", promises={"approved": {"value": True}})
    response = await invoke(workflow(), req)
    assert response["outcome"] == {"kind": "completed", "value": True}
    assert [c["kind"] for c in response["commands"]] == ["get_promise", "output"]
    assert response["commands"][0] == {"kind": "get_promise", "name": "approved"}


async def test_a_promise_not_yet_completed_suspends() -> None:
    other: dict[str, Completion] = {"other": {"value": 1}}
    for promises in (None, {}, other):
        response = await invoke(workflow(), workflow_request("run", promises=promises))
        assert response["commands"] == [{"kind": "get_promise", "name": "approved"}]
        assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}


async def test_a_promise_completed_while_suspended_is_seen_on_replay() -> None:
    journal: list[Any] = [{"kind": "get_promise", "name": "approved"}]
    req = workflow_request("run", journal=journal, completions={"1": {"value": False}})
    response = await invoke(workflow(), req)
    assert response["outcome"] == {"kind": "completed", "value": False}
    assert response["commands"] == [{"kind": "output", "value": False}]


async def test_a_rejected_promise_raises_a_terminal_error() -> None:
    req = workflow_request(
        "run", promises={"approved": {"failure": {"code": 403, "message": "no"}}}
    )
    response = await invoke(workflow(), req)
    assert response["outcome"] == {"kind": "completed", "value": "failed 403: no"}


async def test_peek_returns_none_or_the_value_and_is_journaled() -> None:
    response = await invoke(workflow(), workflow_request("peek", promises={}))
    assert response["commands"] == [
        {"kind": "peek_promise", "name": "approved"},
        {"kind": "output", "value": None},
    ]
    assert response["outcome"] == {"kind": "completed", "value": None}

    known: dict[str, Completion] = {"approved": {"value": True}}
    response = await invoke(workflow(), workflow_request("peek", promises=known))
    assert response["commands"] == [
        {"kind": "peek_promise", "name": "approved", "completion": {"value": True}},
        {"kind": "output", "value": True},
    ]
    assert response["outcome"] == {"kind": "completed", "value": True}


async def test_a_replayed_peek_returns_what_it_saw_then() -> None:
    # Peeked before the promise was resolved; resolved since: the replay still sees None.
    journal: list[Any] = [{"kind": "peek_promise", "name": "approved"}]
    known: dict[str, Completion] = {"approved": {"value": True}}
    response = await invoke(workflow(), workflow_request("peek", promises=known, journal=journal))
    assert response["outcome"] == {"kind": "completed", "value": None}
    assert response["commands"] == [{"kind": "output", "value": None}]


async def test_resolve_and_reject_journal_the_completion_of_a_promise() -> None:
    response = await invoke(workflow(), workflow_request("approve", promises={}))
    assert response["commands"] == [
        {"kind": "complete_promise", "name": "approved", "completion": {"value": True}}
    ]
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}

    late: Completion = {"failure": {"code": 409, "message": "promise 'approved' was completed"}}
    req = workflow_request("approve", journal=response["commands"], completions={"1": late})
    response = await invoke(workflow(), req)
    assert response["outcome"] == {
        "kind": "failed",
        "failure": {"code": 409, "message": "promise 'approved' was completed"},
    }

    response = await invoke(workflow(), workflow_request("deny", promises={}))
    assert response["commands"] == [
        {
            "kind": "complete_promise",
            "name": "approved",
            "completion": {"failure": {"code": 403, "message": "no"}},
        },
        {"kind": "output", "value": "denied"},
    ]


async def test_promises_are_refused_outside_workflow_handlers() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> Any:
        return await ctx.promise("p").value()  # type: ignore[attr-defined]

    obj = tarry.VirtualObject("O")

    @obj.handler()
    async def o(ctx: ObjectContext) -> Any:
        return await ctx.promise("p").peek()  # type: ignore[attr-defined]

    for definition, req in (
        (svc, request("S", "h")),
        (obj, request("O", "o", key="k", state={})),
    ):
        req["promises"] = {"p": {"value": 1}}  # even if a request carried some
        response = await invoke(definition, req)
        assert response["outcome"]["kind"] == "retry"
        assert "only available to workflow handlers" in response["outcome"]["error"]
        assert response["commands"] == []


# -- attach and cancel ---------------------------------------------------------------------


def controller() -> tarry.Service:
    svc = tarry.Service("C")

    @svc.handler()
    async def attach(ctx: Context, target: str) -> Any:
        return await ctx.attach_invocation(target)

    @svc.handler()
    async def cancel(ctx: Context, target: str) -> str:
        ctx.cancel_invocation(target)
        return "asked"

    return svc


async def test_attach_invocation_journals_attach_and_suspends_until_the_result() -> None:
    response = await invoke(controller(), request("C", "attach", "inv_other"))
    assert response["commands"] == [
        {"kind": "attach", "name": "inv_other", "invocation_id": "inv_other"}
    ]
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}
    attached = response["commands"]

    done = {"1": {"value": {"n": 3}}}
    req = request("C", "attach", "inv_other", journal=attached, completions=done)
    response = await invoke(controller(), req)
    assert response["outcome"] == {"kind": "completed", "value": {"n": 3}}

    missing = {"1": {"failure": {"code": 404, "message": "no invocation inv_other"}}}
    req = request("C", "attach", "inv_other", journal=attached, completions=missing)
    response = await invoke(controller(), req)
    assert response["outcome"] == {
        "kind": "failed",
        "failure": {"code": 404, "message": "no invocation inv_other"},
    }


async def test_cancel_invocation_is_journaled_and_does_not_wait() -> None:
    response = await invoke(controller(), request("C", "cancel", "inv_other"))
    assert response["commands"] == [
        {"kind": "cancel_invocation", "name": "inv_other", "invocation_id": "inv_other"},
        {"kind": "output", "value": "asked"},
    ]
    assert response["outcome"] == {"kind": "completed", "value": "asked"}


# -- cancellation at an await --------------------------------------------------------------


def saga() -> tarry.Service:
    svc = tarry.Service("Saga")

    @svc.handler()
    async def book(ctx: Context) -> str:
        async def reserve() -> str:
            return "seat 12"

        async def release() -> str:
            return "released"

        seat = await ctx.run("reserve", reserve)
        try:
            _, confirmed = ctx.awakeable()
            await confirmed
            await ctx.sleep(timedelta(hours=1))
        except TerminalError as exc:
            if exc.status_code != 409:
                raise
            undone = await ctx.run("release", release)
            return f"{exc.message}: {seat} {undone}"
        return f"booked {seat}"

    return svc


def saga_journal() -> list[Any]:
    return [{"kind": "run", "name": "reserve"}, awakeable_command(2)]


async def test_a_cancelled_await_raises_409_and_the_handler_can_compensate() -> None:
    cancelled: dict[str, Any] = {"1": {"value": "seat 12"}, "2": {"failure": CANCELLED}}
    channel = MemoryChannel()
    req = request(
        "Saga", "book", journal=saga_journal(), completions=cancelled, checkpoint="channel"
    )
    response = await invoke(saga(), req, channel)
    assert response["outcome"] == {"kind": "completed", "value": "cancelled: seat 12 released"}
    assert channel.commands == [{"kind": "run", "name": "release"}]
    assert channel.completions == {"3": {"value": "released"}}
    assert response["commands"] == [{"kind": "output", "value": "cancelled: seat 12 released"}]


async def test_a_cancelled_sleep_is_caught_like_any_other_await() -> None:
    journal = [*saga_journal(), {"kind": "sleep", "name": "", "wake_at": T0 + 3_600_000}]
    done: dict[str, Any] = {
        "1": {"value": "seat 12"},
        "2": {"value": None},
        "3": {"failure": CANCELLED},
    }
    response = await invoke(saga(), request("Saga", "book", journal=journal, completions=done))
    # request/response mode: the compensation's result is flushed first, then the replay ends
    assert response["outcome"] == {"kind": "flush"}
    assert response["commands"] == [{"kind": "run", "name": "release"}]
    assert response["completions"] == {"4": {"value": "released"}}

    journal.append({"kind": "run", "name": "release"})
    done["4"] = {"value": "released"}
    response = await invoke(saga(), request("Saga", "book", journal=journal, completions=done))
    assert response["outcome"] == {"kind": "completed", "value": "cancelled: seat 12 released"}


async def test_an_uncaught_cancel_fails_the_invocation_with_409() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> None:
        await ctx.sleep(timedelta(seconds=1))

    journal = [{"kind": "sleep", "name": "", "wake_at": T0 + 1_000}]
    req = request("S", "h", journal=journal, completions={"1": {"failure": CANCELLED}})
    response = await invoke(svc, req)
    assert response["outcome"] == {"kind": "failed", "failure": CANCELLED}
    assert response["commands"] == [{"kind": "output", "failure": CANCELLED}]
