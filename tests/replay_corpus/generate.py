"""Record a new generation of the replay corpus from real runs of ``handlers.py``.

    python -m tests.replay_corpus.generate v2            # writes tests/replay_corpus/v2/

It refuses to write into a folder that exists: the corpus is append-only (README.md). What it
writes:

- ``sdk/{none,channel}/NAME.json``: every attempt of one invocation as the runtime sent it to the
  SDK (its ``InvokeRequest``), what the SDK appended through the checkpoint channel during it,
  and what it answered, recorded through the real runtime (``Runtime`` over a SQLite store) with
  the checkpoint mode ``none`` (request/response) and ``channel`` (in-process appends);
- ``store.sqlite``: a SQLite database holding invocations in flight (waiting on a sleep, an
  awakeable, a call, a promise, an object key; stopped between steps and inside a step), with
  ``store.json`` naming them; and, with ``AWS_ENDPOINT_URL_DYNAMODB`` set, the same on a
  DynamoDB table, dumped item by item to ``store-dynamodb.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx

import tarry
from tarry.protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    Command,
    Completion,
    InvokeRequest,
    InvokeResponse,
)
from tarry.runtime.deployments import InProcessDeployment
from tarry.runtime.server import Runtime
from tarry.runtime.store import Store
from tarry.runtime.store.sqlite import SQLiteStore

from . import handlers

HERE = Path(__file__).resolve().parent
HANDLERS = "tests.replay_corpus.handlers"
DEPLOYMENT = "corpus"  # the in-process deployment's name: the test serves the same one
_WHERE = re.compile(r" \(at [^)]*\)")  # a traceback's file and line: not the corpus's business


def scrub(value: Any) -> Any:
    """``value`` without the file paths an error message may name."""
    if isinstance(value, str):
        return _WHERE.sub("", value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    return value


class _Recorder:
    """A checkpoint channel passed through, noting each append."""

    def __init__(self, channel: CheckpointChannel, appends: list[Any]) -> None:
        self._channel = channel
        self._appends = appends

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        self._appends.append({"commands": copy.deepcopy(commands),
                              "completions": copy.deepcopy(completions)})  # fmt: skip
        await self._channel.append(commands, completions)


class RecordingDeployment(InProcessDeployment):
    """The handlers in this process, with every attempt written down."""

    def __init__(self, endpoint: tarry.Endpoint, mode: Literal["none", "inprocess"]) -> None:
        super().__init__(endpoint, DEPLOYMENT)
        self.checkpoint = mode
        self.attempts: list[dict[str, Any]] = []

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        entry: dict[str, Any] = {"request": copy.deepcopy(request), "appends": []}
        if channel is not None:
            channel = _Recorder(channel, entry["appends"])
        response = await self.endpoint.invoke(request, channel)
        entry["response"] = copy.deepcopy(response)
        self.attempts.append(entry)
        return response


@asynccontextmanager
async def ingress(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=rt.ingress_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tarry", timeout=30) as c:
        yield c


async def until(what: str, check: Any, timeout_s: float = 20) -> Any:
    """Poll ``check()`` (a coroutine function) until it returns something true (bounded)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not (found := await check()):
        if loop.time() > give_up:
            raise RuntimeError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return found


async def status_is(store: Store, invocation_id: str, status: str) -> None:
    async def check() -> bool:
        inv = await store.get(invocation_id)
        return inv is not None and inv.status == status

    await until(f"{invocation_id} {status}", check)


# -- the SDK corpus --------------------------------------------------------------------------


async def record_sdk(mode: Literal["none", "inprocess"], now_ms: int) -> list[dict[str, Any]]:
    """Run every scenario once; the attempts, grouped by invocation."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "record.db")
        # The handlers' clock stands still (their time, and their sleeps' wake times, are the
        # same on replay); the runtime's runs, so their sleeps really end.
        deployment = RecordingDeployment(
            tarry.Endpoint(handlers.SERVICES, tarry.ManualClock(now_ms), suspend_everywhere=False),
            mode,
        )
        rt = Runtime(store)
        await rt.start()
        await rt.catalog.add(deployment)
        try:
            async with ingress(rt) as c:
                answers = [
                    await c.post("/Corpus/steps", json="Ann"),
                    await c.post("/Corpus/calls", json="k1"),
                    await c.post("/Corpus/awaits"),
                    await c.post("/Corpus/cancels"),
                    await c.post("/Corpus/chain", json=3),
                    await c.post("/Ledger/k2/add", json=5),
                    await c.post("/Ledger/k2/reset"),
                ]
                sent = await c.post("/Signup/w1/run/send", json="ann@example.com")
                await status_is(store, sent.json()["invocationId"], "suspended")
                answers.append(await c.post("/Signup/w1/verify", json="1234"))
                answers.append(await c.get("/restate/workflow/Signup/w1/attach"))
                for answer in answers:
                    if answer.status_code != 200:
                        raise RuntimeError(f"{answer.request.url}: {answer.text}")
                await asyncio.sleep(0.2)  # the sends' invocations (sleeps, echoes) end too
        finally:
            await rt.stop()
    by_invocation: dict[str, list[dict[str, Any]]] = {}
    for attempt in deployment.attempts:
        by_invocation.setdefault(attempt["request"]["invocation_id"], []).append(attempt)
    return [
        {
            "handlers": HANDLERS,
            "service": attempts[0]["request"]["service"],
            "handler": attempts[0]["request"]["handler"],
            "clock_ms": now_ms,
            "attempts": scrub(attempts),
        }
        for attempts in by_invocation.values()
    ]


def write_sdk(out: Path, mode: str, files: list[dict[str, Any]]) -> None:
    folder = out / "sdk" / ("none" if mode == "none" else "channel")
    folder.mkdir(parents=True)
    seen: dict[str, int] = {}
    for entry in files:
        stem = f"{entry['service']}.{entry['handler']}"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        (folder / f"{name}.json").write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")


# -- the store corpus ------------------------------------------------------------------------


async def record_store(store: Store) -> dict[str, Any]:
    """Leave invocations in flight in ``store``; what the test needs to know of each."""
    gate = asyncio.Event()  # never set: the steps waiting on it are stopped mid-way
    handlers.GATES.clear()
    handlers.GATES.update({"step-1": gate, "step-2": gate})
    rt = Runtime(store)
    await rt.start(handlers.SERVICES, DEPLOYMENT)
    scenarios: dict[str, str] = {}
    try:
        async with ingress(rt) as c:

            async def send(name: str, path: str, body: Any = None, query: str = "") -> str:
                reply = await c.post(f"{path}/send{query}", json=body)
                if reply.status_code != 202:
                    raise RuntimeError(f"{path}: {reply.text}")
                invocation_id: str = reply.json()["invocationId"]
                scenarios[name] = invocation_id
                return invocation_id

            await status_is(store, await send("sleeping", "/Corpus/sleeps", 1.5), "suspended")
            await status_is(store, await send("awakeable", "/Corpus/held"), "suspended")
            await status_is(store, await send("call", "/Corpus/calls_held", "k3"), "suspended")
            # behind the held key: waits for it
            await send("queued", "/Ledger/k3/add", 7)
            await status_is(store, await send("promise", "/Signup/w2/run", "bo@example.com"),
                            "suspended")  # fmt: skip
            await send("delayed", "/Ledger/k4/add", 1, "?delay=1500ms")

            # Mid-steps: stopped in the middle of step-1 (after step-0 was stored) of one, and
            # inside step-2, the at-most-once one, of another.
            async def ran(invocation_id: str, step: str) -> bool:
                return f"{invocation_id}/{step}" in handlers.RAN

            mid = await send("mid-step", "/Corpus/chain", 3)
            await until("mid-step", lambda: ran(mid, "step-1"))
            handlers.GATES.pop("step-1")  # (mid waits on it still)
            once = await send("mid-once", "/Corpus/chain", 3)
            await until("mid-once", lambda: ran(once, "step-2"))
    finally:
        rt.begin_stop()
        await rt.stop()  # what is in flight stays as it was stored: the next process takes it
        handlers.GATES.clear()
    return {"scenarios": scenarios, "handlers": HANDLERS, "deployment": DEPLOYMENT}


async def record_sqlite(out: Path) -> None:
    path = out / "store.sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / "tarry.db"
        described = await record_store(SQLiteStore(made))
        # One self-contained file (the WAL folded in), as a copy of a stopped store would be.
        with sqlite3.connect(made) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
        with sqlite3.connect(made) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
    (out / "store.json").write_text(json.dumps(described, indent=1, sort_keys=True) + "\n")


async def record_dynamodb(out: Path) -> None:
    """The same scenarios on a fresh DynamoDB table, dumped item by item (DynamoDB's typed
    JSON), for the test to load into a table of its own."""
    import aioboto3

    from tarry.runtime.store.dynamodb import DynamoDBStore
    from tarry.runtime.store.dynamodb_table import create_table, delete_table

    table = f"tarry-corpus-{out.name}"
    session = aioboto3.Session()
    async with session.client("dynamodb") as client:
        await create_table(client, table)
        try:
            described = await record_store(DynamoDBStore(table, session=session))
            items: list[dict[str, Any]] = []
            params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
            while True:
                page = await client.scan(**params)
                items += page["Items"]
                if "LastEvaluatedKey" not in page:
                    break
                params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        finally:
            await delete_table(client, table)
    items.sort(key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
    for item in items:  # a lease's owner names the process (host, pid): not the corpus's business
        if "owner" in item:
            item["owner"] = {"S": "corpus-generator:0:00000000"}
    dump = {**described, "items": items}
    (out / "store-dynamodb.json").write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n")


async def main(name: str, dynamodb: bool) -> None:
    out = HERE / name
    if out.exists():
        sys.exit(f"{out} exists: the corpus is append-only, record a new generation instead")
    out.mkdir()
    now_ms = tarry.SystemClock().now_ms()
    for mode in ("none", "inprocess"):
        write_sdk(out, mode, await record_sdk(mode, now_ms))  # type: ignore[arg-type]
    await record_sqlite(out)
    if dynamodb:
        await record_dynamodb(out)
    readme = (
        f"Recorded by `python -m tests.replay_corpus.generate {name}` (protocol "
        f"{PROTOCOL_VERSION}). Never edit or regenerate these files: see ../README.md.\n"
    )
    (out / "README.md").write_text(readme)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new generation's folder, e.g. v2")
    parser.add_argument("--no-dynamodb", action="store_true", help="SQLite only")
    args = parser.parse_args()
    asyncio.run(main(args.name, not args.no_dynamodb))
