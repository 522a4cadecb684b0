"""Services the integration and fault tests drive (served with `tarry dev`)."""

import os
from datetime import timedelta
from pathlib import Path

import tarry
from tarry import Context, ObjectContext, TerminalError

# The Counter of the examples, so calls between services can be tested here too.
counter = tarry.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    total: int = (await ctx.get("total")) or 0
    ctx.set("total", total + delta)
    return total + delta


@counter.handler(kind="shared")
async def get(ctx: tarry.ObjectSharedContext) -> int:
    return (await ctx.get("total")) or 0


flaky = tarry.Service("Flaky")
_failures: dict[str, int] = {}


@flaky.handler()
async def twice_then_ok(ctx: Context, name: str) -> str:
    """Raises a plain exception on its first two attempts, then succeeds."""
    seen = _failures.get(ctx.request().id, 0)
    if seen < 2:
        _failures[ctx.request().id] = seen + 1
        raise RuntimeError(f"transient failure {seen + 1}")
    return f"ok {name}"


@flaky.handler()
async def conflict(ctx: Context, name: str) -> str:
    raise TerminalError(f"{name} already exists", status_code=409)


def _append(path: str, line: str) -> str:
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


steps = tarry.Service("Steps")


@steps.handler()
async def chain(ctx: Context, n: int) -> list[str]:
    """n journaled side effects, each appending a line to $STEPS_FILE, a short sleep between."""
    out = []
    for i in range(n):
        out.append(await ctx.run(f"step-{i}", _append, os.environ["STEPS_FILE"], f"step-{i}"))
        await ctx.sleep(timedelta(milliseconds=300))
    return out


caller = tarry.Service("Caller")


@caller.handler()
async def add_twice(ctx: Context, key: str) -> list[int]:
    first = await ctx.object_call(add, key=key, arg=1)
    second = await ctx.object_call(add, key=key, arg=1)
    return [first, second]


@caller.handler()
async def send_later(ctx: Context, key: str) -> str:
    handle = ctx.object_send(add, key=key, arg=10, delay=timedelta(milliseconds=500))
    return handle.invocation_id


@caller.handler()
async def race(ctx: Context, ms: int) -> str:
    name, _ = await tarry.select(
        slow=ctx.sleep(timedelta(seconds=30)), fast=ctx.sleep(timedelta(milliseconds=ms))
    )
    return name


@caller.handler()
async def unknown(ctx: Context) -> str:
    try:
        await ctx.generic_call("Nope", "nothing", 1)
    except TerminalError as exc:
        return f"{exc.status_code}: {exc.message}"
    return "called"


@caller.handler()
async def send_unknown(ctx: Context) -> str:
    return ctx.generic_send("Nope", "nothing", 1).invocation_id


app = tarry.app([counter, flaky, steps, caller])

if os.environ.get("TESTAPP_MARKER"):
    Path(os.environ["TESTAPP_MARKER"]).write_text("loaded")
