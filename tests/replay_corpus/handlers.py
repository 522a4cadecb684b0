"""The handlers the replay corpus was recorded from (``generate.py``), and that every later
version of the SDK replays it against (``test_replay_corpus.py``).

NEVER change a handler here, nor what it calls: the corpus checks the SDK, and a changed handler
would check the handler instead (``test_divergence.py`` changes copies of them on purpose). A
later version that needs more adds new handlers, and new corpus files recorded from them.

Together they make every kind of command: run (a value, a terminal failure, at most once), the
time, sleep, call, send (delayed too), attach, cancel, state get/set/clear/clear-all/keys,
awakeable and complete_awakeable, durable promise get/peek/complete, gather and select.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import tarry
from tarry import Context, ObjectContext, TerminalError

# What step bodies ran in this process, "invocation id/step", and the steps a store-corpus
# generator keeps waiting (so that the invocation is stored mid-way): name -> event.
RAN: list[str] = []
GATES: dict[str, asyncio.Event] = {}


async def _body(ctx: Context, step: str, value: Any) -> Any:
    RAN.append(f"{ctx.request().id}/{step}")
    gate = GATES.get(step)
    if gate is not None:
        await gate.wait()
    return value


def _refuse() -> str:
    raise TerminalError("refused, for the corpus", status_code=422)


corpus = tarry.Service("Corpus")


@corpus.handler()
async def steps(ctx: Context, name: str) -> dict[str, Any]:
    """Steps: a value, a terminal failure it catches, one at most once, the time, a sleep,
    and deterministic randomness."""
    hello = await ctx.run("hello", _body, ctx, "hello", f"Hello {name}!")
    try:
        await ctx.run("refuse", _refuse)
        refused = ""
    except TerminalError as exc:
        refused = f"{exc.status_code} {exc.message}"
    once = await ctx.run("once", _body, ctx, "once", "done once", at_most_once=True)
    now = await ctx.time()
    await ctx.sleep(timedelta(milliseconds=5), name="nap")
    return {"hello": hello, "refused": refused, "once": once, "now": now,
            "pick": ctx.random().randint(0, 1_000_000), "uuid": str(ctx.uuid())}  # fmt: skip


@corpus.handler()
async def echo(ctx: Context, text: str) -> str:
    return text


@corpus.handler()
async def calls(ctx: Context, key: str) -> dict[str, Any]:
    """Calls and sends: an object call, a service call, a delayed send it attaches to, a send
    by name, gather and select."""
    total = await ctx.object_call(add, key=key, arg=2)
    later = ctx.object_send(add, key=key, arg=3, delay=timedelta(milliseconds=5))
    echoed = await ctx.service_call(echo, "hi")
    ctx.generic_send("Corpus", "echo", "bye")
    attached = await ctx.attach_invocation(later.invocation_id)
    both = await tarry.gather(ctx.run("a", _body, ctx, "a", 1), ctx.run("b", _body, ctx, "b", 2))
    winner, _ = await tarry.select(slow=ctx.sleep(timedelta(seconds=30)),
                                   fast=ctx.service_call(echo, "fast"))  # fmt: skip
    return {"total": total, "echoed": echoed, "attached": attached, "both": both,
            "winner": winner}  # fmt: skip


@corpus.handler()
async def awaits(ctx: Context) -> str:
    """An awakeable that another handler resolves (its complete_awakeable)."""
    awakeable_id, done = ctx.awakeable()
    ctx.service_send(resolver, awakeable_id)
    value: str = await done
    return value


@corpus.handler()
async def resolver(ctx: Context, awakeable_id: str) -> str:
    await ctx.resolve_awakeable(awakeable_id, "resolved by another handler")
    return "resolved"


@corpus.handler()
async def held(ctx: Context) -> str:
    """An awakeable nobody here resolves: a store corpus invocation waits on it."""
    _, done = ctx.awakeable()
    value: str = await done
    return f"woken with {value}"


@corpus.handler()
async def cancels(ctx: Context) -> str:
    """Starts a long sleeper, cancels it, and reads how it ended."""
    sleeper = ctx.service_send(sleeps, 3600)
    ctx.cancel_invocation(sleeper.invocation_id)
    try:
        await ctx.attach_invocation(sleeper.invocation_id)
    except TerminalError as exc:
        return f"{exc.status_code} {exc.message}"
    return "not cancelled"


@corpus.handler()
async def sleeps(ctx: Context, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "slept"


@corpus.handler()
async def chain(ctx: Context, n: int) -> list[str]:
    """``n`` steps in a row, the last at most once."""
    out = []
    for i in range(n):
        out.append(await ctx.run(f"step-{i}", _body, ctx, f"step-{i}", f"step-{i}",
                                 at_most_once=i == n - 1))  # fmt: skip
    return out


@corpus.handler()
async def calls_held(ctx: Context, key: str) -> str:
    """Calls an object handler that waits on an awakeable."""
    value: str = await ctx.object_call(hold, key=key)
    return f"the call returned {value}"


ledger = tarry.VirtualObject("Ledger")


@ledger.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    total: int = await ctx.get("total") or 0
    ctx.set("total", total + n)
    ctx.set("last", n)
    await ctx.state_keys()
    return total + n


@ledger.handler()
async def reset(ctx: ObjectContext) -> list[str]:
    ctx.clear("last")
    ctx.clear_all()
    return await ctx.state_keys()


@ledger.handler()
async def hold(ctx: ObjectContext) -> str:
    """Keeps the key while it waits on an awakeable; its id is in state "awakeable"."""
    awakeable_id, done = ctx.awakeable()
    ctx.set("awakeable", awakeable_id)
    value: str = await done
    ctx.set("held", value)
    return value


@ledger.handler(kind="shared")
async def peek(ctx: tarry.ObjectSharedContext) -> Any:
    return await ctx.get("total")


signup = tarry.Workflow("Signup")


@signup.main()
async def run(ctx: tarry.WorkflowContext, email: str) -> str:
    ctx.set("email", email)
    early = await ctx.promise("verified").peek()
    code = await ctx.promise("verified").value()
    later = await ctx.promise("verified").peek()
    return f"{email} verified with {code} (peeked {early}, then {later})"


@signup.handler()
async def verify(ctx: tarry.WorkflowSharedContext, code: str) -> str:
    await ctx.promise("verified").resolve(code)
    return "verified"


SERVICES = [corpus, ledger, signup]
