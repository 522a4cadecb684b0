"""A service whose step stalls until the test lets it go: for attempt timeouts (served with
`tarry dev`, or by uvicorn as an HTTP deployment). Its files are in $STALLS_DIR."""

import asyncio
import os
from pathlib import Path

import tarry
from tarry import Context

stalls = tarry.Service("Stalls")


def _dir() -> Path:
    return Path(os.environ["STALLS_DIR"])


def _ran(name: str) -> int:
    """Note that step ``name`` ran; how many times it has."""
    with (_dir() / name).open("a") as f:
        f.write("ran\n")
    return len((_dir() / name).read_text().split())


async def _stall() -> int:
    """The n-th run of this step waits until the file go-n exists; returns n."""
    n = _ran("stall")
    while not (_dir() / f"go-{n}").exists():
        await asyncio.sleep(0.02)
    return n


@stalls.handler()
async def stall(ctx: Context) -> int:
    """A step, a step that stalls, a step: returns which run of the stalling step was stored."""
    await ctx.run("before", _ran, "before")
    n: int = await ctx.run("stall", _stall)
    await ctx.run("after", _ran, "after")
    return n


app = tarry.app([stalls])
