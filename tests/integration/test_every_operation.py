"""Every kind of context call in one invocation, its result checked against what it must be,
on every store. With ``--suspend-everywhere`` (tests/conftest.py) it runs again with the SDK
suspending at every await, so each of them is also replayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tarry.runtime.server import Runtime
from tests.apps.testapp import counter
from tests.apps.tour import EXPECTED, box, flow, tour
from tests.conftest import clients, suspending
from tests.contract.conftest import STORES

pytestmark = pytest.mark.integration


@pytest.fixture(params=list(STORES))
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with STORES[request.param](tmp_path) as store:
        runtime = Runtime(store)
        await runtime.start([counter, box, flow, tour])
        try:
            yield runtime
        finally:
            await runtime.stop()


async def test_every_context_operation(rt: Runtime) -> None:
    async with clients(rt) as (ingress, admin):
        reply = await ingress.post("/Tour/everything", json="k")
        assert reply.status_code == 200, reply.text
        assert reply.json() == EXPECTED
        assert (await ingress.post("/Counter/k/get")).json() == 9
        assert (await admin.get("/state/TourFlow/k")).json()["state"] == {"seen": 41}
        inv = (await admin.get(f"/invocations/{reply.headers['x-restate-id']}")).json()
    # In the normal mode its steps run on in the attempt that starts them; suspending
    # everywhere, awaiting each of them (run, time, the last run) ends an attempt too.
    if suspending():
        assert inv["attempts"] >= 19
    else:
        assert inv["attempts"] < 19
