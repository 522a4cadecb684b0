"""Real faults under the SQLite store (see :mod:`tests.fault.sqlite_faults` for how each is made):
a full or unwritable disk and a corrupt file answer 503 with ``Retry-After`` naming the problem
and store nothing; the database file removed or replaced under a running runtime is noticed and
every request refused until a restart; a database that cannot be opened is one line at start."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import tarry
from tarry.runtime.server import Runtime
from tarry.runtime.store import StoreError
from tarry.runtime.store.sqlite import SQLiteStore
from tests.conftest import ROOT, clients, free_port
from tests.fault.sqlite_faults import (
    corrupt_table,
    fill,
    hold_size,
    let_grow,
    small_disk,
    writer_connection,
)

svc = tarry.Service("Once")


@svc.handler()
async def hello(ctx: tarry.Context, name: str) -> str:
    return f"hi {name}"


box = tarry.VirtualObject("Box")


@box.handler()
async def put(ctx: tarry.ObjectContext, value: str) -> int:
    ctx.set("value", value)
    return len(value)


BIG = "x" * 300_000  # a write this size needs new pages, and room on the disk


@dataclass
class Fault:
    store: SQLiteStore
    inject: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]
    says: str  # what a 503's message names


@pytest.fixture(params=["full disk", "size limit", "read-only"])
async def fault(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fault]:
    """A SQLite store and a real fault to inject into it and heal."""
    with contextlib.ExitStack() as mounted:
        where = tmp_path
        if request.param == "full disk":
            where = mounted.enter_context(small_disk(tmp_path / "disk"))
        store = SQLiteStore(where / "tarry.db")
        try:
            if request.param == "full disk":
                fillers: list[Path] = []

                async def inject() -> None:
                    fillers.append(fill(where))

                async def heal() -> None:
                    fillers.pop().unlink()

                yield Fault(store, inject, heal, "the disk the database is on is full")
            elif request.param == "size limit":
                conn = await writer_connection(store)
                limits: list[int] = []

                async def inject() -> None:
                    limits.append(hold_size(conn))

                async def heal() -> None:
                    let_grow(conn, limits.pop())

                yield Fault(store, inject, heal, "the disk the database is on is full")
            else:
                conn = await writer_connection(store)

                async def inject() -> None:
                    conn.execute("PRAGMA query_only=1")

                async def heal() -> None:
                    conn.execute("PRAGMA query_only=0")

                yield Fault(store, inject, heal, "the database cannot be written")
        finally:
            await store.close()


async def test_a_store_fault_answers_503_with_retry_after_and_stores_nothing(
    fault: Fault,
) -> None:
    async with Runtime(fault.store) as rt:
        await rt.start([svc, box])
        async with clients(rt) as (ingress, admin):
            await fault.inject()
            replies = [
                await ingress.post("/Once/hello", json=BIG),  # created and started at once
                await ingress.post("/Once/hello/send", json=BIG),
                await ingress.post("/Box/k/put", json=BIG),  # an object call, on its key
                await admin.patch("/state/Box/k", json={"set": {"value": BIG}}),
            ]
            for reply in replies:
                assert reply.status_code == 503, reply.text
                assert int(reply.headers["retry-after"]) >= 1
                assert fault.says in reply.json()["message"], reply.json()
                assert "Traceback" not in reply.text
            await fault.heal()
            assert await rt.store.list_invocations() == []  # as the 503s said
            assert await rt.store.state("Box", "k") == {}
            # the store takes writes again, and nothing was left holding the key
            reply = await ingress.post("/Once/hello", json=BIG)
            assert reply.status_code == 200, reply.text
            assert reply.json() == f"hi {BIG}"
            reply = await ingress.post("/Box/k/put", json=BIG)
            assert reply.status_code == 200, reply.text
            assert await rt.store.state("Box", "k") == {"value": BIG}


async def test_a_corrupt_database_answers_503_naming_the_corruption(tmp_path: Path) -> None:
    db = tmp_path / "tarry.db"
    async with Runtime(SQLiteStore(db)) as rt:
        await rt.start([svc, box])
        async with clients(rt) as (ingress, _):
            reply = await ingress.post("/Box/k/put", json="v")
            assert reply.status_code == 200
            invocation_id = reply.headers["x-restate-id"]
    corrupt_table(db, "journal")
    async with Runtime(SQLiteStore(db)) as rt:
        await rt.start([svc, box])
        async with clients(rt) as (_, admin):
            reply = await admin.get(f"/invocations/{invocation_id}")  # reads its journal
    assert reply.status_code == 503, reply.text
    assert reply.headers["retry-after"] == "1"
    assert "the database file is corrupt" in reply.json()["message"]


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_the_database_file_removed_or_replaced_under_the_runtime_is_refused(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "tarry.db"
    async with Runtime(SQLiteStore(db)) as rt:
        await rt.start([svc, box])
        async with clients(rt) as (ingress, admin):
            assert (await ingress.post("/Box/k/put", json="a")).status_code == 200
            if how == "removed":
                db.unlink()
            else:
                other = tmp_path / "other.db"
                await SQLiteStore(other).close()
                os.replace(other, db)
            replies = [
                await ingress.post("/Box/k/put", json="b"),
                await ingress.post("/Once/hello/send", json="c"),
                await admin.get("/invocations"),  # reads too: what it would read is gone
                await admin.get("/state/Box/k"),
                await ingress.get("/restate/health"),  # what watches the process sees it too
                await admin.get("/health"),
            ]
            for reply in replies:
                assert reply.status_code == 503, reply.text
                assert int(reply.headers["retry-after"]) >= 1
                message = reply.json()["message"]
                assert f"the database file was {how}" in message
                assert "restart the runtime" in message
                assert str(tmp_path) not in message  # clients are not told server paths


def _one_line(message: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    "case", ["a directory", "not a database", "a file as its directory", "unreadable"]
)
def test_a_database_that_cannot_be_opened_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    db = tmp_path / "data" / "tarry.db"
    expected = {
        "a directory": "it is a directory",
        "not a database": "the database file is not a SQLite database",
        "a file as its directory": "cannot make the directory",
        "unreadable": "Permission denied",
    }[case]
    if case == "a directory":
        db.mkdir(parents=True)
    elif case == "not a database":
        db.parent.mkdir()
        db.write_bytes(os.urandom(8192))
    elif case == "a file as its directory":
        db.parent.write_text("a file, not a directory")
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads and writes any file")
        db.parent.mkdir()
        db.write_bytes(b"")
        db.chmod(0o400)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(db)
    message = str(caught.value)
    _one_line(message)
    assert expected in message
    assert str(db.parent) in message
    if case != "a file as its directory":  # the CLI refuses a --data-dir that is a file itself
        run = subprocess.run(
            [sys.executable, "-m", "tarry.runtime.cli", "dev", "examples/greeter.py",
             "--data-dir", str(db.parent),
             "--ingress-port", str(free_port()), "--admin-port", str(free_port())],
            capture_output=True, text=True, cwd=ROOT, timeout=30,
        )  # fmt: skip
        assert run.returncode == 1
        [line] = run.stderr.strip().splitlines()  # one line: no usage text, no traceback
        assert line.startswith("Error: Invalid value for --data-dir: ")
        assert expected in line and str(db) in line


def test_a_database_on_a_read_only_filesystem_is_one_line_naming_it(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "tarry.db"
        db.write_bytes(b"")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(StoreError) as caught:
            SQLiteStore(db)
    _one_line(str(caught.value))
    assert f"cannot open the database {db}: Read-only file system" in str(caught.value)
