"""The runtime as Lambda functions (tarry.lambda_adapter.aws), run in this process against
MiniStack's SQS and Lambda and a DynamoDB Local table (tests/aws_runtime.py): calls, sends,
timers through the queue's delay and through the sweep, the call budget, a worker's hand-off.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tarry.runtime.lambda_package import package
from tests.aws_runtime import Functions, OffsetClock, create_queue, sqs_client, wait_until
from tests.conftest import ROOT
from tests.dynamodb_local import dynamodb_local
from tests.ministack import deploy_function, ministack_python, publish_version

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, ministack_url: str) -> str:
    """This process's clients: SQS and Lambda on MiniStack, DynamoDB on DynamoDB Local."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", ministack_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", ministack_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local())
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return ministack_url


@pytest.fixture
def steps_arn(lam: Any, function_name: str, tmp_path: Path) -> str:
    """tests/apps/lambda_steps.py as a Lambda function on MiniStack: its version 1's ARN."""
    zipped = package(ROOT / "tests/apps/lambda_steps.py", tmp_path / "steps.zip",
                     python=ministack_python())  # fmt: skip
    env = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local(), "STEPS_FILE": str(tmp_path / "steps"),
           "INVOKES_FILE": str(tmp_path / "invokes.jsonl"), "CRASH_FILE": str(tmp_path / "crash")}
    deploy_function(lam, function_name, zipped.path.read_bytes(), zipped.handler,
                    timeout_s=60, environment=env)  # fmt: skip
    return publish_version(lam, function_name)


def make(table: str, aws_env: str, steps_arn: str, **kwargs: Any) -> Functions:
    functions = Functions(table, create_queue(aws_env), aws_env, **kwargs)
    registered = functions.admin_call("POST", "/deployments", {"arn": steps_arn})
    assert registered.status_code == 201, registered.text
    return functions


@pytest.fixture
def fns(table: str, aws_env: str, steps_arn: str) -> Iterator[Functions]:
    functions = make(table, aws_env, steps_arn)
    try:
        yield functions
    finally:
        functions.close()


def queued(fns: Functions) -> int:
    attrs = sqs_client(fns.ministack).get_queue_attributes(
        QueueUrl=fns.queue_url, AttributeNames=["All"])["Attributes"]  # fmt: skip
    return sum(int(attrs[a]) for a in ("ApproximateNumberOfMessages",
               "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"))


def test_a_call_runs_in_the_ingress_and_a_send_through_the_queue(fns: Functions) -> None:
    reply = fns.call("POST", "/Steps/ten")
    assert (reply.status_code, reply.json()) == (200, 10)
    assert queued(fns) == 0  # nothing was left for a worker

    sent = fns.call("POST", "/Steps/ten/send", headers={"idempotency-key": "k1"})
    assert sent.status_code == 202, sent.text
    invocation_id = sent.json()["invocationId"]
    assert queued(fns) == 1  # its message; nothing ran it yet
    status = fns.admin_call("GET", f"/invocations/{invocation_id}").json()["status"]
    assert status == "ready"
    with fns.pump():
        attached = fns.call("GET", f"/restate/invocation/{invocation_id}/attach")
    assert (attached.status_code, attached.json()) == (200, 10)
    again = fns.call("POST", "/Steps/ten/send", headers={"idempotency-key": "k1"})
    assert again.json() == {"invocationId": invocation_id, "status": "PreviouslyAccepted"}


def test_a_short_sleep_fires_through_the_queue_delay_never_early(fns: Functions) -> None:
    sent = fns.call("POST", "/Steps/many/send", {"before": 1, "after": 1, "sleep_ms": 5000})
    invocation_id = sent.json()["invocationId"]
    with fns.pump():
        done = wait_until(lambda: (inv := fns.admin_call("GET", f"/invocations/{invocation_id}")
                                   .json())["status"] == "completed" and inv, "completed", 40)
    sleep = next(e for e in done["journal"] if e["command"]["kind"] == "sleep")
    assert sleep["completed_at"] >= sleep["command"]["wake_at"]  # never early
    assert sleep["completed_at"] - sleep["command"]["wake_at"] < 5000  # within a few seconds
    assert done["completion"] == {"value": 2}


def test_a_long_sleep_is_queued_by_the_sweep_on_a_simulated_clock(
    table: str, aws_env: str, steps_arn: str, tmp_path: Path
) -> None:
    """A 20-minute sleep: nothing is sent while it is more than 15 minutes away; the sweep,
    driven with the scheduled event once a simulated minute, sends it as it comes within SQS's
    delay (and once more, the next minute, in case a sweep was missed), with a delay that ends
    at its deadline. Delivered early, the worker refuses it and sends it again for the time
    left; it fires once, never early."""
    clock = OffsetClock()
    fns = make(table, aws_env, steps_arn, clock=clock)
    try:
        sent = fns.call("POST", "/Steps/many/send", {"before": 1, "after": 1,
                                                    "sleep_ms": 20 * 60_000})  # fmt: skip
        invocation_id = sent.json()["invocationId"]
        with fns.pump():
            inv = wait_until(lambda: (i := fns.admin_call("GET", f"/invocations/{invocation_id}")
                                      .json())["status"] == "suspended" and i, "suspended")
        wake_at = next(e for e in inv["journal"] if e["command"]["kind"] == "sleep")[
            "command"]["wake_at"]  # fmt: skip
        assert queued(fns) == 0  # too far out for SQS: only the store has it

        assert fns.sweep_once() == {"driven": 0, "timers": 0}
        sweeper = fns.sweep_rt.scheduler
        assert sweeper is not None
        sends: list[tuple[int, str, int]] = []  # (minutes before the deadline, body, delay)
        forward = sweeper._send

        async def record(entries: list[tuple[str, int]]) -> None:
            sends.extend((minutes, body, delay) for body, delay in entries)
            await forward(entries)

        sweeper._send = record  # type: ignore[method-assign]
        for minutes in range(19, 0, -1):
            clock.offset_ms += wake_at - minutes * 60_000 - clock.now_ms()
            fns.sweep_once()
        assert [(m, d) for m, _, d in sends] == [(15, 900), (14, 840)]
        body = sends[0][1]
        sqs_client(fns.ministack).purge_queue(QueueUrl=fns.queue_url)  # (15 real minutes off)

        clock.offset_ms += wake_at - 1000 - clock.now_ms()  # SQS hands it over a second early
        with fns.pump():
            fns.worker({"Records": [{"messageId": "m1", "body": body}]}, None)
            assert fns.admin_call("GET", f"/invocations/{invocation_id}").json()[
                "status"] == "suspended"  # fmt: skip
            done = wait_until(lambda: (i := fns.admin_call("GET", f"/invocations/{invocation_id}")
                                       .json())["status"] == "completed" and i, "completed", 30)
            sleep = next(e for e in done["journal"] if e["command"]["kind"] == "sleep")
            assert sleep["completed_at"] >= wake_at  # never early, on the simulated clock
        assert done["completion"] == {"value": 2}
        ran = (tmp_path / "steps").read_text().splitlines()
        assert ran == [f"{invocation_id} 0", f"{invocation_id} 1"]  # each step once
        sends.clear()
        assert fns.sweep_once() == {"driven": 0, "timers": 0}  # fired: nothing more to send
    finally:
        fns.close()


def test_a_call_past_its_budget_answers_with_where_to_attach(
    table: str, aws_env: str, steps_arn: str
) -> None:
    fns = make(table, aws_env, steps_arn, env={"TARRY_CALL_BUDGET": "1s"})
    try:
        reply = fns.call("POST", "/Steps/many", {"before": 1, "sleep_ms": 3000})
        assert reply.status_code == 202, reply.text
        body = reply.json()
        invocation_id = body["invocationId"]
        assert reply.headers["x-restate-id"] == invocation_id
        assert body["status"] == "running"
        assert body["attach"] == f"/restate/invocation/{invocation_id}/attach"
        output = fns.call("GET", body["output"])
        assert output.status_code == 470
        with fns.pump():
            attached = wait_until(lambda: (r := fns.call("GET", body["attach"])).status_code
                                  == 200 and r, "attached", 30)  # fmt: skip
        assert attached.json() == 1
    finally:
        fns.close()


def test_an_attempt_outliving_the_call_budget_is_handed_to_the_queue(
    table: str, aws_env: str, steps_arn: str
) -> None:
    """A call whose attempt itself runs past the budget: the ingress answers, and gives the
    attempt back (no lease is left held by a function that has returned); a worker runs it
    again, and the steps it made durable are not run again."""
    fns = make(table, aws_env, steps_arn, env={"TARRY_CALL_BUDGET": "1s"})
    try:
        reply = fns.call("POST", "/Steps/many", {"before": 6, "step_ms": 300})
        assert reply.status_code == 202, reply.text
        invocation_id = reply.json()["invocationId"]
        inv = fns.admin_call("GET", f"/invocations/{invocation_id}").json()
        assert inv["status"] == "ready"  # handed back, not running under a lost lease
        assert queued(fns) == 1
        with fns.pump():
            attached = wait_until(lambda: (r := fns.call("GET", reply.json()["attach"]))
                                  .status_code == 200 and r, "attached", 30)  # fmt: skip
        assert attached.json() == 6
    finally:
        fns.close()


def test_a_version_registered_elsewhere_takes_new_invocations_in_a_warm_ingress(
    table: str, aws_env: str, steps_arn: str, lam: Any, function_name: str
) -> None:
    """The admin function registers version 2; the warm ingress (another process) routes new
    invocations to it once it reads the catalog again, within a few seconds."""
    clock = OffsetClock()
    fns = make(table, aws_env, steps_arn, clock=clock)
    try:
        first = fns.call("POST", "/Steps/ten")
        assert first.status_code == 200, first.text
        lam.update_function_configuration(FunctionName=function_name, Description="v2")
        lam.get_waiter("function_updated_v2").wait(FunctionName=function_name)
        v2 = publish_version(lam, function_name)  # (unchanged, it would be version 1 again)
        assert v2 != steps_arn
        registered = fns.admin_call("POST", "/deployments", {"arn": v2})
        assert registered.status_code == 201, registered.text
        clock.offset_ms += 6_000  # past the catalog's time to live
        second = fns.call("POST", "/Steps/ten")
        assert second.status_code == 200, second.text
        pinned = [fns.admin_call("GET", f"/invocations/{r.headers['x-restate-id']}").json()[
            "deployment_id"] for r in (first, second)]  # fmt: skip
        assert pinned[1] == registered.json()["id"] != pinned[0]
    finally:
        fns.close()
