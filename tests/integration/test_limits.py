"""Sizes: a body over --max-body-bytes, and a value over what a store keeps (an input, a step's
result, a state entry, a completion, a result), are refused with 413 and a message naming the
limit, the same on every store, and nothing of them is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tarry.limits import MAX_VALUE_BYTES
from tarry.runtime.ingress import IngressConfig
from tarry.runtime.server import Runtime
from tests.apps.sizes import sizes
from tests.apps.testapp import blob, holder
from tests.conftest import TarryProcess, clients, uvicorn_app
from tests.contract.conftest import STORES

pytestmark = pytest.mark.integration

OVER = MAX_VALUE_BYTES + 1000  # a string this long makes a value over the limit
UNDER = MAX_VALUE_BYTES - 1000  # ... and this long, one within it (with its command around it)
BODY_LIMIT = 1_000_000


@pytest.fixture(params=list(STORES))
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with STORES[request.param](tmp_path) as store:
        runtime = Runtime(store, ingress=IngressConfig(max_body_bytes=BODY_LIMIT))
        await runtime.start([sizes, blob, holder])
        try:
            yield runtime
        finally:
            await runtime.stop()


async def _invocations(admin: httpx.AsyncClient) -> list[dict[str, object]]:
    found: list[dict[str, object]] = (await admin.get("/invocations")).json()["invocations"]
    return found


def _refused(reply: httpx.Response, *words: str) -> None:
    assert reply.status_code == 413, reply.text
    body = reply.json()
    assert body["code"] == 413
    for word in ("nothing was written", *words):
        assert word in body["message"], body["message"]


async def test_bodies_and_inputs_over_the_limits_store_nothing(rt: Runtime) -> None:
    async with clients(rt) as (ingress, admin):
        body = await ingress.post("/Sizes/output", json="x" * BODY_LIMIT)
        assert body.status_code == 413
        assert str(BODY_LIMIT) in body.json()["message"]
        # an input within the body limit but over what a store keeps: refused before it is
        # stored, on SQLite as on DynamoDB
        _refused(await ingress.post("/Sizes/measure", json="y" * OVER), "input of Sizes/measure")
        send = await ingress.post("/Sizes/measure/send", json="y" * OVER)
        _refused(send, "input of Sizes/measure")
        assert await _invocations(admin) == []
        assert (await admin.get("/state/Blob/k")).json()["state"] == {}


async def test_a_value_over_the_limit_fails_its_invocation_and_writes_nothing(
    rt: Runtime,
) -> None:
    async with clients(rt) as (ingress, admin):
        # a state entry: not even the small one set before it is kept, and the key is free
        _refused(await ingress.post("/Blob/k/put", json=OVER), "journal entry (set_state)")
        assert (await admin.get("/state/Blob/k")).json()["state"] == {}
        # a step's result: the step before it stays stored, the big one is not
        reply = await ingress.post("/Sizes/step", json=OVER)
        _refused(reply, "step result")
        inv = (await admin.get(f"/invocations/{reply.headers['x-restate-id']}")).json()
        assert inv["status"] == "completed"
        assert inv["attempts"] == 1  # failed at once, not retried
        assert [e["command"].get("name") for e in inv["journal"][1:]] == ["small"]
        # the result itself
        _refused(await ingress.post("/Sizes/output", json=OVER), "journal entry (output)")
        # values just within the limit are kept, and read back whole
        assert (await ingress.post("/Blob/k/put", json=UNDER)).json() == UNDER
        state = (await admin.get("/state/Blob/k")).json()["state"]
        assert state == {"small": "written first", "blob": "x" * UNDER}
        assert (await ingress.post("/Sizes/step", json=UNDER)).json() == UNDER
        assert (await ingress.post("/Sizes/output", json=UNDER)).json() == "x" * UNDER
        assert (await ingress.post("/Sizes/measure", json="y" * UNDER)).json() == UNDER


async def test_state_edits_and_completions_over_the_limit_are_refused(rt: Runtime) -> None:
    async with clients(rt) as (ingress, admin):
        edit = await admin.patch("/state/Blob/e", json={"set": {"a": 1, "big": "x" * OVER}})
        _refused(edit, "value of state 'big'")
        assert (await admin.get("/state/Blob/e")).json()["state"] == {}  # not even "a"

        sent = await ingress.post("/Holder/w/hold/send")
        invocation_id = sent.json()["invocationId"]
        awakeable = ""
        for _ in range(500):  # bounded: until it has suspended on its awakeable
            inv = (await admin.get(f"/invocations/{invocation_id}")).json()
            if inv["status"] == "suspended":
                awakeable = (await admin.get("/state/Holder/w")).json()["state"]["awakeable"]
                break
            await asyncio.sleep(0.01)
        assert awakeable
        big = await ingress.post(f"/restate/awakeables/{awakeable}/resolve", json="x" * OVER)
        _refused(big, "completion")
        assert (await admin.get(f"/invocations/{invocation_id}")).json()["status"] == "suspended"
        ok = await ingress.post(f"/restate/awakeables/{awakeable}/resolve", json="x" * UNDER)
        assert ok.status_code == 202
        done = await ingress.get(f"/restate/invocation/{invocation_id}/attach")
        assert done.json() == "x" * UNDER


def test_an_http_deployments_step_over_the_limit_fails_its_invocation(
    store_args: list[str], tmp_path: Path
) -> None:
    data = tmp_path / "serve"
    data.mkdir()
    store = store_args or ["--store", f"sqlite:///{data / 'tarry.db'}"]
    serve = TarryProcess(["serve", *store], data)
    try:
        serve.start()
        with uvicorn_app("tests.apps.sizes:app", tmp_path) as url:
            assert serve.cli("deployments", "register", url).returncode == 0
            reply = httpx.post(f"{serve.ingress}/Sizes/step", json=OVER, timeout=30)
            assert reply.status_code == 413, reply.text
            assert "step result" in reply.json()["message"]
            inv = serve.invocation(reply.headers["x-restate-id"])
            assert inv["attempts"] == 1  # the checkpoint's 413 is final: not retried
            assert [e["command"].get("name") for e in inv["journal"][1:]] == ["small"]
            ok = httpx.post(f"{serve.ingress}/Sizes/step", json=UNDER, timeout=30)
            assert ok.json() == UNDER
    finally:
        serve.stop()
