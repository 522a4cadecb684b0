"""Handlers for the duplicate-delivery tests (tests/fault/test_duplicates.py), served with
`tarry dev`: a service, an object and a workflow. Each answers with a nonce drawn in a journaled
step, so a second invocation of one request would answer differently; given ``{"gate": PATH}``
it first waits, in a step, until the file PATH exists (touching ``PATH.entered`` when it
starts waiting), so the test can hold it in flight while it kills the runtime."""

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import tarry
from tarry import Context, ObjectContext, TerminalError, WorkflowContext


async def _gate(path: str | None) -> None:
    if path is None:
        return
    Path(path + ".entered").touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TerminalError(f"{path} did not appear in 60 s")
        await asyncio.sleep(0.02)


async def _answer(ctx: Context | ObjectContext | WorkflowContext, arg: Any) -> dict[str, Any]:
    await ctx.run("gate", _gate, arg.get("gate") if isinstance(arg, dict) else None)
    nonce: str = await ctx.run("nonce", lambda: uuid.uuid4().hex)
    return {"arg": arg, "nonce": nonce}


service = tarry.Service("Dup")


@service.handler()
async def echo(ctx: Context, arg: Any) -> dict[str, Any]:
    return await _answer(ctx, arg)


counted = tarry.VirtualObject("DupObject")


@counted.handler()
async def bump(ctx: ObjectContext, arg: Any) -> dict[str, Any]:
    """Counts its runs in the object's state: a duplicate invocation would count 2."""
    answer = await _answer(ctx, arg)
    count: int = ((await ctx.get("count")) or 0) + 1
    ctx.set("count", count)
    return {**answer, "count": count}


flow = tarry.Workflow("DupFlow")


@flow.main()
async def run(ctx: WorkflowContext, arg: Any) -> dict[str, Any]:
    return await _answer(ctx, arg)


app = tarry.app([service, counted, flow])
