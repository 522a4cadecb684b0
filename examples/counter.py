"""Counter: a virtual object. One exclusive handler runs at a time per key.

tarry dev examples/counter.py
curl localhost:8080/Counter/a/add --json 1
curl -X POST localhost:8080/Counter/a/get
"""

import tarry

counter = tarry.VirtualObject("Counter")


@counter.handler()
async def add(ctx: tarry.ObjectContext, delta: int) -> int:
    total: int = (await ctx.get("total")) or 0
    total += delta
    ctx.set("total", total)
    return total


@counter.handler(kind="shared")
async def get(ctx: tarry.ObjectSharedContext) -> int:
    return (await ctx.get("total")) or 0


@counter.handler()
async def reset(ctx: tarry.ObjectContext) -> None:
    ctx.clear_all()


app = tarry.app([counter])
