"""An object and a workflow that report the key they run for and keep a value under it: for
the property tests of keys (served in-process, or with `tarry dev`)."""

from typing import Any

import tarry
from tarry import ObjectContext, ObjectSharedContext, WorkflowContext

keys = tarry.VirtualObject("Keys")


@keys.handler()
async def put(ctx: ObjectContext, value: str) -> str:
    """Keeps ``value`` under this key; returns the key as the handler sees it."""
    ctx.set("v", value)
    return ctx.key()


@keys.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> dict[str, Any]:
    return {"key": ctx.key(), "v": await ctx.get("v")}


flow = tarry.Workflow("KeyFlow")


@flow.main()
async def run(ctx: WorkflowContext, value: str) -> str:
    ctx.set("v", value)
    return ctx.key()


app = tarry.app([keys, flow])
