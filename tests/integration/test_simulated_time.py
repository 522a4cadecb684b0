"""The runtime in-process with an injected clock: a day-long sleep takes no real time, and a
timer never fires before its moment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import tarry
from tarry.runtime.server import Runtime
from tarry.runtime.store.sqlite import SQLiteStore

DAY_MS = 24 * 3600 * 1000

reminder = tarry.Service("Reminder")


@reminder.handler()
async def remind(ctx: tarry.Context, what: str) -> str:
    await ctx.sleep(timedelta(days=1))
    return f"don't forget {what}"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[Runtime, tarry.ManualClock]]:
    clock = tarry.ManualClock()
    rt = Runtime(SQLiteStore(tmp_path / "t.db"), clock=clock)
    await rt.start([reminder])
    yield rt, clock
    await rt.stop()


async def _status(rt: Runtime, invocation_id: str) -> str:
    inv = await rt.store.get(invocation_id)
    assert inv is not None
    return inv.status


async def test_a_day_long_sleep_in_simulated_time(
    runtime: tuple[Runtime, tarry.ManualClock],
) -> None:
    rt, clock = runtime
    transport = httpx.ASGITransport(app=rt.ingress_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as client:
        sent = await client.post("/Reminder/remind/send", json="milk")
        invocation_id = sent.json()["invocationId"]
        for _ in range(200):  # until the handler has journaled its sleep and suspended
            if await _status(rt, invocation_id) == "suspended":
                break
            await asyncio.sleep(0.01)
        assert await _status(rt, invocation_id) == "suspended"

        clock.advance(DAY_MS - 1)  # one millisecond short: the timer must not fire
        await asyncio.sleep(0.1)
        assert await _status(rt, invocation_id) == "suspended"

        clock.advance(1)
        finished = await asyncio.wait_for(rt.invoker.wait_finished(invocation_id), timeout=5)
        assert finished.completion == {"value": "don't forget milk"}
        assert finished.completed_at is not None
        assert finished.completed_at - finished.created_at == DAY_MS
