"""Services the integration and fault tests drive (served with `tarry dev`)."""

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

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


# An object whose `hold` keeps its key until an awakeable is completed: for kill, pause,
# cancel and state edits while the key is held.
holder = tarry.VirtualObject("Holder")


@holder.handler()
async def hold(ctx: ObjectContext) -> str:
    """Waits on an awakeable (its id in state "awakeable"); stores and returns its value."""
    awakeable_id, done = ctx.awakeable()
    ctx.set("awakeable", awakeable_id)
    value: str = await done
    ctx.set("value", value)
    return value


@holder.handler()
async def note(ctx: ObjectContext, text: str) -> str:
    ctx.set("note", text)
    return text


waits = tarry.Service("Waits")


def _wait_for_file(path: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TerminalError(f"{path} did not appear in {timeout} s")
        time.sleep(0.02)
    return True


@waits.handler()
async def early(ctx: Context) -> str:
    """Leaks its awakeable's id to $AWAKEABLE_FILE before the entry is stored (the step that
    follows holds the attempt until $GO_FILE exists), then awaits the awakeable."""
    awakeable_id, done = ctx.awakeable()
    Path(os.environ["AWAKEABLE_FILE"]).write_text(awakeable_id)
    await ctx.run("hold", _wait_for_file, os.environ["GO_FILE"])
    value: str = await done
    return value


@caller.handler()
async def call_hold(ctx: Context, key: str) -> str:
    value: str = await ctx.object_call(hold, key=key)
    return value


@caller.handler()
async def resolve(ctx: Context, args: list[str]) -> str:
    """Resolves awakeable ``args[0]`` with ``args[1]``: "ok", or the error as "CODE: message"."""
    try:
        await ctx.resolve_awakeable(args[0], args[1])
    except TerminalError as exc:
        return f"{exc.status_code}: {exc.message}"
    return "ok"


@caller.handler()
async def attach(ctx: Context, invocation_id: str) -> Any:
    return await ctx.attach_invocation(invocation_id)


blob = tarry.VirtualObject("Blob")


@blob.handler()
async def put(ctx: ObjectContext, size: int) -> int:
    """Stores a string of ``size`` characters (to try a store's size limits)."""
    ctx.set("small", "written first")
    ctx.set("blob", "x" * size)
    return size


naps = tarry.Service("Naps")


@naps.handler()
async def nap(ctx: Context, seconds: float) -> str:
    """A durable sleep: no compute while it lasts, and it survives a restart."""
    await ctx.sleep(timedelta(seconds=seconds))
    return f"slept {seconds:g} s"


@naps.handler()
async def busy(ctx: Context, seconds: float) -> str:
    """A step that takes ``seconds`` to run (an attempt in flight while the runtime stops)."""

    async def work() -> str:
        await asyncio.sleep(seconds)
        return "worked"

    return await ctx.run("work", work)


app = tarry.app([counter, flaky, steps, caller, holder, waits, blob, naps])

if os.environ.get("TESTAPP_MARKER"):
    Path(os.environ["TESTAPP_MARKER"]).write_text("loaded")
