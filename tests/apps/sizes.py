"""Handlers that make values of a given size: for the limit on what a store keeps (served
in-process, or by uvicorn as an HTTP deployment)."""

import tarry
from tarry import Context
from tests.apps.testapp import blob  # Blob/put: a small state entry, then one of any size

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


app = tarry.app([sizes, blob])
