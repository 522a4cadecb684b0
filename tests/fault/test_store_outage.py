"""The store fails in the middle of an attempt — its step cannot be stored, nor its end — and
comes back: the invocation is retried in the same process, completes, and its object key is
free for the next call, with no restart. On every store: SQLite with a real fault (a full disk,
a database that cannot be written; see :mod:`tests.fault.sqlite_faults`), DynamoDB behind a
wrapper that answers every call with the store's own :class:`StoreUnavailable` while it is
down (a network cut would only be retried inside botocore for a minute first)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import tarry
from tarry.runtime.server import Runtime
from tarry.runtime.store import StaleEpoch, Store, StoreUnavailable
from tarry.runtime.store.sqlite import SQLiteStore
from tests.dynamodb_local import dynamodb_table
from tests.fault.sqlite_faults import fill, hold_size, let_grow, small_disk, writer_connection

tally = tarry.VirtualObject("Tally")


@dataclass
class Gates:
    """Where the handler waits for the test (made in each test's event loop)."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)


gates: list[Gates] = []


@tally.handler()
async def add(ctx: tarry.ObjectContext, n: int) -> int:
    total: int = (await ctx.get("total")) or 0
    gates[-1].entered.set()
    await gates[-1].go.wait()  # the store breaks meanwhile
    await ctx.run("pad", lambda: "p" * 50_000)  # a step to store: it needs room
    ctx.set("total", total + n)
    return total + n


class Watched:
    """A store whose calls are the inner store's, except while ``down`` (each then raises
    :class:`StoreUnavailable`, as a store that does not answer); it notes which calls failed,
    so the test knows the fault hit the attempt."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False
        self.failed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                if self.down and name != "close":
                    raise StoreUnavailable("the store does not answer (injected)")
                return await value(*args, **kwargs)
            except StaleEpoch:
                raise
            except Exception:
                self.failed.append(name)
                raise

        return call


@dataclass
class Outage:
    store: Watched
    begin: Callable[[], Awaitable[None]]
    end: Callable[[], Awaitable[None]]
    says: str  # what the attempt's failure names


@pytest.fixture(params=["sqlite: full disk", "sqlite: size limit", "sqlite: read-only",
                        "dynamodb: unavailable"])  # fmt: skip
async def outage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outage]:
    kind = request.param
    async with contextlib.AsyncExitStack() as stack:
        if kind.startswith("dynamodb"):
            watched = Watched(await stack.enter_async_context(dynamodb_table()))

            async def begin() -> None:
                watched.down = True

            async def end() -> None:
                watched.down = False

            yield Outage(watched, begin, end, "the store does not answer")
            return
        where = tmp_path
        if kind == "sqlite: full disk":
            where = stack.enter_context(small_disk(tmp_path / "disk"))
        sqlite = SQLiteStore(where / "tarry.db")
        stack.push_async_callback(sqlite.close)
        watched = Watched(sqlite)
        conn = await writer_connection(sqlite)
        undo: list[Callable[[], None]] = []
        if kind == "sqlite: full disk":

            async def begin() -> None:
                filler = fill(where)
                undo.append(filler.unlink)

            says = "the disk the database is on is full"
        elif kind == "sqlite: size limit":

            async def begin() -> None:
                limit = hold_size(conn)
                undo.append(lambda: let_grow(conn, limit))

            says = "the disk the database is on is full"
        else:

            async def begin() -> None:
                conn.execute("PRAGMA query_only=1")
                undo.append(lambda: conn.execute("PRAGMA query_only=0") and None)

            says = "the database cannot be written"

        async def end() -> None:
            undo.pop()()

        yield Outage(watched, begin, end, says)


async def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_a_store_failure_mid_attempt_is_retried_here_once_the_store_answers(
    outage: Outage,
) -> None:
    gates.append(Gates())
    async with Runtime(cast(Store, outage.store)) as rt:
        await rt.start([tally])
        transport = httpx.ASGITransport(app=rt.ingress_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as client:
            call = asyncio.create_task(client.post("/Tally/k/add", json=1))
            await _until(gates[-1].entered.is_set)  # its attempt runs, and holds the key
            await outage.begin()
            gates[-1].go.set()
            # its step could not be stored, nor the attempt's end
            await _until(lambda: {"append", "end_attempt"} & set(outage.store.failed) != set())
            await outage.end()
            reply = await asyncio.wait_for(call, 30)  # no restart: this process retries it
            assert reply.status_code == 200, reply.text
            assert reply.json() == 1
            inv = await rt.store.get(reply.headers["x-restate-id"])
            assert inv is not None and inv.status == "completed"
            assert inv.attempts >= 2
            assert inv.last_failure is not None and outage.says in inv.last_failure
            # the key is free, and the state was applied once
            gates[-1].go.set()
            again = await asyncio.wait_for(client.post("/Tally/k/add", json=2), 30)
            assert again.status_code == 200, again.text
            assert again.json() == 3
