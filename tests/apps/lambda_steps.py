"""Handlers for the Lambda tests on MiniStack, packaged with `tarry lambda package`.

The function's ``handler`` wraps tarry's and notes each invoke in ``INVOKES_FILE`` (one JSON
line: the message kind and how many transactions the function wrote to DynamoDB itself during
it), so a test counts Lambda invocations and DynamoDB writes. Each step appends its name to
``STEPS_FILE``. With ``CRASH_FILE`` present, the function itself raises (as a Lambda function
that falls over does) instead of answering.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import tarry
from tarry.lambda_adapter import lambda_handler

steps = tarry.Service("Steps")


def _ran(name: str) -> None:
    with Path(os.environ["STEPS_FILE"]).open("a") as out:
        out.write(name + "\n")


@steps.handler()
async def noop(ctx: tarry.Context) -> None:
    return None


@steps.handler()
async def ten(ctx: tarry.Context) -> int:
    for i in range(10):
        await ctx.run(f"step {i}", lambda: None)
    return 10


@steps.handler()
async def many(ctx: tarry.Context, shape: dict[str, int]) -> int:
    """``before`` steps of ``size`` bytes, a durable sleep of ``sleep_ms``, ``after`` more;
    each step takes ``step_ms``."""
    total = 0
    for i in range(shape["before"] + shape.get("after", 0)):

        async def step(i: int = i) -> str:
            await asyncio.sleep(shape.get("step_ms", 0) / 1000)
            _ran(f"{ctx.request().id} {i}")
            return "x" * shape.get("size", 1)

        total += len(await ctx.run(f"step {i}", step))
        if i + 1 == shape["before"] and "sleep_ms" in shape:
            await ctx.sleep(timedelta(milliseconds=shape["sleep_ms"]))
    return total


@steps.handler()
async def flaky(ctx: tarry.Context) -> str:
    """Fails its first attempt with a plain exception (retried with backoff), then answers."""
    ran = Path(os.environ["STEPS_FILE"])
    if not ran.exists() or "flaky failed" not in ran.read_text():
        _ran("flaky failed")
        raise ValueError("the first attempt fails")
    return "recovered"


_tarry = lambda_handler([steps])


def handler(event: Any, context: Any) -> Any:
    if "invocation_id" in event and Path(os.environ.get("CRASH_FILE", "/nonexistent")).exists():
        raise RuntimeError("the function fell over")
    before = _tarry.journal_table.writes
    answer = _tarry(event, context)
    kind = "discover" if "invocation_id" not in event else event["handler"]
    with Path(os.environ["INVOKES_FILE"]).open("a") as out:
        out.write(json.dumps({"kind": kind, "writes": _tarry.journal_table.writes - before}) + "\n")
    return answer
