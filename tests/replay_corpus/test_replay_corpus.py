"""Every generation of the replay corpus (``v1/``, ``v2/``, ...) replays on today's code.

- SDK: each recorded attempt, given to the SDK again, answers what it answered then: the same
  checkpoint appends, the same new commands and completions, the same outcome. A change to the
  protocol or the SDK that would break an invocation in flight (a command it no longer matches,
  a result it reads differently) fails here.
- Store: a store holding invocations in flight, made by the code of its generation (a SQLite
  file; a DynamoDB table's items), is taken over by today's runtime, which drives each
  invocation to the result it must have.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import tarry
from tarry.protocol import Command, Completion, InvokeRequest
from tarry.runtime.server import Runtime
from tarry.runtime.store import Invocation, Store
from tarry.runtime.store.sqlite import SQLiteStore
from tests.dynamodb_local import dynamodb_table

from . import handlers
from .generate import scrub

HERE = Path(__file__).resolve().parent
GENERATIONS = sorted(p for p in HERE.glob("v[0-9]*") if p.is_dir())


class Appends:
    """A checkpoint channel that takes every append and notes it."""

    def __init__(self) -> None:
        self.appends: list[dict[str, Any]] = []

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        self.appends.append({"commands": commands, "completions": completions})


def sdk_files() -> list[Any]:
    return [
        pytest.param(path, id=str(path.relative_to(HERE)))
        for generation in GENERATIONS
        for path in sorted((generation / "sdk").glob("*/*.json"))
    ]


async def replay(
    entry: dict[str, Any], request: InvokeRequest, services: list[Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One recorded attempt through today's SDK: what it appends, what it answers."""
    clock = tarry.ManualClock(entry["clock_ms"])
    # (as recorded: never in the testing mode that suspends at every await)
    endpoint = tarry.Endpoint(services or handlers.SERVICES, clock, suspend_everywhere=False)
    channel = Appends() if request["checkpoint"] != "none" else None
    response = await endpoint.invoke(json.loads(json.dumps(request)), channel)
    return scrub(channel.appends if channel else []), scrub(dict(response))


def test_there_is_a_corpus() -> None:
    assert GENERATIONS, "tests/replay_corpus has no generation (v1/ ...)"
    assert sdk_files()


@pytest.mark.parametrize("path", sdk_files())
async def test_every_recorded_attempt_replays_to_the_same_answer(path: Path) -> None:
    entry = json.loads(path.read_text())
    assert entry["handlers"] == handlers.__name__
    for n, attempt in enumerate(entry["attempts"]):
        appends, response = await replay(entry, attempt["request"])
        where = f"{path.name}, attempt {n + 1} of {len(entry['attempts'])}"
        assert appends == attempt["appends"], where
        assert response == attempt["response"], where


# -- the store corpus ------------------------------------------------------------------------


@asynccontextmanager
async def sqlite_corpus(generation: Path, tmp_path: Path) -> AsyncIterator[Store]:
    copy = tmp_path / "tarry.db"
    shutil.copyfile(generation / "store.sqlite", copy)  # the corpus's own file stays as it is
    store = SQLiteStore(copy)
    yield store


@asynccontextmanager
async def dynamodb_corpus(generation: Path, tmp_path: Path) -> AsyncIterator[Store]:
    dump = json.loads((generation / "store-dynamodb.json").read_text())
    async with dynamodb_table() as store:
        client = await store.client()
        items = list(dump["items"])
        while items:
            batch, items = items[:25], items[25:]
            requests = {store.table: [{"PutRequest": {"Item": i}} for i in batch]}
            while requests:
                reply = await client.batch_write_item(RequestItems=requests)
                requests = reply.get("UnprocessedItems") or {}
        yield store


# kind -> (the file that holds it, how to load it, the file that names its invocations)
STORE_KINDS = {
    "sqlite": ("store.sqlite", sqlite_corpus, "store.json"),
    "dynamodb": ("store-dynamodb.json", dynamodb_corpus, "store-dynamodb.json"),
}


def store_corpora() -> list[Any]:
    return [
        pytest.param(generation, kind, id=f"{generation.name}-{kind}")
        for generation in GENERATIONS
        for kind, (name, _, _) in STORE_KINDS.items()
        if (generation / name).exists()
    ]


async def awakeable_in(store: Store, invocation_id: str) -> str:
    journal, _ = await store.journal(invocation_id)
    (awakeable_id,) = [c["awakeable_id"] for c in journal if c["kind"] == "awakeable"]
    return str(awakeable_id)


@pytest.mark.parametrize(("generation", "kind"), store_corpora())
async def test_invocations_in_flight_in_a_stored_corpus_finish(
    generation: Path, kind: str, tmp_path: Path
) -> None:
    # which invocation is which: the SQLite file's in store.json, the table's in its dump
    described = json.loads((generation / STORE_KINDS[kind][2]).read_text())
    ids: dict[str, str] = described["scenarios"]
    async with STORE_KINDS[kind][1](generation, tmp_path) as store:
        rt = Runtime(store)
        await rt.start(handlers.SERVICES, described["deployment"])
        try:
            transport = httpx.ASGITransport(app=rt.ingress_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as c:
                awakeable = await awakeable_in(store, ids["awakeable"])
                resolved = await c.post(f"/restate/awakeables/{awakeable}/resolve", json="hi")
                assert resolved.status_code == 202, resolved.text
                held = (await store.state("Ledger", "k3"))["awakeable"]
                released = await c.post(f"/restate/awakeables/{held}/resolve", json="released")
                assert released.status_code == 202, released.text
                verified = await c.post("/Signup/w2/verify", json="5678")
                assert verified.status_code == 200, verified.text

            async def finished(name: str) -> Invocation:
                inv = await rt.invoker.wait_finished(ids[name], timeout_ms=30_000)
                assert inv is not None, f"{name} did not finish"
                return inv

            results = dict(zip(ids, await asyncio.gather(*map(finished, ids)), strict=True))
        finally:
            await rt.stop()
    assert {name: inv.completion for name, inv in results.items()} == {
        "sleeping": {"value": "slept"},
        "awakeable": {"value": "woken with hi"},
        "call": {"value": "the call returned released"},
        "queued": {"value": 7},  # it waited for the key the call's callee held
        "promise": {"value": "bo@example.com verified with 5678 (peeked None, then 5678)"},
        "delayed": {"value": 1},
        "mid-step": {"value": ["step-0", "step-1", "step-2"]},
        "mid-once": {"failure": {
            "code": 500,
            "message": "run 'step-2' was interrupted: its body may have run, but its result "
            "was never stored, and an at-most-once step is not run again",
        }},
    }  # fmt: skip

    # What was stored was not run again: of the step stopped mid-way, the body runs again; of
    # the at-most-once one, it does not.
    def ran(name: str) -> list[str]:
        return [r.split("/")[1] for r in handlers.RAN if r.startswith(ids[name] + "/")]

    assert ran("mid-step") == ["step-1", "step-2"]
    assert ran("mid-once") == []
