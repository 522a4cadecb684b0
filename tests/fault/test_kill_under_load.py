"""Kill the runtime twice while clients hammer object keys; idempotent retries make every add
count exactly once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess

pytestmark = pytest.mark.fault

KEYS = 20
ADDS = 20


async def _add_until_answered(client: httpx.AsyncClient, p: TarryProcess, key: str, i: int) -> int:
    """One add(1) with an idempotency key, retried across crashes until it answers (bounded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            reply = await client.post(
                f"{p.ingress}/Counter/{key}/add",
                json=1,
                headers={"idempotency-key": f"{key}-{i}"},
            )
        except httpx.TransportError:
            await asyncio.sleep(0.05)  # the runtime is down: it comes back
            continue
        assert reply.status_code == 200, reply.text
        value: int = reply.json()
        return value
    raise AssertionError(f"add {key}-{i} never answered")


def test_every_add_counts_once_across_two_sigkills(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(str(ROOT / "examples" / "counter.py"), *store_args).start()
    answered = 0

    async def client_for(key: str, client: httpx.AsyncClient) -> list[int]:
        nonlocal answered
        values = []
        for i in range(ADDS):
            values.append(await _add_until_answered(client, p, key, i))
            answered += 1
        return values

    async def killer() -> None:
        for threshold in (KEYS * ADDS // 4, KEYS * ADDS // 2):
            while answered < threshold:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(p.kill)
            await asyncio.to_thread(p.start)

    async def run() -> list[list[int]]:
        limits = httpx.Limits(max_connections=KEYS * 2)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            clients = asyncio.gather(*(client_for(f"k{n}", client) for n in range(KEYS)))
            _, values = await asyncio.gather(killer(), clients)
            return list(values)

    per_key = asyncio.run(run())
    assert len(p.logs) == 3  # it really was killed and restarted twice
    for values in per_key:
        assert values == list(range(1, ADDS + 1))  # in order, each add exactly once
    for n in range(KEYS):
        assert httpx.post(f"{p.ingress}/Counter/k{n}/get").json() == ADDS
