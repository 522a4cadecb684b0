"""Lambda deployments on a real Invoke API: functions packaged with `tarry lambda package`,
deployed to MiniStack, registered by version ARN with `tarry serve --store dynamodb://TABLE`
(DynamoDB Local), and driven through the ingress as a user would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tarry.runtime.lambda_package import package
from tests.conftest import ROOT, TarryProcess
from tests.dynamodb_local import dynamodb_local
from tests.ministack import (
    ACCOUNT,
    REGION,
    deploy_function,
    ministack_python,
    publish_version,
    update_code,
)

pytestmark = pytest.mark.integration

SIGNUP = {"username": "ada", "name": "Ada", "surname": "Lovelace", "password": "s3cret",
          "email": "ada@example.com"}  # fmt: skip


class Aws:
    """MiniStack's Lambda, a runtime on a DynamoDB Local table, and a place for files."""

    def __init__(self, lam: Any, runtime: TarryProcess, tmp: Path, ministack: str) -> None:
        self.lam = lam
        self.runtime = runtime
        self.tmp = tmp
        self.ministack = ministack
        self.env = {
            # the functions' table is the runtime's: DynamoDB Local
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local(),
            "TARRY_INGRESS_URL": runtime.ingress,
            "SIGNUP_OUTBOX": str(tmp / "outbox.jsonl"),
            "REGISTRATION_OUTBOX": str(tmp / "registration.jsonl"),
            "STEPS_FILE": str(tmp / "steps.txt"),
            "INVOKES_FILE": str(tmp / "invokes.jsonl"),
            "CRASH_FILE": str(tmp / "crash"),
        }

    def deploy(self, app: Path, name: str, timeout_s: int = 60) -> str:
        """Package ``app``, create function ``name`` and publish version 1: its ARN."""
        zipped = package(app, self.tmp / f"{name}.zip", python=ministack_python())
        assert zipped.compiled
        deploy_function(self.lam, name, zipped.path.read_bytes(), zipped.handler,
                        timeout_s=timeout_s, environment=self.env)  # fmt: skip
        return publish_version(self.lam, name)

    def publish(self, app: Path, name: str) -> str:
        """New code for function ``name``, published as its next version: its ARN."""
        zipped = package(app, self.tmp / f"{name}-next.zip", python=ministack_python())
        update_code(self.lam, name, zipped.path.read_bytes())
        return publish_version(self.lam, name)

    def register(self, arn: str) -> str:
        done = self.runtime.cli("deployments", "register", arn)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.runtime.ingress}{path}", json=body, timeout=120, **kwargs)

    def invokes(self, kind: str) -> list[dict[str, Any]]:
        path = self.tmp / "invokes.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if e["kind"] == kind]

    def steps(self) -> list[str]:
        path = self.tmp / "steps.txt"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def aws(lam: Any, ministack_url: str, table: str, tmp_path: Path) -> Iterator[Aws]:
    env = {"AWS_ENDPOINT_URL_LAMBDA": ministack_url, "AWS_ENDPOINT_URL_STS": ministack_url}
    runtime = TarryProcess(["serve", "--store", f"dynamodb://{table}?lease=5s"], tmp_path, env)
    runtime.start()
    try:
        yield Aws(lam, runtime, tmp_path, ministack_url)
    finally:
        runtime.stop()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return found


def outbox(path: Path, field: str, value: str) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    found = [m for m in map(json.loads, lines) if m.get(field) == value]
    return found[-1] if found else {}


def test_signup_and_registration_run_on_lambda(aws: Aws, function_name: str) -> None:
    signup_arn = aws.deploy(ROOT / "examples" / "signup.py", function_name)
    assert signup_arn.endswith(":1")
    said = aws.register(signup_arn)
    assert "User" in said and "Signup" in said
    listed = aws.runtime.cli("services", "ls")
    assert "Signup" in listed.stdout and signup_arn in listed.stdout

    sent = aws.post("/Signup/signup/send", SIGNUP)
    assert sent.status_code == 202, sent.text
    invocation_id = sent.json()["invocationId"]
    email = wait_until(lambda: outbox(aws.tmp / "outbox.jsonl", "username", "ada"), "the email")
    # The function returned: nothing runs while the signup waits for the click.
    waiting = aws.runtime.wait_status(invocation_id, "suspended")
    awakeable = [e["index"] for e in waiting["journal"] if e["command"]["kind"] == "awakeable"]
    assert waiting["waiting_on"] == awakeable
    clicked = httpx.post(email["link"], timeout=30)
    assert clicked.status_code == 202, clicked.text
    answer = httpx.get(f"{aws.runtime.ingress}/restate/invocation/{invocation_id}/attach",
                       timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == "The new user ada is signed up and activated"
    user = aws.post("/User/ada/get")
    assert user.json()["activated"] is True

    registration_arn = aws.deploy(ROOT / "examples" / "registration.py", function_name + "-wf")
    aws.register(registration_arn)
    started = aws.post("/Registration/r1/run/send", {"email": "ann@example.com", "name": "Ann"})
    assert started.status_code == 202, started.text
    mail = wait_until(lambda: outbox(aws.tmp / "registration.jsonl", "workflow_key", "r1"),
                      "the verification email")  # fmt: skip
    aws.runtime.wait_status(started.json()["invocationId"], "suspended")
    verified = httpx.post(mail["link"], json=mail["token"], timeout=60)
    assert verified.json() == "verified"
    result = httpx.get(f"{aws.runtime.ingress}/restate/workflow/Registration/r1/attach",
                       timeout=60)  # fmt: skip
    assert result.json() == "activated"


def test_a_new_version_takes_new_invocations_while_old_ones_finish_on_theirs(
    aws: Aws, function_name: str
) -> None:
    v1 = aws.deploy(ROOT / "examples" / "signup.py", function_name)
    aws.register(v1)
    first = aws.post("/Signup/signup/send", {**SIGNUP, "username": "ann"}).json()["invocationId"]
    wait_until(lambda: outbox(aws.tmp / "outbox.jsonl", "username", "ann"), "ann's email")
    aws.runtime.wait_status(first, "suspended")

    changed = aws.tmp / "v2" / "signup.py"
    changed.parent.mkdir()
    source = (ROOT / "examples" / "signup.py").read_text()
    changed.write_text(source.replace("is signed up and activated", "is signed up (version 2)"))
    v2 = aws.publish(changed, function_name)
    assert v2.endswith(":2")
    aws.register(v2)

    listed = aws.runtime.cli("deployments", "ls").stdout
    row = next(line for line in listed.splitlines() if v1 in line)
    assert " 1 " in row  # ann's signup still runs on version 1
    refused = aws.runtime.cli("deployments", "rm", row.split()[0])
    assert refused.returncode != 0 and "still has 1 invocation" in refused.stderr

    second = aws.post("/Signup/signup/send", {**SIGNUP, "username": "bob"}).json()["invocationId"]
    for who, invocation_id in (("ann", first), ("bob", second)):
        email = wait_until(lambda who=who: outbox(aws.tmp / "outbox.jsonl", "username", who),
                           f"{who}'s email")  # fmt: skip
        aws.runtime.wait_status(invocation_id, "suspended")
        assert httpx.post(email["link"], timeout=30).status_code == 202
    attach = f"{aws.runtime.ingress}/restate/invocation/{{}}/attach"
    assert httpx.get(attach.format(first), timeout=60).json() == (
        "The new user ann is signed up and activated"
    )
    assert httpx.get(attach.format(second), timeout=60).json() == (
        "The new user bob is signed up (version 2)"
    )
    assert aws.runtime.invocation(first)["deployment_id"] != aws.runtime.invocation(second)[
        "deployment_id"
    ]
    removed = aws.runtime.cli("deployments", "rm", row.split()[0])
    assert removed.returncode == 0, removed.stderr


def test_fifty_steps_and_a_sleep_cost_two_invocations_and_a_write_a_step(
    aws: Aws, function_name: str
) -> None:
    aws.register(aws.deploy(ROOT / "tests" / "apps" / "lambda_steps.py", function_name))
    reply = aws.post("/Steps/many", {"before": 25, "after": 25, "sleep_ms": 200})
    assert reply.status_code == 200, reply.text
    assert reply.json() == 50
    invokes = aws.invokes("many")
    assert len(invokes) == 2
    assert sum(i["writes"] for i in invokes) == 50
    invocation_id = reply.headers["x-restate-id"]
    assert aws.steps() == [f"{invocation_id} {i}" for i in range(50)]


def test_a_handler_longer_than_the_function_timeout_completes(
    aws: Aws, function_name: str
) -> None:
    """Twenty one-second steps in a function with a 5 s timeout: it stops before its time is
    up, with its steps stored, and is invoked again at once; every step runs exactly once."""
    aws.register(aws.deploy(ROOT / "tests" / "apps" / "lambda_steps.py", function_name,
                            timeout_s=5))  # fmt: skip
    reply = aws.post("/Steps/many", {"before": 20, "step_ms": 1000})
    assert reply.status_code == 200, reply.text
    assert reply.json() == 20
    invocation_id = reply.headers["x-restate-id"]
    assert aws.steps() == [f"{invocation_id} {i}" for i in range(20)]
    assert len(aws.invokes("many")) >= 5  # at most 4 one-second steps fit in 5 s


def test_a_journal_larger_than_a_lambda_payload_completes(aws: Aws, function_name: str) -> None:
    """30 steps of 300 KB (9 MB) before a sleep: the invoke after it names the table instead of
    carrying the journal, and the function reads it from there."""
    aws.register(aws.deploy(ROOT / "tests" / "apps" / "lambda_steps.py", function_name))
    shape = {"before": 30, "after": 1, "size": 300_000, "sleep_ms": 50}
    reply = aws.post("/Steps/many", shape)
    assert reply.status_code == 200, reply.text
    assert reply.json() == 31 * 300_000
    assert len(aws.invokes("many")) == 2


def test_failures_are_retried_and_described(aws: Aws, function_name: str) -> None:
    arn = aws.deploy(ROOT / "tests" / "apps" / "lambda_steps.py", function_name)
    aws.register(arn)
    # The handler raises: a failed attempt, retried with backoff, its error in describe.
    flaky = aws.post("/Steps/flaky/send").json()["invocationId"]
    result = httpx.get(f"{aws.runtime.ingress}/restate/invocation/{flaky}/attach", timeout=60)
    assert result.json() == "recovered"
    recovered = aws.runtime.invocation(flaky)
    assert recovered["attempts"] >= 2  # it failed first, and was retried
    assert "ValueError: the first attempt fails" in recovered["last_failure"]
    described = aws.runtime.cli("invocations", "describe", flaky).stdout
    assert "ValueError: the first attempt fails" in described

    # The function itself falls over (Lambda's FunctionError).
    (aws.tmp / "crash").touch()
    crashing = aws.post("/Steps/noop/send").json()["invocationId"]

    def failed_twice() -> dict[str, Any] | None:
        inv = aws.runtime.invocation(crashing)
        return inv if inv["attempts"] >= 2 and inv["last_failure"] else None

    inv = wait_until(failed_twice, "a second attempt")
    assert "the function fell over" in inv["last_failure"]
    shown = aws.runtime.cli("invocations", "describe", crashing).stdout
    assert "Runtime.HandlerError" in shown and "the function fell over" in shown
    (aws.tmp / "crash").unlink()
    done = httpx.get(f"{aws.runtime.ingress}/restate/invocation/{crashing}/attach", timeout=60)
    assert done.status_code == 200, done.text


def test_registration_names_what_is_wrong(aws: Aws, function_name: str) -> None:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
    missing = aws.runtime.cli("deployments", "register", f"{base}:1")
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr and function_name in missing.stderr
    aws.deploy(ROOT / "tests" / "apps" / "lambda_steps.py", function_name)
    for unpinned in (base, f"{base}:$LATEST"):
        refused = aws.runtime.cli("deployments", "register", unpinned)
        assert refused.returncode != 0
        assert "publish a version" in refused.stderr
    loud = aws.runtime.cli("deployments", "register", base, "--latest")
    assert loud.returncode == 0, loud.stderr
    assert "development only" in loud.stderr
    aws.lam.create_alias(FunctionName=function_name, Name="live", FunctionVersion="1")
    alias = aws.runtime.cli("deployments", "register", f"{base}:live")
    assert alias.returncode == 0, alias.stderr
    assert f"{base}:1" in alias.stdout  # the alias, resolved to the version it names
    garbage = aws.runtime.cli("deployments", "register", "arn:aws:lambda:nowhere")
    assert garbage.returncode != 0 and "not a Lambda function ARN" in garbage.stderr
    # The runtime may invoke the function as another role (STS credentials).
    role = f"arn:aws:iam::{ACCOUNT}:role/tarry-invoker"
    assumed = aws.runtime.cli("deployments", "register", f"{base}:1", "--assume-role-arn", role)
    assert assumed.returncode == 0, assumed.stderr
    listed = httpx.get(f"{aws.runtime.admin}/deployments").json()["deployments"]
    assert [d["assume_role_arn"] for d in listed if d["uri"] == f"{base}:1"] == [role]
    assert aws.post("/Steps/noop").status_code == 200
