"""Store faults, on every store (:mod:`tests.fault.faulty_store`): a write that committed but
whose answer was lost, throttling, transaction conflicts and short outages.

The store recognises its own committed writes: a write whose answer was lost returns what it
did, as if the answer had come, and holds it once. And under load — Counter.add with
idempotency keys from clients that retry on 503, step chains with sleeps, awakeables resolved
from outside — with every fault injected at a seeded rate, the invariants hold: every counter
equals its number of adds and answered each add in turn, one invocation per idempotency key,
journals without gaps or duplicates, and every invocation completes once the faults stop.

``TARRY_FAULT_SEED`` picks the seed (a failure names the one it ran with).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import aioboto3
import httpx
import pytest

import tarry
from tarry.runtime.server import Runtime
from tarry.runtime.store import AttemptEnd, Invocation, Store, Timer
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.sqlite import SQLiteStore
from tests.conftest import clients
from tests.contract.helpers import OUTPUT, T0, awakeable_command, awk, new
from tests.dynamodb_local import dynamodb_local, dynamodb_table
from tests.fault.faulty_store import (
    Faults,
    FaultySession,
    FaultyStore,
    connection_factory,
    stopped,
)

pytestmark = pytest.mark.fault

SEED = int(os.environ.get("TARRY_FAULT_SEED", "20261202"))


@contextlib.asynccontextmanager
async def faulty_inner(kind: str, tmp_path: Path, faults: Faults) -> AsyncIterator[Store]:
    """A store whose commits meet ``faults`` where the store meets them (see faulty_store)."""
    if kind == "sqlite":
        sqlite = SQLiteStore(tmp_path / "t.db", factory=connection_factory(faults))
        try:
            yield sqlite
        finally:
            await sqlite.close()
        return
    async with dynamodb_table() as made:  # its table; this store's client meets the faults
        dynamodb = DynamoDBStore(made.table, session=FaultySession(faults), lease_ms=2000)
        try:
            yield dynamodb
        finally:
            await dynamodb.close()


@pytest.fixture(params=["sqlite", "dynamodb"])
async def lossy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A store and the faults its commits meet (none unless forced)."""
    faults = Faults(SEED)
    async with faulty_inner(request.param, tmp_path, faults) as store:
        yield store, faults


# -- a write whose answer was lost ---------------------------------------------------------


async def test_every_write_whose_answer_was_lost_returns_what_it_did_and_is_stored_once(
    lossy: tuple[Store, Faults],
) -> None:
    store, faults = lossy

    async def lost(write: Awaitable[Any]) -> Any:
        """``write``, its commit answered with a failure after it was carried out."""
        before = faults.injected["lost"]
        faults.force("lost")
        result = await write
        assert faults.injected["lost"] == before + 1, "the fault did not hit the write"
        return result

    first = new(key="k", idempotency_key="once", request_hash="h")
    created = await lost(store.create(first, T0, start=True))
    assert not created.previously_accepted and created.started is not None
    attempt = created.started.invocation
    assert (attempt.status, attempt.epoch) == ("running", 1)
    queued = await lost(store.create(new(key="k"), T0))  # behind it on the key
    assert queued.invocation.status == "pending" and queued.effects.ready == []

    run: dict[str, Any] = {"kind": "run", "name": "a"}
    await lost(store.append(first.id, 1, [run], {"1": {"value": "A"}}, [], T0))
    sleep: dict[str, Any] = {"kind": "sleep", "name": "", "wake_at": T0 + 10}
    asleep = AttemptEnd("suspended", waiting_on=(2,))
    ended = await lost(store.end_attempt(first.id, 1, [sleep], {}, [], asleep, T0))
    assert ended.timers == [Timer(T0 + 10, "sleep", first.id, 2)]
    fired = await lost(store.fire_timer(ended.timers[0], T0 + 10))
    assert fired.ready == [first.id]
    again = await lost(store.start_attempt(first.id, T0 + 11))
    assert again is not None and again.invocation.epoch == 2
    assert again.completions == {"1": {"value": "A"}, "2": {"value": None}}

    waiting = awakeable_command(again.invocation, 3)
    await lost(store.append(first.id, 2, [waiting], {}, [], T0 + 12))
    outcome, _ = await lost(store.complete_awakeable(awk(first, 3), {"value": "x"}, T0 + 13))
    assert outcome == "completed"
    done = AttemptEnd("completed", completion={"value": "out"})
    finished = await lost(store.end_attempt(first.id, 2, OUTPUT, {}, [], done, T0 + 14))
    assert [i.id for i in finished.finished] == [first.id]
    assert finished.ready == [queued.invocation.id]  # the key passed on

    with stopped(faults):
        commands, results = await store.journal(first.id)
        inv = await store.get(first.id)
        found = await store.find("Svc", "k", "h", "once", T0 + 15)
    assert [c["kind"] for c in commands] == ["input", "run", "sleep", "awakeable", "output"]
    assert results == {"1": {"value": "A"}, "2": {"value": None}, "3": {"value": "x"}}
    assert inv is not None and (inv.status, inv.attempts) == ("completed", 2)
    assert found is not None and found.id == first.id


async def test_dynamodb_local_carries_out_a_transaction_once_per_client_request_token() -> None:
    """What recognising a lost answer on DynamoDB rests on: the same TransactWriteItems sent
    again with the same ClientRequestToken answers success and changes nothing, even once its
    conditions no longer hold; with another token it is evaluated anew."""
    dynamodb_local()
    async with dynamodb_table() as store, aioboto3.Session().client("dynamodb") as client:
        key = {"pk": {"S": "token-test"}, "sk": {"S": "item"}}
        request = {
            "TransactItems": [
                {
                    "Update": {
                        "TableName": store.table,
                        "Key": key,
                        "UpdateExpression": "ADD n :one",
                        "ConditionExpression": "attribute_not_exists(n) OR n < :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                }
            ],
            "ClientRequestToken": str(uuid.uuid4()),
        }
        await client.transact_write_items(**request)
        await client.transact_write_items(**request)  # its condition fails now: not evaluated
        item = await client.get_item(TableName=store.table, Key=key, ConsistentRead=True)
        assert item["Item"]["n"] == {"N": "1"}
        with pytest.raises(client.exceptions.TransactionCanceledException):
            await client.transact_write_items(**{**request, "ClientRequestToken": "another"})
        check = {"TableName": store.table, "Key": key, "ConditionExpression": "attribute_exists(n)"}
        with pytest.raises(client.exceptions.IdempotentParameterMismatchException):
            await client.transact_write_items(  # another transaction under the token
                TransactItems=[{"ConditionCheck": check}],
                ClientRequestToken=request["ClientRequestToken"],
            )


# -- under load ------------------------------------------------------------------------------

counter = tarry.VirtualObject("Counter")


@counter.handler()
async def add(ctx: tarry.ObjectContext, delta: int) -> int:
    total: int = (await ctx.get("total")) or 0
    ctx.set("total", total + delta)
    return total + delta


chain = tarry.Service("Chain")
STEPS = 3
ran: Counter[tuple[str, int]] = Counter()  # how often each step's body ran


async def _step(name: str, i: int) -> str:
    ran[(name, i)] += 1
    return f"{name}-{i}"


@chain.handler()
async def steps(ctx: tarry.Context, name: str) -> list[str]:
    """Journaled steps, a durable sleep after each."""
    out = []
    for i in range(STEPS):
        out.append(await ctx.run(f"step-{i}", _step, name, i))
        await ctx.sleep(timedelta(milliseconds=20))
    return out


waiter = tarry.VirtualObject("Waiter")


@waiter.handler()
async def hold(ctx: tarry.ObjectContext) -> str:
    """Waits on an awakeable whose id it keeps in its state."""
    awakeable_id, done = ctx.awakeable()
    ctx.set("awakeable", awakeable_id)
    value: str = await done
    return value


# What each handler's journal holds, entry by entry, once it completed.
JOURNALS = {
    "Counter/add": ["input", "get_state", "set_state", "output"],
    "Chain/steps": ["input", *["run", "sleep"] * STEPS, "output"],
    "Waiter/hold": ["input", "awakeable", "set_state", "output"],
}
AWAITED = ("run", "sleep", "awakeable")  # entries that have a result


@dataclass(frozen=True)
class Load:
    keys: int = 6  # counters, each added to by one client in turn
    adds: int = 10  # per counter
    chains: int = 6
    holds: int = 6
    lost: float = 0.08
    throttle: float = 0.04
    conflict: float = 0.05
    outages: int = 2
    outage_s: float = 0.25


async def answered(
    send: Callable[[], Awaitable[httpx.Response]], what: str, ok: int, faults: Faults
) -> httpx.Response:
    """``send`` until it answers ``ok``, as a client does: again after a 503, as told."""
    deadline = time.monotonic() + 60
    while True:
        try:
            reply = await asyncio.wait_for(send(), 30)
        except TimeoutError:
            raise AssertionError(f"{what}: no answer within 30 s ({faults})") from None
        if reply.status_code == ok:
            return reply
        assert reply.status_code == 503, f"{what}: {reply.status_code} {reply.text} ({faults})"
        assert "retry-after" in reply.headers
        assert time.monotonic() < deadline, f"{what}: still 503 after 60 s ({faults})"
        await asyncio.sleep(0.02)


async def run_load(store: FaultyStore, faults: Faults, load: Load) -> None:
    """Drive ``load`` through a runtime on ``store`` while ``faults`` are injected, stop them,
    and check the invariants against what the store holds."""
    ran.clear()
    async with Runtime(cast(Store, store)) as rt:
        with stopped(faults):  # a store failing as the runtime starts stops it: not this test
            await rt.start([counter, chain, waiter])
        async with clients(rt) as (ingress, admin):
            adds_done = 0

            async def adds(key: str) -> list[int]:
                nonlocal adds_done
                values = []
                for i in range(load.adds):
                    reply = await answered(
                        lambda i=i: ingress.post(  # type: ignore[misc]
                            f"/Counter/{key}/add", json=1, headers={"idempotency-key": f"{i}"}
                        ),
                        f"add {key}/{i}", 200, faults,
                    )  # fmt: skip
                    values.append(reply.json())
                    adds_done += 1
                return values

            async def send(path: str, body: Any, idempotency_key: str) -> str:
                reply = await answered(
                    lambda: ingress.post(
                        path, json=body, headers={"idempotency-key": idempotency_key}
                    ),
                    f"send {path}", 202, faults,
                )  # fmt: skip
                invocation_id: str = reply.json()["invocationId"]
                return invocation_id

            async def resolve(key: str) -> None:
                await send(f"/Waiter/{key}/hold/send", None, f"hold-{key}")
                deadline = time.monotonic() + 60
                while True:  # its id, once the handler has kept it
                    reply = await answered(
                        lambda: admin.get(f"/state/Waiter/{key}"), f"state {key}", 200, faults
                    )
                    if "awakeable" in reply.json()["state"]:
                        break
                    assert time.monotonic() < deadline, f"Waiter/{key} never suspended"
                    await asyncio.sleep(0.02)
                awakeable_id = reply.json()["state"]["awakeable"]
                await answered(
                    lambda: ingress.post(
                        f"/restate/awakeables/{awakeable_id}/resolve", json=f"value-{key}"
                    ),
                    f"resolve {key}", 202, faults,
                )  # fmt: skip

            async def outages() -> None:
                total = load.keys * load.adds
                for n in range(1, load.outages + 1):
                    while adds_done < total * n // (load.outages + 1):
                        await asyncio.sleep(0.01)
                    async with faults.outage():
                        await asyncio.sleep(load.outage_s)  # how long the store is out

            chains = [send("/Chain/steps/send", f"c{n}", f"chain-{n}") for n in range(load.chains)]
            values, _, _, _ = await asyncio.gather(
                asyncio.gather(*(adds(f"k{n}") for n in range(load.keys))),
                asyncio.gather(*chains),
                asyncio.gather(*(resolve(f"w{n}") for n in range(load.holds))),
                outages(),
            )
            faults.stop()
            invocations = await converged(store.inner, load)
            # read before the runtime closes the store
            await check_invariants(store.inner, load, values, invocations)


async def converged(store: Store, load: Load) -> list[Invocation]:
    """Every invocation, once all have completed (bounded)."""
    expected = load.keys * load.adds + load.chains + load.holds
    deadline = time.monotonic() + 30
    while True:
        found = await store.list_invocations(limit=10 * expected)
        if len(found) >= expected and all(i.status == "completed" for i in found):
            return found
        unfinished = [(i.id, i.service, i.status) for i in found if i.status != "completed"]
        assert time.monotonic() < deadline, f"not all completed after the faults: {unfinished}"
        await asyncio.sleep(0.05)


async def check_invariants(
    store: Store, load: Load, values: list[list[int]], invocations: list[Invocation]
) -> None:
    for added in values:
        assert added == list(range(1, load.adds + 1))  # each add once, in turn
    for n in range(load.keys):
        assert await store.state("Counter", f"k{n}") == {"total": load.adds}
    per_key = Counter((i.service, i.key, i.handler, i.idempotency_key) for i in invocations)
    assert set(per_key.values()) == {1}, [k for k, n in per_key.items() if n > 1]
    assert len(invocations) == load.keys * load.adds + load.chains + load.holds
    for inv in invocations:
        assert inv.completion is not None and "value" in inv.completion, inv
        entries = await store.timeline(inv.id)
        assert [e.index for e in entries] == list(range(inv.journal_length)), inv.id
        kinds = [e.command["kind"] for e in entries]
        assert kinds == JOURNALS[f"{inv.service}/{inv.handler}"], (inv.id, kinds)
        for entry in entries:
            if entry.command["kind"] in AWAITED:
                assert entry.completion is not None, (inv.id, entry)
        if inv.service == "Chain":
            name = entries[0].command["value"]
            expected = [f"{name}-{i}" for i in range(STEPS)]
            assert inv.completion == {"value": expected}
            assert [e.completion for e in entries if e.command["kind"] == "run"] == [
                {"value": v} for v in expected
            ]
            assert all(ran[(name, i)] >= 1 for i in range(STEPS))
        if inv.service == "Waiter":
            assert inv.completion == {"value": f"value-{inv.key}"}


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
async def test_under_load_and_every_fault_the_invariants_hold(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load = Load()
    faults = Faults(SEED, lost=load.lost, throttle=load.throttle, conflict=load.conflict)
    async with faulty_inner(kind, tmp_path, faults) as inner:
        await run_load(FaultyStore(inner, faults), faults, load)
    assert {"lost", "throttle", "conflict", "outage"} <= set(faults.injected), faults
    # every fault the store reported was logged in a line that says what it was
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
