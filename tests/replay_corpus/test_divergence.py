"""Code that no longer matches its journal: recorded attempts of the corpus replayed against
changed copies of their handlers, and a handler changed between two attempts of a live
invocation, on each store. Either way the attempt stops with the mismatch error at the first
entry that differs, the invocation is paused (at once: a replay would differ again, so it is
not retried), and nothing the changed code does from there takes effect: no state change, no
call or send started, no step body run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tarry
from tarry import Context, ObjectContext
from tarry.runtime.server import Runtime
from tarry.runtime.store import Store
from tests.conftest import clients
from tests.contract.conftest import STORES

from . import handlers
from .test_replay_corpus import GENERATIONS, replay

RAN: list[str] = []  # step bodies of the changed handlers that ran


def _body(step: str) -> str:
    RAN.append(step)
    return step


# Changed copies of corpus handlers (the same service and handler names), each differing at
# one entry of the journal it replays, and doing more after it.
renamed = tarry.Service("Corpus")


@renamed.handler()
async def steps(ctx: Context, name: str) -> str:
    await ctx.run("greet", _body, "greet")  # the journal has run('hello')
    await ctx.run("after", _body, "after")
    return "changed"


sending = tarry.Service("Corpus")


@sending.handler("calls")
async def calls_sending(ctx: Context, key: str) -> str:
    await ctx.object_call(handlers.add, key=key, arg=2)
    ctx.service_send(handlers.echo, "sneaked")  # the journal has send('Ledger/add')
    await ctx.run("after", _body, "after")
    return "changed"


other_key = tarry.Service("Corpus")


@other_key.handler("calls")
async def calls_another_key(ctx: Context, key: str) -> str:
    await ctx.object_call(handlers.add, key=key + "-other", arg=2)  # the journal has key k1
    ctx.service_send(handlers.echo, "sneaked")
    return "changed"


setting = tarry.Workflow("Signup")


@setting.main()
async def run(ctx: tarry.WorkflowContext, email: str) -> str:
    ctx.set("email", email)
    ctx.set("name", "sneaked")  # the journal has peek_promise('verified')
    await ctx.run("after", _body, "after")
    return "changed"


CASES = {
    # (corpus file, attempt, changed services) -> (entry, what the journal has, what the code does)
    "a step renamed": (("Corpus.steps", 1, renamed), (1, "run('hello')", "run('greet')")),
    "a send instead": (
        ("Corpus.calls", 2, sending),
        (2, "send('Ledger/add')", "send('Corpus/echo')"),
    ),
    "a call to another key": (
        ("Corpus.calls", 2, other_key),
        (1, "call('Ledger/add') on key 'k1'", "call('Ledger/add') on key 'k1-other'"),
    ),
    "a state change instead": (
        ("Signup.run", 1, setting),
        (2, "peek_promise('verified')", "set_state('name')"),
    ),
}


@pytest.mark.parametrize("mode", ["none", "channel"])
@pytest.mark.parametrize("case", list(CASES))
async def test_a_corpus_journal_replayed_against_changed_code_stops_at_the_divergence(
    case: str, mode: str
) -> None:
    (name, attempt, services), (index, recorded, now) = CASES[case]
    RAN.clear()
    for generation in GENERATIONS:
        entry = json.loads((generation / "sdk" / mode / f"{name}.json").read_text())
        request = entry["attempts"][attempt]["request"]
        appends, response = await replay(entry, request, [services])
        assert response["outcome"] == {
            "kind": "retry",
            "non_deterministic": True,
            "error": f"non-deterministic replay at journal entry {index}: the journal has "
            f"{recorded} but the handler now does {now}",
        }
        assert (appends, response["commands"], response["completions"]) == ([], [], {})
        assert RAN == []


# -- live: the handler changes between attempts ----------------------------------------------

VERSION = {"now": 1}
drift = tarry.VirtualObject("Drift")


@drift.handler()
async def work(ctx: ObjectContext) -> str:
    ctx.set("a", 1)
    if VERSION["now"] == 2:  # deployed while the invocation slept
        ctx.object_send(note, key=ctx.key(), arg="sneaked")  # the journal has the sleep
        ctx.set("b", "changed")
        await ctx.run("after", _body, "after")
    await ctx.sleep(timedelta(milliseconds=200))
    ctx.set("b", 2)
    return "done"


@drift.handler()
async def note(ctx: ObjectContext, text: str) -> str:
    ctx.set("note", text)
    return text


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path) as s:
        yield s


async def until(check: Any, timeout_s: float = 20) -> Any:
    for _ in range(int(timeout_s / 0.02)):
        if found := await check():
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time allowed")


async def test_a_handler_changed_between_attempts_is_paused_and_does_nothing_more(
    store: Store,
) -> None:
    VERSION["now"], RAN[:] = 1, []
    rt = Runtime(store)
    await rt.start([drift], "drift")
    try:
        async with clients(rt) as (ingress, admin):
            sent = await ingress.post("/Drift/k/work/send")
            invocation_id = sent.json()["invocationId"]

            async def status(wanted: str) -> dict[str, Any] | None:
                inv: dict[str, Any] = (await admin.get(f"/invocations/{invocation_id}")).json()
                return inv if inv["status"] == wanted else None

            await until(lambda: status("suspended"))
            VERSION["now"] = 2
            paused = await until(lambda: status("paused"))  # the sleep ended; replayed; refused
            assert paused["attempts"] == 2  # not retried: a replay would differ again
            assert paused["last_failure"] == (
                "non-deterministic replay at journal entry 2: the journal has sleep but the "
                "handler now does send('Drift/note')"
            )
            kinds = [e["command"]["kind"] for e in paused["journal"]]
            assert kinds == ["input", "set_state", "sleep"]
            assert (await admin.get("/state/Drift/k")).json()["state"] == {"a": 1}
            listed = (await admin.get("/invocations", params={"service": "Drift"})).json()
            assert [i["handler"] for i in listed["invocations"]] == ["work"]  # no send started
            assert RAN == []

            VERSION["now"] = 1  # the old code back: resumed, it finishes where it stopped
            resumed = await admin.post(f"/invocations/{invocation_id}/resume",
                                       headers={"content-type": "application/json"})  # fmt: skip
            assert resumed.status_code in (200, 202, 204), resumed.text
            done = await until(lambda: status("completed"))
            assert done["completion"] == {"value": "done"}
            assert (await admin.get("/state/Drift/k")).json()["state"] == {"a": 1, "b": 2}
    finally:
        await rt.stop()


def test_the_divergence_cases_cover_every_generation() -> None:
    assert GENERATIONS
    for generation in GENERATIONS:
        for (name, _, _), _ in CASES.values():
            assert (generation / "sdk" / "none" / f"{name}.json").exists()
