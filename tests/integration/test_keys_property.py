"""Object and workflow keys, property-tested: any Unicode key (``/``, ``#``, ``..``, ``%``, NUL,
astral characters, long ones), sent percent-encoded, is refused with 400 and a message, or
round-trips exactly — the handler sees it as ``ctx.key()``, and what it keeps under it is read back
under it through the ingress and the admin API — and two different keys, even ones that
normalise alike (NFC/NFD, ``a/b`` and ``a%2Fb``), never share state. On every store."""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarry.limits import MAX_KEY_BYTES
from tarry.runtime.server import Runtime
from tests.apps.keys import flow, keys
from tests.conftest import APPS, TarryProcess, clients
from tests.contract.conftest import STORES

pytestmark = pytest.mark.integration
T = TypeVar("T")

# Pieces that paths, escaping and the stores' composite keys treat specially.
SPECIALS = [
    "/", "#", "..", ".", "%", "%2F", "%2f", "%25", "%00", "\x00", "?", "&", "=", "+", " ", "\\",
    ";", "~", "\t", "\n", "é", "e\u0301", "Å", "A\u030a", "\u212b", "ﬁ", "\ufeff", "\u202e",
    "\U0001f600", "\U00010348", "send", "restate", "state", "a/b", "a%2Fb", "obj#", "inv#",
    "idem#", "state#",
]  # fmt: skip
crafted = st.lists(st.sampled_from(SPECIALS) | st.text(min_size=1, max_size=3), min_size=1,
                   max_size=6).map("".join)  # fmt: skip
arbitrary = st.text(min_size=1, max_size=24)  # any code point but surrogates, astral ones too
long = st.text(st.characters(max_codepoint=0x7FF), min_size=100, max_size=200)  # near 256 B
a_key = st.one_of(crafted, arbitrary, long)


def variants(key: str) -> list[str]:
    """Keys that look like ``key`` but are not it (as a careless normalisation would make)."""
    return [key, unicodedata.normalize("NFD", key), unicodedata.normalize("NFC", key),
            key.replace("/", "%2F"), key.replace("%2F", "/"), key.replace("#", "%23"),
            key + "\x00", key.strip()]  # fmt: skip


# a key and, maybe, look-alikes of it: each is its own object
key_sets = a_key.flatmap(
    lambda k: st.lists(st.sampled_from(variants(k)), min_size=1, max_size=3, unique=True)
    .map(lambda ks: [k, *(v for v in ks if v not in ("", k))])
)  # (the empty key cannot be written in a path: see test_an_empty_key_is_refused)
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,  # nothing remembered between runs: every CI run tries the same examples
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def encoded(key: str) -> str:
    """``key`` as one path segment, every byte but letters and digits percent-encoded (``.``
    too: a client normalises ``..`` segments away)."""
    return quote(key, safe="").replace(".", "%2E")


def valid(key: str) -> bool:
    return 0 < len(key.encode()) <= MAX_KEY_BYTES


class Model:
    """What each key holds, and which keys' workflows have run."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.ran: set[str] = set()
        self.next = 0

    def value(self) -> str:
        self.next += 1
        return f"value-{self.next}"


def _refused(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    assert "key" in reply.json()["message"]


async def check_key(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, key: str, model: Model
) -> None:
    path = encoded(key)
    value = model.value()
    put = await ingress.post(f"/Keys/{path}/put", json=value)
    run = await ingress.post(f"/KeyFlow/{path}/run", json=value)
    state = await admin.get(f"/state/Keys/{path}")
    if not valid(key):
        for reply in (put, run, state):
            _refused(reply)
        return
    assert put.status_code == 200, put.text
    assert put.json() == key
    model.values[key] = value
    if key in model.ran:  # once per workflow key
        assert run.status_code == 409, run.text
    else:
        assert run.status_code == 200, run.text
        assert run.json() == key
        model.ran.add(key)
        output = await ingress.get(f"/restate/workflow/KeyFlow/{path}/output")
        assert output.json() == key
        assert (await admin.get(f"/state/KeyFlow/{path}")).json()["state"] == {"v": value}
    assert state.json() == {"service": "Keys", "key": key, "state": {"v": value}}


async def check_model(ingress: httpx.AsyncClient, admin: httpx.AsyncClient, model: Model) -> None:
    """Every key still holds what was last written under it: no two keys shared an object."""
    for key, value in model.values.items():
        got = await ingress.post(f"/Keys/{encoded(key)}/get")
        assert got.json() == {"key": key, "v": value}, key


class Served:
    """The runtime on an event loop of its own, in a thread, so that a (synchronous)
    hypothesis test can drive it example by example and check everything after."""

    def __init__(self, store: str, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()
        self.ingress, self.admin = self.run(self._open(store, tmp_path))

    async def _open(self, store: str, tmp_path: Path) -> tuple[httpx.AsyncClient, ...]:
        opened = await self.stack.enter_async_context(STORES[store](tmp_path))
        runtime = Runtime(opened)
        await runtime.start([keys, flow])
        self.stack.push_async_callback(runtime.stop)
        return await self.stack.enter_async_context(clients(runtime))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(params=list(STORES))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    runtime = Served(request.param, tmp_path)
    try:
        yield runtime
    finally:
        runtime.close()


def test_keys_are_refused_or_round_trip_and_never_share_state(served: Served) -> None:
    model = Model()

    @SETTINGS
    @given(key_sets)
    def each(keys_: list[str]) -> None:
        for key in keys_:
            served.run(check_key(served.ingress, served.admin, key, model))

    each()
    served.run(check_model(served.ingress, served.admin, model))
    assert len(model.values) >= 20  # most examples were keys a store keeps


def test_an_empty_key_is_refused(served: Served) -> None:
    for path in ("/Keys//put", "/KeyFlow//run"):
        reply = served.run(served.ingress.post(path, json="v"))
        assert reply.status_code == 404, reply.text
        assert "is keyed: use" in reply.json()["message"]


# Through a real `tarry dev` (uvicorn's parsing of the path, a real socket): a few of each kind.
EXAMPLES = ["a/b", "a%2Fb", "..", ".", "%", "#", "obj#x", "\x00", "a\x00b", "a\nb", "\r\n",
            "é", "e\u0301", "\U0001f600", " ", "k" * MAX_KEY_BYTES, "é" * (MAX_KEY_BYTES // 2),
            "k" * (MAX_KEY_BYTES + 1), "\U0001f600" * 65]  # fmt: skip


def test_keys_through_a_real_process(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(str(APPS / "keys.py"), *store_args).start()
    model = Model()

    async def check() -> None:
        async with (
            httpx.AsyncClient(base_url=p.ingress, timeout=30) as ingress,
            httpx.AsyncClient(base_url=p.admin, timeout=30) as admin,
        ):
            for key in EXAMPLES:
                await check_key(ingress, admin, key, model)
            await check_model(ingress, admin, model)

    asyncio.run(check())
    assert set(model.values) == {k for k in EXAMPLES if valid(k)}
