"""At-most-once steps in the replay engine: the step is stored before its body starts, and an
attempt that finds it stored without a result completes it as interrupted (StepInterrupted)
instead of running it again. Each case is one attempt, checked against what it must store."""

from typing import Any

import pytest

import tarry
from tarry import Context, StepInterrupted, TerminalError
from tarry.protocol import CheckpointDeferred, Command, Completion, InvokeRequest

from .fakes import MemoryChannel, invoke, request

BODY: list[str] = []  # what the step bodies did, in order
AMO: Command = {"kind": "run", "name": "wire", "at_most_once": True}


def wire_service() -> tarry.Service:
    svc = tarry.Service("Bank")

    @svc.handler()
    async def wire(ctx: Context, amount: int) -> str:
        def send() -> str:
            BODY.append(f"wired {amount}")
            return f"wired {amount}"

        try:
            return str(await ctx.run("wire", send, at_most_once=True))
        except StepInterrupted as exc:
            assert isinstance(exc, TerminalError)
            return f"interrupted: {exc.message}"

    @svc.handler()
    async def uncaught(ctx: Context) -> str:
        return str(await ctx.run("wire", lambda: BODY.append("ran") or "ok", at_most_once=True))

    @svc.handler()
    async def failing(ctx: Context, at_most_once: bool) -> str:
        def boom() -> str:
            BODY.append("boom")
            raise RuntimeError("the bank is down")

        if at_most_once:
            return str(await ctx.run("wire", boom, at_most_once=True))
        return str(await ctx.run("wire", boom, max_attempts=1))

    @svc.handler()
    async def retried(ctx: Context) -> str:
        return str(await ctx.run("wire", lambda: "x", at_most_once=True, max_attempts=3))

    @svc.handler()
    async def send_then_wire(ctx: Context) -> str:
        ctx.generic_send("Ledger", "note", "wiring")
        return str(await ctx.run("wire", lambda: BODY.append("ran") or "ok", at_most_once=True))

    @svc.handler()
    async def plain(ctx: Context) -> str:
        return str(await ctx.run("wire", lambda: BODY.append("ran") or "ok"))

    return svc


def at(epoch: int, req: InvokeRequest) -> InvokeRequest:
    req["epoch"] = epoch
    return req


@pytest.fixture(autouse=True)
def _fresh_body() -> None:
    BODY.clear()


class DeferringChannel(MemoryChannel):
    """A channel that leaves every batch to the runtime (as the Lambda DynamoDB channel does
    with a batch holding a call or a send)."""

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        raise CheckpointDeferred


class WatchedChannel(MemoryChannel):
    """Notes, at each append, how many bodies had run: to see the step stored before its body."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies_at_append: list[int] = []

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        self.bodies_at_append.append(len(BODY))
        await super().append(commands, completions)


async def test_with_a_channel_the_step_is_stored_before_its_body_runs() -> None:
    channel = WatchedChannel()
    req = request("Bank", "wire", 5, checkpoint="channel")
    response = await invoke(wire_service(), req, channel)
    assert channel.appends == [([AMO], {}), ([], {"1": {"value": "wired 5"}})]
    assert channel.bodies_at_append == [0, 1]  # stored first, the body ran after
    assert BODY == ["wired 5"]
    assert response["outcome"] == {"kind": "completed", "value": "wired 5"}


async def test_without_a_channel_the_attempt_ends_to_store_it_and_the_next_runs_it() -> None:
    first = await invoke(wire_service(), at(4, request("Bank", "wire", 5)))
    assert BODY == []  # not run: nothing of it was durable yet
    assert first["outcome"] == {"kind": "flush"}
    assert first["commands"] == [{**AMO, "runs_in": 5}]

    journal: list[Any] = first["commands"]
    second = await invoke(wire_service(), at(5, request("Bank", "wire", 5, journal=journal)))
    assert BODY == ["wired 5"]
    assert second["outcome"] == {"kind": "flush"}
    assert second["completions"] == {"1": {"value": "wired 5"}}


@pytest.mark.parametrize(
    ("recorded", "epoch"),
    [
        (AMO, 2),  # stored through a channel by an earlier attempt: the body may have run
        ({**AMO, "runs_in": 5}, 6),  # the attempt meant to run it began, and did not finish
        ({**AMO, "runs_in": 5}, 7),
    ],
)
async def test_a_step_stored_without_its_result_is_interrupted_not_run_again(
    recorded: Command, epoch: int
) -> None:
    channel = MemoryChannel()
    req = at(epoch, request("Bank", "wire", 5, journal=[recorded], checkpoint="channel"))
    response = await invoke(wire_service(), req, channel)
    assert BODY == []
    ((_, stored),) = channel.appends
    failure = stored["1"]["failure"]
    assert failure["interrupted"] is True and failure["code"] == 500
    assert "run 'wire' was interrupted" in failure["message"]
    assert response["outcome"] == {
        "kind": "completed",
        "value": f"interrupted: {failure['message']}",
    }


async def test_the_interruption_is_journaled_and_every_replay_sees_it() -> None:
    first = await invoke(wire_service(), at(3, request("Bank", "wire", 5, journal=[AMO])))
    assert first["outcome"] == {"kind": "flush"}  # no channel: it ends to store the result
    (completion,) = first["completions"].values()
    req = request("Bank", "wire", 5, journal=[AMO], completions=first["completions"])
    replay = await invoke(wire_service(), at(9, req))
    assert BODY == []
    assert replay["outcome"]["kind"] == "completed"
    assert replay["outcome"]["value"] == f"interrupted: {completion['failure']['message']}"


async def test_uncaught_it_fails_the_invocation_as_a_terminal_error() -> None:
    channel = MemoryChannel()
    req = at(2, request("Bank", "uncaught", journal=[AMO], checkpoint="channel"))
    response = await invoke(wire_service(), req, channel)
    assert BODY == []
    outcome = response["outcome"]
    assert outcome["kind"] == "failed"
    assert outcome["failure"]["code"] == 500
    assert "was interrupted" in outcome["failure"]["message"]


async def test_a_channel_that_defers_the_step_hands_over_what_comes_before_it() -> None:
    """The next attempt stores the step through its channel itself, then runs the body (so
    that the channel's fence, not the epoch alone, decides who runs it)."""
    req = at(3, request("Bank", "send_then_wire", checkpoint="dynamodb"))
    response = await invoke(wire_service(), req, DeferringChannel())
    assert BODY == []
    assert response["outcome"] == {"kind": "flush"}
    assert [c["kind"] for c in response["commands"]] == ["send"]

    journal: list[Any] = response["commands"]
    req = at(4, request("Bank", "send_then_wire", journal=journal, checkpoint="dynamodb"))
    channel = MemoryChannel()
    done = await invoke(wire_service(), req, channel)
    assert channel.appends[0] == ([AMO], {})
    assert BODY == ["ran"]
    assert done["outcome"] == {"kind": "completed", "value": "ok"}


async def test_a_checkpoint_that_fails_stops_the_attempt_before_the_body() -> None:
    req = request("Bank", "wire", 5, checkpoint="channel")
    response = await invoke(wire_service(), req, MemoryChannel(fail=True))
    assert BODY == []
    assert response["outcome"]["kind"] == "retry"
    assert response["commands"] == []  # it may or may not be stored: the next attempt knows


@pytest.mark.parametrize("at_most_once", [True, False])
async def test_a_failing_body_is_terminal_at_once(at_most_once: bool) -> None:
    """At most once, and a plain step with ``max_attempts=1``: the failure is the result."""
    channel = MemoryChannel()
    req = request("Bank", "failing", at_most_once, checkpoint="channel")
    response = await invoke(wire_service(), req, channel)
    assert BODY == ["boom"]
    assert response["outcome"]["kind"] == "failed"
    assert "the bank is down" in response["outcome"]["failure"]["message"]
    (failure,) = (c["failure"] for c in channel.completions.values())
    assert "interrupted" not in failure  # it ran and failed: a plain TerminalError


async def test_retry_options_are_refused_for_an_at_most_once_step() -> None:
    response = await invoke(wire_service(), request("Bank", "retried"))
    assert response["outcome"]["kind"] == "retry"
    assert "never retried" in response["outcome"]["error"]


async def test_a_run_journaled_without_the_option_runs_again_as_before() -> None:
    """A journal from before at-most-once steps: a run without its result runs again."""
    journal: list[Any] = [{"kind": "run", "name": "wire"}]
    req = at(2, request("Bank", "plain", journal=journal, checkpoint="channel"))
    channel = MemoryChannel()
    response = await invoke(wire_service(), req, channel)
    assert BODY == ["ran"]
    assert channel.completions == {"1": {"value": "ok"}}
    assert response["outcome"] == {"kind": "completed", "value": "ok"}
