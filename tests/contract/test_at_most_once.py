"""At-most-once steps through the real runtime, on each store: in-process, and as a Lambda
function (on DynamoDB it appends the step to the table itself before the body starts; on
SQLite it returns to have it stored, and runs the body in the next invoke). The process kills
are in tests/fault/test_handler_kill.py; here a Lambda function's timeout interrupts a step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

import tarry
from tarry.lambda_adapter._dynamodb import JournalTable
from tarry.protocol import PROTOCOL_VERSION, Command, Completion, InvokeRequest
from tarry.runtime.deployments import InProcessDeployment
from tarry.runtime.server import Runtime
from tarry.runtime.store import AttemptEnd, NewInvocation, Store
from tarry.runtime.store.dynamodb import DynamoDBStore
from tests.dynamodb_local import dynamodb_table
from tests.lambda_fakes import InThreadLambda

BODIES: list[str] = []  # each body run: "step:invocation id"

bank = tarry.Service("Bank")


@bank.handler()
async def wire(ctx: tarry.Context, stall: bool) -> str:
    """An at-most-once step after a send (which the function cannot store itself), and a plain
    step; ``stall``: each body stalls on its first run, past the function's timeout."""
    ctx.service_send(note, "wiring")
    me = ctx.request().id

    async def body(name: str) -> str:
        BODIES.append(f"{name}:{me}")
        if stall and BODIES.count(f"{name}:{me}") == 1:
            await asyncio.sleep(30)  # the function's time runs out first
        return f"{name} done"

    try:
        first = await ctx.run("wire", body, "wire", at_most_once=True)
    except tarry.StepInterrupted:
        first = "wire interrupted"
    second = await ctx.run("log", body, "log")
    return f"{first}, {second}"


@bank.handler()
async def note(ctx: tarry.Context, text: str) -> str:
    return text


@asynccontextmanager
async def runtime(store: Store, deployment: Any) -> AsyncIterator[Runtime]:
    rt = Runtime(store)
    await rt.start()
    await rt.catalog.add(deployment)
    try:
        yield rt
    finally:
        await rt.stop()


async def call(rt: Runtime, stall: bool) -> httpx.Response:
    transport = httpx.ASGITransport(app=rt.ingress_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as c:
        return await asyncio.wait_for(c.post("/Bank/wire", json=stall), 60)


async def wire_through(
    store: Store, deployment: Any, stall: bool
) -> tuple[Any, list[str], list[Command], dict[str, Completion]]:
    """Call Bank/wire through a runtime serving it from ``deployment``: its answer, the bodies
    it ran, its journal and completions."""
    async with runtime(store, deployment) as rt:
        reply = await call(rt, stall)
        assert reply.status_code == 200, reply.text
        invocation_id = reply.headers["x-restate-id"]
        journal, completions = await store.journal(invocation_id)
    return reply.json(), ran(invocation_id), journal, completions


def ran(invocation_id: str) -> list[str]:
    return [b.split(":")[0] for b in BODIES if b.endswith(f":{invocation_id}")]


@pytest.mark.parametrize("kind", ["inprocess", "lambda"])
async def test_an_at_most_once_step_runs_once_stored_before_its_body(
    store: Store, kind: str
) -> None:
    deployment: Any = (
        InProcessDeployment(tarry.Endpoint([bank]), "bank")
        if kind == "inprocess"
        else InThreadLambda([bank])
    )
    answer, bodies, journal, completions = await wire_through(store, deployment, stall=False)
    assert answer == "wire done, log done"
    assert bodies == ["wire", "log"]
    wired = journal[2]
    assert wired["kind"] == "run" and wired["at_most_once"] is True
    assert completions["2"] == {"value": "wire done"}


async def test_a_function_timing_out_mid_step_interrupts_it_and_reruns_a_plain_one(
    store: Store,
) -> None:
    """The function's timeout cuts each body short on its first run: the at-most-once step is
    not run again (the handler sees StepInterrupted), the plain one is."""
    fn = InThreadLambda([bank], timeout_ms=1_600, margin=timedelta(seconds=1))
    answer, bodies, _, completions = await wire_through(store, fn, stall=True)
    assert answer == "wire interrupted, log done"
    assert bodies == ["wire", "log", "log"]
    assert completions["2"]["failure"]["interrupted"] is True


@pytest.fixture
async def ddb() -> AsyncIterator[DynamoDBStore]:
    async with dynamodb_table() as store:
        yield store


async def test_two_instances_of_one_attempt_run_the_body_once(ddb: DynamoDBStore) -> None:
    """A retried invoke runs the same attempt twice from the same journal: the table's fence
    lets one of them store the step, and only that one runs its body."""
    created = await ddb.create(
        NewInvocation(id="inv_twins", service="Bank", handler="wire", key=None, exclusive=False,
                      input=False),
        0,
        start=True,
    )  # fmt: skip
    assert created.started is not None
    inv = created.started.invocation
    request: InvokeRequest = {
        "protocol": PROTOCOL_VERSION, "invocation_id": inv.id, "epoch": inv.epoch,
        "service": "Bank", "handler": "wire", "key": None, "headers": {},
        "journal": created.started.journal, "completions": {}, "state": None, "retry_count": 0,
        "checkpoint": "dynamodb", "table": ddb.table,
        "journal_length": len(created.started.journal),
    }  # fmt: skip
    # The send makes the first append one the runtime must store: store it as it would (the
    # send's own invocation is not needed here).
    endpoint = tarry.Endpoint([bank])
    first = await endpoint.invoke(request, JournalTable(tarry.SystemClock()).channel(request))
    assert first["outcome"] == {"kind": "flush"}
    await ddb.end_attempt(inv.id, inv.epoch, first["commands"], {}, [], AttemptEnd("ready"), 1)
    again = await ddb.start_attempt(inv.id, 2)
    assert again is not None
    twin: InvokeRequest = {
        **request,
        "epoch": again.invocation.epoch,
        "journal": again.journal,
        "journal_length": len(again.journal),
    }
    table = JournalTable(tarry.SystemClock())
    answers = await asyncio.gather(*(endpoint.invoke(twin, table.channel(twin)) for _ in "ab"))
    assert ran(inv.id) == ["wire", "log"]  # once, by the instance whose append won
    won, lost = sorted(answers, key=lambda a: a["outcome"]["kind"])
    assert won["outcome"] == {"kind": "completed", "value": "wire done, log done"}
    assert lost["outcome"]["kind"] == "retry"
    assert "another writer of the same attempt" in lost["outcome"]["error"]
    journal, completions = await ddb.journal(inv.id)  # (the runtime stores the output)
    assert [c["kind"] for c in journal] == ["input", "send", "run", "run"]
    assert completions["2"] == {"value": "wire done"}
