"""Injected store faults: a write that fails is retried, not lost and not left running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

import tarry
from tarry.protocol import Command, Completion
from tarry.runtime.server import Runtime
from tarry.runtime.store import (
    AttemptEnd,
    Created,
    Effects,
    Invocation,
    NewInvocation,
    StoreBusy,
)
from tarry.runtime.store.sqlite import SQLiteStore

svc = tarry.Service("Once")
calls: list[str] = []


@svc.handler()
async def hello(ctx: tarry.Context, name: str) -> str:
    calls.append(name)
    return f"hi {name}"


class FailingEnds(SQLiteStore):
    """SQLite whose first ``failures`` end_attempt writes raise, as a full disk would."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def end_attempt(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        end: AttemptEnd,
        now: int,
    ) -> Effects:
        if self.failures > 0 and end.kind == "completed":
            self.failures -= 1
            raise OSError("disk I/O error (injected)")
        return await super().end_attempt(
            invocation_id, epoch, commands, completions, children, end, now
        )


async def test_a_failed_write_of_the_result_is_retried(tmp_path: Path) -> None:
    store = FailingEnds(tmp_path / "t.db", failures=1)
    async with Runtime(store) as rt:
        await rt.start([svc])
        transport = httpx.ASGITransport(app=rt.ingress_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as client:
            reply = await client.post("/Once/hello", json="Ann", timeout=10)
        assert reply.json() == "hi Ann"
        inv = await rt.store.get(reply.headers["x-restate-id"])
        assert inv is not None
        assert inv.status == "completed"
        assert inv.attempts == 2
        assert inv.last_failure is not None and "disk I/O error" in inv.last_failure
    assert store.failures == 0
    assert calls == ["Ann", "Ann"]  # the handler ran again: its first result was never stored


class Busy(SQLiteStore):
    """SQLite that refuses every write and lookup as a contended shared store would."""

    async def create(self, *args: object, **kwargs: object) -> Created:
        raise StoreBusy("a write lost to concurrent writers (injected)")

    async def get(self, invocation_id: str) -> Invocation | None:
        raise StoreBusy("a read timed out (injected)")

    async def complete_awakeable(self, *args: object, **kwargs: object) -> Any:
        raise StoreBusy("a write lost to concurrent writers (injected)")


async def test_a_busy_store_answers_503_with_retry_after_on_every_api(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with Runtime(Busy(db)) as rt:
        await rt.start([svc])
        apps = {"ingress": rt.ingress_app(), "admin": rt.admin_app()}
        requests = [
            ("ingress", "POST", "/Once/hello"),
            ("ingress", "GET", "/restate/invocation/inv_1/output"),
            ("ingress", "POST", "/restate/awakeables/awk_2any/resolve"),
            ("admin", "GET", "/invocations/inv_1"),
            ("admin", "PATCH", "/invocations/inv_1/cancel"),
        ]
        for app, method, path in requests:
            transport = httpx.ASGITransport(app=apps[app])
            base = "http://127.0.0.1"  # the tokenless admin API answers loopback names only
            async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                reply = await client.request(method, path, json="Ann")
            assert reply.status_code == 503, (path, reply.text)
            assert reply.headers["retry-after"] == "1"
            assert "injected" in reply.json()["message"]
    # nothing was stored, not even by the attempt a plain call starts alongside its creation
    store = SQLiteStore(db)
    try:
        assert await store.list_invocations() == []
    finally:
        await store.close()
