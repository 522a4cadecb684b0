"""Real DynamoDB faults under a running runtime: DynamoDB Local behind a TCP proxy (:class:`Proxy`)
that the test cuts (every connection closed, new ones refused) and restores, or that answers
every request itself as DynamoDB does when it refuses one (throttling, a 5xx, credentials it does
not accept). Ingress calls and admin requests get 503 with ``Retry-After`` and a message naming
the table and the problem, never a 500 or a traceback; an attempt in flight when the cut comes
completes once DynamoDB answers again, in the same process, and its object key is free. And the
table deleted under the runtime, and a runtime with no credentials at all.

botocore tries each request twice here (``AWS_MAX_ATTEMPTS``, which the store honours), so a
request fails in about a second, not a minute."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import aioboto3
import httpx
import pytest

import tarry
from tarry.runtime.server import Runtime
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.dynamodb_table import delete_table
from tests.conftest import clients, free_port
from tests.dynamodb_local import dynamodb_local, dynamodb_table

# Credentials DynamoDB Local takes, distinctive enough to look for in what clients are told.
ACCESS_KEY_ID = "AKIDTARRYOUTAGE"
SECRET_ACCESS_KEY = "tarrySecretThatMustNotShow"

box = tarry.VirtualObject("Box")


@box.handler()
async def put(ctx: tarry.ObjectContext, value: str) -> int:
    ctx.set("value", value)
    return len(value)


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
    await gates[-1].go.wait()  # DynamoDB is cut off meanwhile
    await ctx.run("note", lambda: "noted")  # a step to store
    ctx.set("total", total + n)
    return total + n


class Proxy:
    """A TCP proxy on a port of its own, in front of ``upstream``.

    :meth:`cut` closes every connection through it and stops listening (a connection is
    refused); :meth:`restore` listens again and pumps bytes both ways. :meth:`answer` makes it
    answer each request itself with a DynamoDB error, read whole first, as DynamoDB refuses
    one; nothing reaches DynamoDB then."""

    def __init__(self, upstream: str) -> None:
        url = urlsplit(upstream)
        assert url.hostname is not None
        self._upstream = (url.hostname, url.port or 80)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._response: bytes | None = None

    async def restore(self) -> None:
        self._response = None
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._drop()

    def answer(self, status: int, code: str) -> None:
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "(the proxy)"}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self._response = head.encode() + body
        self._drop()  # connections open now would go on reaching DynamoDB

    async def close(self) -> None:
        await self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _drop(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(writer)
        try:
            if self._response is not None:
                await self._refuse(reader, writer, self._response)
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._open.add(up_writer)
            pumps = [
                asyncio.ensure_future(_pump(reader, up_writer)),
                asyncio.ensure_future(_pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._open.discard(up_writer)
                up_writer.transport.abort()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # cut, or the client went away
        finally:
            self._open.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _refuse(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        writer.write(response)
        await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        if writer.is_closing():
            return
        writer.write(data)
        await writer.drain()


@dataclass
class Setup:
    store: DynamoDBStore
    proxy: Proxy


@pytest.fixture
async def through_proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    """A DynamoDB store on a fresh table of DynamoDB Local, reached through a :class:`Proxy`."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    upstream = dynamodb_local()
    proxy = Proxy(upstream)
    await proxy.restore()
    try:
        async with dynamodb_table() as store:  # created directly, not through the proxy
            store.sweep_interval_ms = 50  # the runtime's sweep runs while DynamoDB fails too
            # the store's client, made at its first request, goes through the proxy
            monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
            monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
            yield Setup(store, proxy)
    finally:
        await proxy.close()


def assert_unavailable(reply: httpx.Response, table: str, says: str, retry_after: int = 1) -> None:
    """503 with Retry-After and a {code, message} naming the table and the problem, no
    traceback and no credential."""
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["retry-after"]) >= retry_after, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"}, body
    assert table in body["message"], body
    assert says in body["message"], body
    for secret in ("Traceback", ACCESS_KEY_ID, SECRET_ACCESS_KEY):
        assert secret not in reply.text


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def swept_in_vain(caplog: pytest.LogCaptureFixture) -> bool:
    """The runtime's sweep ran while the store failed (and said so)."""
    return any(r.getMessage().startswith("sweeping the store failed") for r in caplog.records)


async def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


# fault -> (the HTTP status and error code the proxy answers with, or None: the proxy is cut;
#           what a 503's message says)
FAULTS: dict[str, tuple[tuple[int, str] | None, str]] = {
    "cut off": (None, "cannot reach DynamoDB"),
    "throttled": ((400, "ThrottlingException"), "DynamoDB throttled requests"),
    "over its throughput": ((400, "ProvisionedThroughputExceededException"), "throttled"),
    "over the request limit": ((400, "RequestLimitExceeded"), "throttled"),
    "an internal error": ((500, "InternalServerError"), "InternalServerError 500"),
    "unavailable": ((503, "ServiceUnavailable"), "ServiceUnavailable 503"),
    "an expired token": ((400, "ExpiredTokenException"), "DynamoDB refused the credentials"),
    "unknown credentials": ((400, "UnrecognizedClientException"), "check AWS_PROFILE"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_requests_while_dynamodb_fails_answer_503_with_retry_after(
    fault: str, through_proxy: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    answer, says = FAULTS[fault]
    store, proxy = through_proxy.store, through_proxy.proxy
    async with Runtime(store) as rt:
        await rt.start([box])
        async with clients(rt) as (ingress, admin):
            if answer is None:
                await proxy.cut()
            else:
                proxy.answer(*answer)
            replies = [
                await ingress.post("/Box/k/put", json="v"),  # an object call, on its key
                await ingress.post("/Box/k/put/send", json="v"),
                await admin.get("/invocations"),
                await admin.get("/state/Box/k"),
                await admin.patch("/state/Box/k", json={"set": {"value": "w"}}),
            ]
            for reply in replies:
                assert_unavailable(reply, store.table, says)
            await _until(lambda: swept_in_vain(caplog))
            await proxy.restore()
            assert await store.list_invocations() == []  # as the 503s said: nothing stored
            assert await store.state("Box", "k") == {}
            reply = await ingress.post("/Box/k/put", json="back")  # and it works again
            assert reply.status_code == 200, reply.text
            assert reply.json() == 4
    assert tracebacks(caplog) == []


async def test_an_attempt_in_flight_when_dynamodb_is_cut_off_completes_once_it_is_back(
    through_proxy: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    store, proxy = through_proxy.store, through_proxy.proxy
    gates.append(Gates())
    async with Runtime(store) as rt:
        await rt.start([tally])
        async with clients(rt) as (ingress, _):
            call = asyncio.create_task(ingress.post("/Tally/k/add", json=1))
            await _until(gates[-1].entered.is_set)  # its attempt runs, and holds the key
            await proxy.cut()
            gates[-1].go.set()

            def failed() -> bool:  # its step could not be stored: the invoker says so (once
                # the store has given up sending it again)
                return any("attempt 1: the store failed" in r.getMessage() for r in caplog.records)

            await _until(failed)
            await proxy.restore()
            reply = await asyncio.wait_for(call, 30)  # no restart: this process retries it
            assert reply.status_code == 200, reply.text
            assert reply.json() == 1
            inv = await store.get(reply.headers["x-restate-id"])
            assert inv is not None and inv.status == "completed"
            assert inv.attempts >= 2
            assert inv.last_failure is not None
            assert "cannot reach DynamoDB" in inv.last_failure, inv.last_failure
            # the key is free, and the state was applied once
            again = await asyncio.wait_for(ingress.post("/Tally/k/add", json=2), 30)
            assert again.status_code == 200, again.text
            assert again.json() == 3
    assert tracebacks(caplog) == []


async def test_a_table_deleted_under_the_runtime_answers_503_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        dynamodb_table() as store,
        Runtime(store) as rt,
        aioboto3.Session().client("dynamodb") as client,
    ):
        store.sweep_interval_ms = 50  # the runtime's sweep runs without the table too
        await rt.start([box])
        async with clients(rt) as (ingress, admin):
            assert (await ingress.post("/Box/k/put", json="v")).status_code == 200
            await delete_table(client, store.table)
            replies = [
                await ingress.post("/Box/k/put", json="w"),
                await admin.get("/invocations"),
                await admin.get("/state/Box/k"),
            ]
            for reply in replies:
                assert_unavailable(reply, store.table, "does not exist", retry_after=30)
                assert "was it deleted?" in reply.json()["message"]
            await _until(lambda: swept_in_vain(caplog))
    assert tracebacks(caplog) == []


async def test_no_credentials_at_all_answers_503_saying_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoint = dynamodb_local()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    async with Runtime(DynamoDBStore("tarry-no-credentials")) as rt, clients(rt) as (_, admin):
        reply = await admin.get("/invocations")
        assert_unavailable(reply, "tarry-no-credentials", "no usable AWS credentials")
        assert "check AWS_PROFILE/credentials" in reply.json()["message"]
