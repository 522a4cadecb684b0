"""One handler that makes every kind of context call, with a result a test can predict: for
the functional suite, in the normal mode and suspending at every await."""

from datetime import timedelta
from typing import Any

import tarry
from tarry import Context, ObjectContext, TerminalError, WorkflowContext, WorkflowSharedContext
from tests.apps.testapp import add, counter

box = tarry.VirtualObject("TourBox")


@box.handler()
async def shuffle(ctx: ObjectContext) -> list[Any]:
    """Every state operation: set, keys, get, clear, clear_all."""
    ctx.set("a", 1)
    ctx.set("b", [2])
    names = await ctx.state_keys()
    b = await ctx.get("b")
    ctx.clear("a")
    after_clear = await ctx.state_keys()
    ctx.clear_all()
    return [names, b, after_clear, await ctx.state_keys(), await ctx.get("b")]


flow = tarry.Workflow("TourFlow")


@flow.main()
async def run(ctx: WorkflowContext, x: int) -> list[Any]:
    before = await ctx.promise("go").peek()
    value: int = await ctx.promise("go").value()
    ctx.set("seen", value)
    try:
        await ctx.promise("no").value()
    except TerminalError as exc:
        refused = exc.message
    return [before, value + x, await ctx.promise("go").peek(), refused]


@flow.handler()
async def approve(ctx: WorkflowSharedContext, value: int) -> None:
    await ctx.promise("go").resolve(value)
    await ctx.promise("no").reject("not this one", 400)


tour = tarry.Service("Tour")


@tour.handler()
async def resolver(ctx: Context, args: list[str]) -> None:
    await ctx.resolve_awakeable(args[0], args[1])


@tour.handler()
async def nap(ctx: Context, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "woke"


@tour.handler()
async def double(ctx: Context, n: int) -> int:
    return 2 * n


def _one() -> int:
    return 1


@tour.handler()
async def everything(ctx: Context, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    drawn = ctx.random().random(), str(ctx.uuid())
    out["run"] = await ctx.run("one", _one)
    out["gather"] = await tarry.gather(
        ctx.run("a", lambda: "a"), ctx.run("b", lambda: "b"), ctx.sleep(timedelta(0))
    )
    fast, slow = ctx.sleep(timedelta(milliseconds=5)), ctx.sleep(timedelta(days=1))
    out["select"] = (await tarry.select(fast=fast, slow=slow))[0]
    out["time"] = await ctx.time() > 0
    out["object_call"] = await ctx.object_call(add, key=key, arg=2)
    sent = ctx.object_send(add, key=key, arg=3)
    out["attach"] = await ctx.attach_invocation(sent.invocation_id)
    out["generic_call"] = await ctx.generic_call("Counter", "add", 4, key=key)
    out["service_call"] = await ctx.service_call(double, 21)
    out["generic_send"] = await ctx.attach_invocation(
        ctx.generic_send("Tour", "double", 5).invocation_id
    )
    out["state"] = await ctx.object_call(shuffle, key=f"{key}-state")

    awakeable_id, resolved = ctx.awakeable()
    ctx.service_send(resolver, [awakeable_id, "resolved"])
    out["awakeable"] = await resolved
    rejected_id, rejected = ctx.awakeable()
    await ctx.reject_awakeable(rejected_id, "rejected", 418)
    try:
        await rejected
    except TerminalError as exc:
        out["rejected"] = [exc.status_code, exc.message]
    try:
        await ctx.resolve_awakeable(rejected_id, "too late")
    except TerminalError as exc:
        out["too_late"] = exc.status_code
    third_id, third = ctx.awakeable()
    ctx.service_send(resolver, [third_id, "third"], delay=timedelta(milliseconds=5))
    out["select_awakeable"] = await tarry.select(
        awakeable=third, timeout=ctx.sleep(timedelta(days=1))
    )

    started = ctx.workflow_send(run, key=key, arg=1)
    await ctx.workflow_call(approve, key=key, arg=41)
    out["workflow"] = await ctx.attach_invocation(started.invocation_id)

    napping = ctx.service_send(nap, 3600.0)
    ctx.cancel_invocation(napping.invocation_id)
    try:
        await ctx.attach_invocation(napping.invocation_id)
    except TerminalError as exc:
        out["cancelled"] = [exc.status_code, exc.message]
    out["drawn_at_start"] = await ctx.run("drawn", lambda: list(drawn)) == list(drawn)
    return out


EXPECTED = {
    "run": 1,
    "gather": ["a", "b", None],
    "select": "fast",
    "time": True,
    "object_call": 2,
    "attach": 5,
    "generic_call": 9,
    "service_call": 42,
    "generic_send": 10,
    "state": [["a", "b"], [2], ["b"], [], None],
    "awakeable": "resolved",
    "rejected": [418, "rejected"],
    "too_late": 409,
    "select_awakeable": ["awakeable", "third"],
    "workflow": [None, 42, 41, "not this one"],
    "cancelled": [409, "cancelled"],
    "drawn_at_start": True,
}

app = tarry.app([counter, box, flow, tour])
