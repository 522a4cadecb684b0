"""Lambda deployments on each store: the runtime invokes a function (in a thread here; on
MiniStack in tests/integration/test_lambda_ministack.py) that, on DynamoDB, reads its journal
from the table and appends each step there itself, fenced by the attempt's epoch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

import tarry
from tarry.journal_table import MAX_ITEM_BYTES
from tarry.lambda_adapter._dynamodb import JournalTable
from tarry.protocol import PROTOCOL_VERSION, CheckpointRejected, InvokeRequest
from tarry.runtime.server import Runtime
from tarry.runtime.store import Store
from tarry.runtime.store.dynamodb import DynamoDBStore
from tests.dynamodb_local import dynamodb_table
from tests.lambda_fakes import InThreadLambda

steps = tarry.Service("Steps")
RAN: list[str] = []


@steps.handler()
async def many(ctx: tarry.Context, shape: dict[str, int]) -> int:
    """``before`` steps of ``size`` bytes, a durable sleep, ``after`` more."""
    total = 0
    for i in range(shape["before"] + shape["after"]):

        def step(i: int = i) -> str:
            RAN.append(f"{ctx.request().id}:{i}")
            return "x" * shape.get("size", 1)

        total += len(await ctx.run(f"step {i}", step))
        if i + 1 == shape["before"]:
            await ctx.sleep(timedelta(milliseconds=shape.get("sleep_ms", 20)))
    return total


@steps.handler()
async def too_big(ctx: tarry.Context) -> str:
    await ctx.run("small", lambda: "ok")
    return await ctx.run("huge", lambda: "x" * (MAX_ITEM_BYTES + 1))


@steps.handler()
async def send_then_step(ctx: tarry.Context, name: str) -> str:
    ctx.service_send(many, {"before": 1, "after": 0})
    return await ctx.run("greet", lambda: f"Hello {name}!")


counter = tarry.VirtualObject("Counter")


@counter.handler()
async def add(ctx: tarry.ObjectContext, n: int) -> int:
    value = (await ctx.get("count") or 0) + n
    ctx.set("count", value)
    ctx.set("last", await ctx.run("note", lambda: f"added {n}"))
    return int(value)


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[tuple[Runtime, InThreadLambda]]:
    fn = InThreadLambda([steps, counter], timeout_ms=60_000)
    rt = Runtime(store)
    await rt.start()
    await rt.catalog.add(fn)
    fn.invokes = 0  # discovery is not counted
    try:
        yield rt, fn
    finally:
        await rt.stop()


@pytest.fixture
async def runtime(store: Store) -> AsyncIterator[tuple[Runtime, InThreadLambda]]:
    """The runtime on each store, with the function registered."""
    async with running(store) as both:
        yield both


@pytest.fixture
async def ddb() -> AsyncIterator[DynamoDBStore]:
    """A DynamoDB store (for what only a function that reaches the table can do)."""
    async with dynamodb_table() as store:
        yield store


@pytest.fixture
async def ddb_runtime(ddb: DynamoDBStore) -> AsyncIterator[tuple[Runtime, InThreadLambda]]:
    async with running(ddb) as both:
        yield both


async def call(rt: Runtime, path: str, body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=rt.ingress_app())  # (it has no timeouts of its own)
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as c:
        return await asyncio.wait_for(c.post(path, json=body), 60)


async def test_one_invocation_per_suspension_and_one_write_per_step(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    rt, fn = runtime
    reply = await call(rt, "/Steps/many", {"before": 50, "after": 0})
    assert reply.status_code == 200, reply.text
    assert reply.json() == 50
    if isinstance(store, DynamoDBStore):
        # the first invoke runs to the sleep, the second after it: every step appended by the
        # function itself, one transaction each
        assert fn.invokes == 2
        assert fn.writes == 50
    else:
        # no table the function can reach: it returns after every step (and at the sleep)
        assert fn.invokes == 52  # 50 steps, the sleep, after it
        assert fn.writes == 0
    invocation_id = reply.headers["x-restate-id"]
    timeline = await store.timeline(invocation_id)
    runs = [e for e in timeline if e.command["kind"] == "run"]
    assert len(runs) == 50 and all(e.completion == {"value": "x"} for e in runs)
    assert [r for r in RAN if r.startswith(invocation_id)] == [
        f"{invocation_id}:{i}" for i in range(50)
    ]


async def test_a_journal_larger_than_a_lambda_payload_completes(
    ddb_runtime: tuple[Runtime, InThreadLambda], ddb: DynamoDBStore
) -> None:
    """30 steps of 300 KB (9 MB of journal), then a sleep and one more: the second invoke's
    request names the table instead of carrying the journal."""
    rt, fn = ddb_runtime
    store = ddb
    size = 300_000
    reply = await call(rt, "/Steps/many", {"before": 30, "after": 1, "size": size})
    assert reply.status_code == 200, reply.text
    assert reply.json() == 31 * size
    assert fn.invokes == 2
    assert max(fn.payloads) < 64 * 1024  # the requests stay small however long the journal
    _journal, completions = await store.journal(reply.headers["x-restate-id"])
    values = [c.get("value") for c in completions.values()]
    assert sum(len(v) for v in values if isinstance(v, str)) == 31 * size


async def test_state_changes_travel_with_the_steps(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    rt, _fn = runtime
    for n in (1, 2, 3):
        reply = await call(rt, "/Counter/a/add", n)
        assert reply.status_code == 200, reply.text
    assert reply.json() == 6
    assert await store.state("Counter", "a") == {"count": 6, "last": "added 3"}


async def test_a_value_too_large_for_the_table_fails_naming_the_limit(
    ddb_runtime: tuple[Runtime, InThreadLambda], ddb: DynamoDBStore
) -> None:
    rt, _ = ddb_runtime
    store = ddb
    reply = await call(rt, "/Steps/too_big", None)
    assert reply.status_code == 413
    assert "400 KB" in reply.json()["message"]
    journal, completions = await store.journal(reply.headers["x-restate-id"])
    # the step before it was stored; of the huge one, nothing
    assert [c["kind"] for c in journal] == ["input", "run"]
    assert completions == {"1": {"value": "ok"}}


async def test_commands_only_the_runtime_can_store_end_the_attempt(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    rt, _fn = runtime
    reply = await call(rt, "/Steps/send_then_step", "Ann")
    assert reply.status_code == 200, reply.text
    assert reply.json() == "Hello Ann!"
    for _ in range(200):  # the send's invocation, driven by the runtime
        done = await store.list_invocations("Steps", "succeeded")
        if len(done) == 2:
            break
        await asyncio.sleep(0.02)
    assert {i.handler for i in done} == {"send_then_step", "many"}


async def test_a_function_that_crashes_is_retried_with_its_error_in_describe(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    rt, fn = runtime
    fn.crash = RuntimeError("the function fell over")
    transport = httpx.ASGITransport(app=rt.ingress_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as c:
        sent = await c.post("/Steps/many/send", json={"before": 1, "after": 0})
        invocation_id = sent.json()["invocationId"]
        for _ in range(300):
            inv = await store.get(invocation_id)
            assert inv is not None
            if inv.attempts >= 2 and inv.last_failure:
                break
            await asyncio.sleep(0.02)
        assert inv.status in ("backing-off", "running", "ready")
        assert inv.last_failure is not None
        assert "RuntimeError: the function fell over" in inv.last_failure
        fn.crash = None
        finished = await rt.invoker.wait_finished(invocation_id)
    assert finished.completion == {"value": 1}


# -- the fence, on DynamoDB ------------------------------------------------------------------


async def _attempt_request(store: DynamoDBStore, handler: str, value: Any) -> InvokeRequest:
    from tarry.runtime.store import NewInvocation

    created = await store.create(
        NewInvocation(id=f"inv_fence{handler}", service="Steps", handler=handler, key=None,
                      exclusive=False, input=value),
        0,
        start=True,
    )  # fmt: skip
    assert created.started is not None
    inv = created.started.invocation
    return {
        "protocol": PROTOCOL_VERSION,
        "invocation_id": inv.id,
        "epoch": inv.epoch,
        "service": "Steps",
        "handler": handler,
        "key": None,
        "headers": {},
        "journal": created.started.journal,
        "completions": {},
        "state": None,
        "retry_count": 0,
        "checkpoint": "dynamodb",
        "table": store.table,
        "journal_length": len(created.started.journal),
    }


async def test_a_superseded_attempt_cannot_append(ddb: DynamoDBStore) -> None:
    store = ddb
    request = await _attempt_request(store, "many", {"before": 1, "after": 0})
    table = JournalTable(tarry.SystemClock())
    first = table.channel(request)
    await first.append([{"kind": "run", "name": "step 0"}], {"1": {"value": "x"}})
    # Another instance of the same attempt (a retried invoke) appends at the same place.
    twin = table.channel(request)
    with pytest.raises(CheckpointRejected, match="another writer of the same attempt"):
        await twin.append([{"kind": "run", "name": "step 0"}], {"1": {"value": "y"}})
    # The attempt is superseded (its lease lapsed and another began).
    from tarry.runtime.store import AttemptEnd

    await store.end_attempt(request["invocation_id"], request["epoch"], [], {}, [],
                            AttemptEnd("ready"), 1)  # fmt: skip
    assert await store.start_attempt(request["invocation_id"], 2) is not None
    with pytest.raises(CheckpointRejected, match="superseded"):
        await first.append([{"kind": "run", "name": "step 1"}], {"2": {"value": "z"}})
    journal, completions = await store.journal(request["invocation_id"])
    assert [c["kind"] for c in journal] == ["input", "run"]
    assert completions == {"1": {"value": "x"}}


async def test_a_request_without_its_journal_is_read_from_the_table(ddb: DynamoDBStore) -> None:
    store = ddb
    request = await _attempt_request(store, "many", {"before": 2, "after": 0})
    table = JournalTable(tarry.SystemClock())
    await table.channel(request).append([{"kind": "run", "name": "step 0"}], {"1": {"value": "x"}})
    slim: InvokeRequest = {k: v for k, v in request.items()  # type: ignore[assignment]
                           if k not in ("journal", "completions", "state")}  # fmt: skip
    slim["journal_length"] = 2
    loaded = await table.load(slim)
    assert loaded["journal"] == [request["journal"][0], {"kind": "run", "name": "step 0"}]
    assert loaded["completions"] == {"1": {"value": "x"}}
    slim["journal_length"] = 3  # more than the table holds: refused, nothing runs
    from tarry.lambda_adapter._dynamodb import JournalUnavailable

    with pytest.raises(JournalUnavailable, match="holds 2 of the 3"):
        await table.load(slim)


async def test_a_deployment_removed_by_force_pauses_what_runs_on_it(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    from tarry.runtime.deployments import DeploymentInUse, deployment_id

    rt, fn = runtime
    transport = httpx.ASGITransport(app=rt.ingress_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as c:
        sent = await c.post("/Steps/many/send", json={"before": 1, "after": 1, "sleep_ms": 300})
    invocation_id = sent.json()["invocationId"]
    for _ in range(200):
        inv = await store.get(invocation_id)
        if inv is not None and inv.status == "suspended":
            break
        await asyncio.sleep(0.01)
    assert inv is not None and inv.status == "suspended"
    pinned = deployment_id(fn.uri)
    assert inv.deployment_id == pinned
    with pytest.raises(DeploymentInUse, match="still has 1 invocation"):
        await rt.remove(pinned)
    assert await rt.remove(pinned, force=True) == 1
    for _ in range(300):  # the sleep ends; its deployment is gone: paused, not lost
        inv = await store.get(invocation_id)
        if inv is not None and inv.status == "paused":
            break
        await asyncio.sleep(0.01)
    assert inv is not None and inv.status == "paused"
    assert inv.last_failure is not None and "not registered any more" in inv.last_failure
    await rt.catalog.add(InThreadLambda([steps, counter]))  # the same version, again
    resumed = await store.resume(invocation_id, 0)
    assert resumed is not None
    await rt.invoker.act(resumed[1])
    finished = await rt.invoker.wait_finished(invocation_id)
    assert finished.completion == {"value": 2}


async def test_throttling_backs_off_and_the_invocation_completes(
    runtime: tuple[Runtime, InThreadLambda], store: Store
) -> None:
    """(MiniStack does not apply a function's reserved concurrency to its versions, so this
    runs on the in-thread function.)"""
    rt, fn = runtime
    fn.throttle = 3
    reply = await call(rt, "/Steps/many", {"before": 1, "after": 0})
    assert reply.status_code == 200, reply.text
    inv = await store.get(reply.headers["x-restate-id"])
    assert inv is not None and inv.attempts >= 4  # three throttled, then the handler's own
    assert inv.last_failure is not None and "Lambda is throttling" in inv.last_failure
