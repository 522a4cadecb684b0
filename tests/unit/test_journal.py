"""The replay engine without I/O.

First the pure :class:`~tarry._journal.Journal` state machine, then one level up:
``Endpoint.invoke`` with hand-built requests (journal in, commands and outcome out) for
handlers, ``ctx.run``, sleeps, failures and non-determinism. State, logging, combinators and
calls are in ``test_replay.py``.
"""

import dataclasses
from datetime import timedelta

import pytest

import tarry
from tarry import Context, TerminalError
from tarry._journal import Journal, describe
from tarry.endpoint import ProtocolError
from tarry.errors import NonDeterminismError
from tarry.protocol import Command

from .fakes import T0, MemoryChannel, invoke, request

INPUT: Command = {"kind": "input", "value": 1}


# -- Journal ------------------------------------------------------------------------------


def test_a_journal_starts_with_its_input() -> None:
    with pytest.raises(ValueError, match="input"):
        Journal([], {})
    with pytest.raises(ValueError, match="input"):
        Journal([{"kind": "run", "name": "a"}], {})


def test_new_commands_are_recorded_after_the_journal() -> None:
    j = Journal([INPUT], {})
    assert not j.replaying
    assert j.next({"kind": "run", "name": "a"}) == (1, {"kind": "run", "name": "a"})
    assert j.next({"kind": "sleep", "name": "", "wake_at": 5}) == (
        2,
        {"kind": "sleep", "name": "", "wake_at": 5},
    )
    assert j.position == 3
    assert j.peek_unflushed() == (
        [{"kind": "run", "name": "a"}, {"kind": "sleep", "name": "", "wake_at": 5}],
        {},
    )


def test_replay_returns_the_recorded_command() -> None:
    j = Journal([INPUT, {"kind": "sleep", "name": "nap", "wake_at": 100}], {})
    assert j.replaying
    index, stored = j.next({"kind": "sleep", "name": "nap", "wake_at": 999})
    assert (index, stored["wake_at"]) == (1, 100)
    assert not j.replaying
    assert j.peek_unflushed() == ([], {})
    assert j.recorded_at(1) == {"kind": "sleep", "name": "nap", "wake_at": 100}
    assert j.recorded_at(2) is None


@pytest.mark.parametrize(
    ("actual", "actual_text"),
    [
        ({"kind": "run", "name": "b"}, "run('b')"),
        ({"kind": "sleep", "name": ""}, "sleep"),
        ({"kind": "set_state", "name": "a"}, "set_state('a')"),
    ],
)
def test_a_mismatch_names_the_expected_and_the_actual_entry(
    actual: dict[str, str], actual_text: str
) -> None:
    j = Journal([INPUT, {"kind": "run", "name": "a"}], {"1": {"value": 1}})
    with pytest.raises(NonDeterminismError) as raised:
        j.next(actual)  # type: ignore[arg-type]
    error = raised.value
    assert (error.index, error.expected, error.actual) == (1, "run('a')", actual_text)
    assert "run('a')" in str(error)
    assert actual_text in str(error)
    assert j.peek_unflushed() == ([], {})


def test_describe_a_command() -> None:
    assert describe({"kind": "run", "name": "charge"}) == "run('charge')"
    assert describe({"kind": "clear_all_state", "name": ""}) == "clear_all_state"


def test_completions_are_looked_up_by_index() -> None:
    j = Journal([INPUT, {"kind": "run", "name": "a"}], {"1": {"value": "x"}})
    assert j.completion(1) == {"value": "x"}
    assert j.completion(2) is None


def test_complete_records_a_completion_once() -> None:
    j = Journal([INPUT, {"kind": "run", "name": "a"}], {"1": {"value": 1}})
    with pytest.raises(ValueError, match="already completed"):
        j.complete(1, {"value": 2})
    j.next({"kind": "run", "name": "a"})
    index, _ = j.next({"kind": "run", "name": "b"})
    j.complete(index, {"value": 2})
    assert j.completion(index) == {"value": 2}
    with pytest.raises(ValueError, match="already completed"):
        j.complete(index, {"value": 3})
    assert j.peek_unflushed() == ([{"kind": "run", "name": "b"}], {"2": {"value": 2}})


def test_mark_flushed_moves_past_what_was_made_durable() -> None:
    j = Journal([INPUT], {})
    j.next({"kind": "run", "name": "a"})
    j.complete(1, {"value": "a"})
    j.next({"kind": "run", "name": "b"})
    j.mark_flushed(1, {"1": {"value": "a"}})
    assert j.peek_unflushed() == ([{"kind": "run", "name": "b"}], {})
    j.complete(2, {"value": "b"})
    j.next({"kind": "output", "value": "ab"})
    assert j.peek_unflushed() == (
        [{"kind": "run", "name": "b"}, {"kind": "output", "value": "ab"}],
        {"2": {"value": "b"}},
    )
    j.mark_flushed(2, {"2": {"value": "b"}})
    assert j.peek_unflushed() == ([], {})


# -- Endpoint.invoke: handlers -------------------------------------------------------------


async def test_a_completing_handler_journals_its_output() -> None:
    greeter = tarry.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: Context, name: str) -> str:
        return f"Hello {name}!"

    response = await invoke(greeter, request("Greeter", "greet", "Ada"))
    assert response["outcome"] == {"kind": "completed", "value": "Hello Ada!"}
    assert response["commands"] == [{"kind": "output", "value": "Hello Ada!"}]
    assert response["completions"] == {}


@dataclasses.dataclass
class Greeting:
    name: str
    times: int = 1


async def test_the_input_is_built_into_the_handlers_type() -> None:
    greeter = tarry.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: Context, g: Greeting) -> Greeting:
        assert isinstance(g, Greeting)
        return Greeting(g.name.upper(), g.times + 1)

    response = await invoke(greeter, request("Greeter", "greet", {"name": "ada"}))
    assert response["outcome"] == {"kind": "completed", "value": {"name": "ADA", "times": 2}}


async def test_invoke_rejects_an_unknown_handler_and_protocol() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> None:
        return None

    with pytest.raises(ProtocolError) as raised:
        await invoke(svc, request("S", "nope"))
    assert raised.value.status_code == 404
    bad = request("S", "h")
    bad["protocol"] = 99
    with pytest.raises(ProtocolError, match="99"):
        await invoke(svc, bad)


async def test_terminal_error_fails_the_invocation_with_its_code() -> None:
    svc = tarry.Service("Users")

    @svc.handler()
    async def create(ctx: Context, name: str) -> None:
        raise TerminalError(f"{name} exists", status_code=409)

    response = await invoke(svc, request("Users", "create", "ada"))
    failure = {"code": 409, "message": "ada exists"}
    assert response["outcome"] == {"kind": "failed", "failure": failure}
    assert response["commands"] == [{"kind": "output", "failure": failure}]


async def test_a_plain_exception_asks_for_a_retry_without_output() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> None:
        raise ValueError("flaky network")

    response = await invoke(svc, request("S", "h"))
    assert response["outcome"]["kind"] == "retry"
    assert "ValueError: flaky network" in response["outcome"]["error"]
    assert not response["outcome"].get("non_deterministic")
    assert all(c["kind"] != "output" for c in response["commands"])


# -- ctx.run -------------------------------------------------------------------------------


def doubling_service(executions: list[int]) -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def double(ctx: Context, x: int) -> int:
        async def twice() -> int:
            executions.append(x)
            return x * 2

        y: int = await ctx.run("double", twice)
        return y + 1

    return svc


async def test_run_in_request_response_mode_flushes_its_result() -> None:
    executions: list[int] = []
    response = await invoke(doubling_service(executions), request("S", "double", 21))
    assert executions == [21]
    assert response["outcome"] == {"kind": "flush"}
    assert response["commands"] == [{"kind": "run", "name": "double"}]
    assert response["completions"] == {"1": {"value": 42}}


async def test_a_completed_run_is_never_executed_again() -> None:
    executions: list[int] = []
    req = request(
        "S",
        "double",
        21,
        journal=[{"kind": "run", "name": "double"}],
        completions={"1": {"value": 42}},
    )
    response = await invoke(doubling_service(executions), req)
    assert executions == []
    assert response["outcome"] == {"kind": "completed", "value": 43}
    assert response["commands"] == [{"kind": "output", "value": 43}]
    assert response["completions"] == {}


async def test_run_through_a_channel_carries_on_in_the_same_attempt() -> None:
    executions: list[int] = []
    channel = MemoryChannel()
    req = request("S", "double", 21, checkpoint="channel")
    response = await invoke(doubling_service(executions), req, channel)
    assert executions == [21]
    assert channel.appends == [([{"kind": "run", "name": "double"}], {"1": {"value": 42}})]
    assert response["outcome"] == {"kind": "completed", "value": 43}
    assert response["commands"] == [{"kind": "output", "value": 43}]
    assert response["completions"] == {}


async def test_checkpoint_none_ignores_a_channel() -> None:
    # checkpoint "none" wins over a channel passed anyway: the attempt ends with a flush.
    channel = MemoryChannel()
    response = await invoke(doubling_service([]), request("S", "double", 1), channel)
    assert response["outcome"] == {"kind": "flush"}
    assert channel.appends == []


async def test_a_failing_checkpoint_stops_the_attempt() -> None:
    after: list[str] = []
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> str:
        await ctx.run("step", lambda: "done")
        after.append("went on")
        return "ok"

    response = await invoke(svc, request("S", "h", checkpoint="channel"), MemoryChannel(True))
    assert response["outcome"]["kind"] == "retry"
    assert "checkpoint failed" in response["outcome"]["error"]
    assert after == []
    assert all(c["kind"] != "output" for c in response["commands"])


def always_failing_service(executions: list[int]) -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> str:
        async def charge() -> None:
            executions.append(1)
            raise ConnectionError("card network down")

        try:
            await ctx.run("charge", charge, max_attempts=3, initial_interval=timedelta(seconds=1))
        except TerminalError as exc:
            return f"gave up: {exc.status_code}"
        return "charged"

    return svc


@pytest.mark.parametrize(("retry_count", "delay_ms"), [(0, 1000), (1, 2000)])
async def test_a_failing_run_retries_with_its_policy_delay(retry_count: int, delay_ms: int) -> None:
    executions: list[int] = []
    req = request("S", "h", retry_count=retry_count)
    response = await invoke(always_failing_service(executions), req)
    assert executions == [1]
    outcome = response["outcome"]
    assert outcome["kind"] == "retry"
    assert outcome["delay_ms"] == delay_ms
    assert "card network down" in outcome["error"]
    assert response["completions"] == {}


async def test_a_run_out_of_attempts_records_a_terminal_failure() -> None:
    executions: list[int] = []
    svc = always_failing_service(executions)
    response = await invoke(svc, request("S", "h", retry_count=2))
    assert executions == [1]
    assert response["outcome"] == {"kind": "flush"}
    failure = response["completions"]["1"]["failure"]
    assert failure["code"] == 500
    assert "3 attempts" in failure["message"]

    replay = request("S", "h", journal=response["commands"], completions=response["completions"])
    response = await invoke(svc, replay)
    assert executions == [1]
    assert response["outcome"] == {"kind": "completed", "value": "gave up: 500"}


async def test_a_run_out_of_attempts_raises_terminal_error_in_the_same_attempt() -> None:
    channel = MemoryChannel()
    req = request("S", "h", retry_count=2, checkpoint="channel")
    response = await invoke(always_failing_service([]), req, channel)
    assert response["outcome"] == {"kind": "completed", "value": "gave up: 500"}
    assert "failure" in channel.completions["1"]


# -- ctx.sleep -----------------------------------------------------------------------------


def napping_service() -> tarry.Service:
    svc = tarry.Service("S")

    @svc.handler()
    async def nap(ctx: Context) -> str:
        await ctx.sleep(timedelta(seconds=10))
        return "awake"

    return svc


async def test_sleep_journals_the_absolute_wake_time_and_suspends() -> None:
    clock = tarry.ManualClock(T0)
    response = await invoke(napping_service(), request("S", "nap"), clock=clock)
    assert response["commands"] == [{"kind": "sleep", "name": "", "wake_at": T0 + 10_000}]
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}


async def test_replay_keeps_the_recorded_wake_time_when_the_clock_moved() -> None:
    clock = tarry.ManualClock(T0)
    clock.advance(5_000)
    req = request("S", "nap", journal=[{"kind": "sleep", "name": "", "wake_at": T0 + 10_000}])
    response = await invoke(napping_service(), req, clock=clock)
    assert response["commands"] == []
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}


async def test_a_sleep_completion_lets_the_handler_finish() -> None:
    req = request(
        "S",
        "nap",
        journal=[{"kind": "sleep", "name": "", "wake_at": T0 + 10_000}],
        completions={"1": {"value": None}},
    )
    response = await invoke(napping_service(), req)
    assert response["outcome"] == {"kind": "completed", "value": "awake"}
    assert response["commands"] == [{"kind": "output", "value": "awake"}]


async def test_except_exception_cannot_swallow_suspension() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> str:
        try:
            await ctx.sleep(timedelta(seconds=1))
        except Exception:
            return "swallowed"
        return "slept"

    response = await invoke(svc, request("S", "h"))
    assert response["outcome"] == {"kind": "suspended", "waiting_on": [1]}
    assert [c["kind"] for c in response["commands"]] == ["sleep"]


# -- non-determinism -----------------------------------------------------------------------


def diverging_service(steps: list[str], catch: bool = False) -> tarry.Service:
    """Journals run 'a' in the tests below; this code now does something else first."""
    svc = tarry.Service("S")

    async def b() -> str:
        steps.append("b executed")
        return "b"

    @svc.handler()
    async def run_b(ctx: Context) -> str:
        try:
            await ctx.run("b", b)
        except Exception:
            if not catch:
                raise
        steps.append("went on")
        return "b"

    @svc.handler()
    async def sleeps(ctx: Context) -> str:
        await ctx.sleep(timedelta(seconds=1))
        steps.append("went on")
        return "slept"

    return svc


@pytest.mark.parametrize(
    ("handler", "catch", "actual"),
    [("run_b", False, "run('b')"), ("run_b", True, "run('b')"), ("sleeps", False, "sleep")],
)
async def test_non_determinism_asks_for_a_retry_and_stops_at_the_divergence(
    handler: str, catch: bool, actual: str
) -> None:
    steps: list[str] = []
    req = request(
        "S", handler, journal=[{"kind": "run", "name": "a"}], completions={"1": {"value": "a"}}
    )
    response = await invoke(diverging_service(steps, catch), req)
    outcome = response["outcome"]
    assert outcome["kind"] == "retry"
    assert outcome["non_deterministic"] is True
    assert "run('a')" in outcome["error"]
    assert actual in outcome["error"]
    assert response["commands"] == []
    assert response["completions"] == {}
    assert steps == []


async def test_code_that_stops_before_the_journal_ends_is_non_deterministic() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> str:
        return "done early"

    req = request("S", "h", journal=[{"kind": "run", "name": "a"}], completions={"1": {}})
    response = await invoke(svc, req)
    assert response["outcome"]["kind"] == "retry"
    assert response["outcome"]["non_deterministic"] is True
    assert "run('a')" in response["outcome"]["error"]
    assert "output" in response["outcome"]["error"]
    assert response["commands"] == []
