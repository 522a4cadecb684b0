"""Handlers that make values of a given size: for the limit on what a store keeps (served
in-process, or by uvicorn as an HTTP deployment)."""

import tarry
from tarry import Context, ObjectContext

sizes = tarry.Service("Sizes")


@sizes.handler()
async def step(ctx: Context, size: int) -> int:
    """A small step, then a step whose result is a string of ``size`` characters."""
    await ctx.run("small", lambda: "small")
    big: str = await ctx.run("big", lambda: "x" * size)
    return len(big)


@sizes.handler()
async def output(ctx: Context, size: int) -> str:
    """A result of ``size`` characters."""
    return "x" * size


@sizes.handler()
async def measure(ctx: Context, text: str) -> int:
    """The length of its input."""
    return len(text)


box = tarry.VirtualObject("Box")


@box.handler()
async def put(ctx: ObjectContext, size: int) -> int:
    """Sets a small entry, then one of ``size`` characters."""
    ctx.set("small", "written first")
    ctx.set("big", "x" * size)
    return size


@box.handler()
async def wait(ctx: ObjectContext) -> int:
    """Waits on an awakeable (its id in state "awakeable"); returns the length of its value."""
    awakeable_id, done = ctx.awakeable()
    ctx.set("awakeable", awakeable_id)
    value: str = await done
    return len(value)


app = tarry.app([sizes, box])
