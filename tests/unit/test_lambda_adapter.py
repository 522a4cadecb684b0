"""The Lambda adapter: Invoke payloads in, protocol messages out (saved event fixtures, an
in-memory checkpoint channel, and a context whose clock runs out)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tarry
from examples.greeter import greeter
from tarry.lambda_adapter import MAX_PAYLOAD_BYTES, LambdaHandler, lambda_handler
from tarry.protocol import CheckpointDeferred, Command, Completion, InvokeRequest

from .fakes import MemoryChannel, request

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def handler() -> Iterator[LambdaHandler]:
    h = lambda_handler([greeter])
    yield h
    h.close()


def greet_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / "lambda_invoke_greet.json").read_text())
    return event


def test_discover_and_invoke_events(handler: LambdaHandler) -> None:
    discovery = handler({"discover": True}, None)
    assert [s["name"] for s in discovery["services"]] == ["Greeter"]

    response = handler(greet_event(), None)
    assert response["outcome"] == {"kind": "completed", "value": "Hello Lambda!"}
    assert response["commands"] == [{"kind": "output", "value": "Hello Lambda!"}]


def test_a_warm_function_keeps_its_event_loop(handler: LambdaHandler) -> None:
    loops = []
    for _ in range(3):
        assert handler(greet_event(), None)["outcome"]["kind"] == "completed"
        loops.append(handler._loop)
    assert loops[0] is loops[1] is loops[2]
    assert loops[0] is not None and not loops[0].is_closed()


@pytest.mark.parametrize(
    ("event", "code", "says"),
    [
        ({**greet_event(), "handler": "nope"}, 404, "no handler Greeter/nope"),
        ({**greet_event(), "protocol": 99}, 400, "protocol version 99"),
        ({k: v for k, v in greet_event().items() if k != "journal"}, 400, "no journal"),
        ({"hello": "world"}, 400, "not a tarry protocol message"),
        ([1, 2, 3], 400, "not a tarry protocol message"),
        ({**greet_event(), "checkpoint": "dynamodb"}, 400, "needs the table"),
    ],
)
def test_what_cannot_be_served_gets_an_error_reply(
    handler: LambdaHandler, event: Any, code: int, says: str
) -> None:
    reply = handler(event, None)
    assert reply["protocol"] == 1
    assert reply["error"]["code"] == code
    assert says in reply["error"]["message"]
    assert set(reply) == {"protocol", "error"}


# -- the deadline ------------------------------------------------------------------------------

steps = tarry.Service("Steps")
RUNS: list[int] = []


@steps.handler()
async def twenty(ctx: tarry.Context, seconds: float) -> int:
    total = 0
    for i in range(20):

        async def step(i: int = i) -> int:
            await asyncio.sleep(seconds)
            RUNS.append(i)
            return i

        total += await ctx.run(f"step {i}", step)
    return total


class Context:
    """A Lambda context whose time runs out ``budget_ms`` after it is made."""

    def __init__(self, budget_ms: int) -> None:
        self._end = asyncio.get_event_loop_policy().get_event_loop().time() + budget_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - asyncio.get_running_loop().time()) * 1000)


class TableChannel(MemoryChannel):
    """The journal as a function's table would hold it: appends go to a list, and a request
    built from it replays them."""

    def __init__(self, journal: list[Command], completions: dict[str, Completion]) -> None:
        super().__init__()
        self.journal = journal
        self.stored = completions

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        await super().append(commands, completions)
        self.journal += commands
        self.stored.update(completions)


def test_a_handler_longer_than_the_timeout_finishes_across_invocations() -> None:
    """Twenty 50 ms steps with 400 ms per invocation: each invocation stops before its time is
    up, with every finished step stored; the next carries on. Every step runs exactly once."""
    RUNS.clear()
    h = lambda_handler([steps], margin=timedelta(milliseconds=100))
    journal: list[Command] = [{"kind": "input", "value": 0.05}]
    stored: dict[str, Completion] = {}
    invocations = 0
    try:
        while True:
            invocations += 1
            assert invocations < 40, "the handler made no progress"
            channel = TableChannel(journal, stored)
            req = request("Steps", "twenty", 0.05, checkpoint="channel")
            req["journal"], req["completions"] = list(journal), dict(stored)

            async def attempt(req: InvokeRequest = req, channel: TableChannel = channel) -> Any:
                response = await h.endpoint.invoke(req, channel, h._deadline(Context(400)))
                return response

            response = asyncio.run(attempt())
            journal += response["commands"]
            stored.update(response["completions"])
            if response["outcome"]["kind"] == "completed":
                break
            assert response["outcome"]["kind"] == "flush"
    finally:
        h.close()
    assert response["outcome"]["value"] == sum(range(20))
    assert sorted(RUNS) == list(range(20))  # each step exactly once
    assert invocations >= 3


def test_a_step_longer_than_the_whole_budget_fails_its_attempts() -> None:
    RUNS.clear()
    h = lambda_handler([steps], margin=timedelta(milliseconds=100))
    journal: list[Command] = []

    async def attempt() -> Any:
        req = request("Steps", "twenty", 1.0, journal=journal, checkpoint="channel")
        return await h.endpoint.invoke(req, MemoryChannel(), h._deadline(Context(300)))

    try:
        first = asyncio.run(attempt())
        journal += first["commands"]
        second = asyncio.run(attempt())
    finally:
        h.close()
    # The step was stopped before it finished. The first attempt stored its command; the
    # second stored nothing new, so it is a failed attempt (retried with backoff, paused after
    # too many): it cannot loop unseen.
    assert RUNS == []
    assert first["outcome"] == {"kind": "flush"}
    assert [c["kind"] for c in first["commands"]] == ["run"]
    assert second["outcome"]["kind"] == "retry"
    assert "time ran out" in second["outcome"]["error"]
    assert second["commands"] == []


# -- what the channel does not take ----------------------------------------------------------

mixed = tarry.Service("Mixed")


@mixed.handler()
async def send_then_step(ctx: tarry.Context, name: str) -> str:
    ctx.service_send(twenty, 0.0)
    return await ctx.run("greet", lambda: f"Hello {name}!")


class DeferringChannel(MemoryChannel):
    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        if any(c["kind"] not in ("run", "output") for c in commands):
            raise CheckpointDeferred
        await super().append(commands, completions)


async def test_a_batch_the_channel_defers_ends_the_attempt_with_it() -> None:
    channel = DeferringChannel()
    response = await tarry.Endpoint([mixed, steps]).invoke(
        request("Mixed", "send_then_step", "Ann", checkpoint="channel"), channel
    )
    assert channel.appends == []
    assert response["outcome"] == {"kind": "flush"}
    assert [c["kind"] for c in response["commands"]] == ["send", "run"]
    assert response["completions"] == {"2": {"value": "Hello Ann!"}}
    assert response["checkpointed"] == {"commands": 0, "completions": 0}


async def test_an_append_that_failed_drops_what_it_may_or_may_not_have_stored() -> None:
    response = await tarry.Endpoint([steps]).invoke(
        request("Steps", "twenty", 0.0, checkpoint="channel"), MemoryChannel(fail=True)
    )
    assert response["outcome"]["kind"] == "retry"
    assert "the store is unreachable" in response["outcome"]["error"]
    assert response["commands"] == [] and response["completions"] == {}


# -- payload limits --------------------------------------------------------------------------

big = tarry.VirtualObject("Big")


@big.handler()
async def fill(ctx: tarry.ObjectContext, entries: int) -> None:
    for i in range(entries):
        ctx.set(f"part {i}", "x" * 300_000)


def test_a_response_over_lambdas_limit_is_stored_through_the_channel_first() -> None:
    channel = MemoryChannel()
    h = lambda_handler([big])

    class Table:
        writes = items = 0  # (what the function's log line reports)

        def channel(self, request: InvokeRequest) -> MemoryChannel:
            return channel

    h.journal_table = Table()  # type: ignore[assignment]
    try:
        event = {
            **request("Big", "fill", 25, key="k", state={}, checkpoint="dynamodb"),
            "table": "t",
        }
        response = h(event, None)
    finally:
        h.close()
    assert response["outcome"] == {"kind": "completed", "value": None}
    assert response["commands"] == []
    assert response["checkpointed"] == {"commands": 26, "completions": 0}  # 25 sets + output
    assert len(channel.commands) == 26
    assert len(json.dumps(response)) < MAX_PAYLOAD_BYTES


def test_a_response_over_lambdas_limit_without_a_channel_fails_naming_the_limit() -> None:
    h = lambda_handler([big])
    try:
        response = h(request("Big", "fill", 25, key="k", state={}), None)
    finally:
        h.close()
    assert response["outcome"]["kind"] == "failed"
    assert response["outcome"]["failure"]["code"] == 413
    assert "6 MB" in response["outcome"]["failure"]["message"]
    assert response["commands"] == []
