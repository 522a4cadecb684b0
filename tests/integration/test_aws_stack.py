"""tarry on AWS serverless, deployed with `sam build` and `sam deploy` of template.yaml and of
the examples' stack (examples/signup-stack), on the AWS endpoint ``TARRY_AWS_ENDPOINT`` names:
MiniStack in CI (scripts/test.sh starts it), LocalStack for a user with Docker (localstack/).
Everything goes through the deployed API Gateway APIs, as a user's client would.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials

from tarry.clock import SystemClock
from tarry.runtime.sigv4 import SigV4
from tests.aws_runtime import wait_until
from tests.aws_stack import (
    RUNTIME_TEMPLATE,
    ExamplesStack,
    RuntimeStack,
    _read_template,
    aws_endpoint,
    client,
    deploy_examples,
    deploy_runtime,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SIGNUP_OUTBOX = Path("/tmp/signup-outbox.jsonl")  # the examples' stack sets these
REGISTRATION_OUTBOX = Path("/tmp/registration-outbox.jsonl")


class Stacks:
    def __init__(self, runtime: RuntimeStack, examples: ExamplesStack, endpoint: str) -> None:
        self.runtime = runtime
        self.examples = examples
        self.endpoint = endpoint
        self.counter = self.greeter = ""  # their functions' version ARNs
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=200))
        self._signer = SigV4(Credentials("test", "test"), "us-east-1")

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.runtime.ingress_url}{path}", json=body, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(f"{self.runtime.ingress_url}{path}")

    def cli(self, *args: str) -> tuple[int, str, str]:
        """The tarry CLI against the deployed admin API (its requests signed with SigV4)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
        done = subprocess.run([str(Path(sys.executable).parent / "tarry"), *args,
                               "--admin-url", self.runtime.admin_url],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def admin(self, method: str, path: str) -> Any:
        """A request to the admin API, signed as the CLI signs it."""
        reply = self.http.request(method, self.runtime.admin_url + path, auth=self._signer)
        assert reply.status_code < 400, reply.text
        return reply.json()

    def invocation(self, invocation_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.admin("GET", f"/invocations/{invocation_id}")
        return found

    def attach(self, invocation_id: str, timeout: float = 90) -> httpx.Response:
        """Attach until answered: a 202 (past the call budget) means attach again."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.get(f"/restate/invocation/{invocation_id}/attach")
            if reply.status_code != 202:
                return reply
            assert time.monotonic() < deadline, f"{invocation_id}: no result in {timeout} s"

    def queue_depth(self) -> int:
        attrs = client("sqs", self.endpoint).get_queue_attributes(
            QueueUrl=self.runtime.queue_url, AttributeNames=["All"])["Attributes"]  # fmt: skip
        return sum(int(attrs.get(a, 0)) for a in ("ApproximateNumberOfMessages",
                   "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"))

    def sweep(self) -> dict[str, Any]:
        """Invoke the deployed sweep function with the scheduled event, as its schedule does."""
        event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                 "detail": {}}  # fmt: skip
        reply = client("lambda", self.endpoint).invoke(
            FunctionName=self.runtime.functions["sweep"], Payload=json.dumps(event).encode())
        result: dict[str, Any] = json.loads(reply["Payload"].read())
        return result

    def log_lines(self, function: str, since_ms: int) -> list[str]:
        logs = client("logs", self.endpoint)
        group = f"/aws/lambda/{function}"
        lines: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
        try:
            while True:
                page = logs.filter_log_events(**kwargs)
                lines += [e["message"] for e in page.get("events", [])]
                if not page.get("nextToken"):
                    return lines
                kwargs["nextToken"] = page["nextToken"]
        except logs.exceptions.ResourceNotFoundException:
            return lines


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    endpoint = aws_endpoint()
    name = f"tarry-{uuid.uuid4().hex[:8]}"
    runtime = deploy_runtime(name, {"CallBudget": "20s"})
    examples = deploy_examples(f"{name}-examples", runtime)
    s = Stacks(runtime, examples, endpoint)
    print(f"\nsam build + deploy: runtime {runtime.build_s:.0f} s + {runtime.deploy_s:.0f} s, "
          f"examples {examples.build_s:.0f} s + {examples.deploy_s:.0f} s")
    lam = client("lambda", endpoint)
    s.counter = deploy_example(lam, ROOT / "examples/counter.py", f"{name}-counter")
    s.greeter = deploy_example(lam, ROOT / "examples/greeter.py", f"{name}-greeter")
    for arn in (examples.signup_version_arn, examples.registration_version_arn, s.counter,
                s.greeter):  # fmt: skip
        code, _, err = s.cli("deployments", "register", arn)
        assert code == 0, err
    try:
        yield s
    finally:
        s.http.close()


def outbox(path: Path, field: str, value: str) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    found = [m for m in map(json.loads, lines) if m.get(field) == value]
    return found[-1] if found else {}


def suspended_with_nothing_running(s: Stacks, invocation_id: str) -> bool:
    inv = s.invocation(invocation_id)
    return inv["status"] == "suspended" and s.queue_depth() == 0


# -- acceptance ---------------------------------------------------------------------------------


def test_signup_end_to_end_through_api_gateway(stacks: Stacks) -> None:
    """Ingress function, queue, worker, the signup function by ARN; suspended on the awakeable
    with no function running and nothing queued; resolved through API Gateway; the result
    attached. Prints what it cost in AWS requests."""
    s = stacks
    started_ms = SystemClock().now_ms() - 1000
    username = f"ada-{uuid.uuid4().hex[:6]}"
    signup = {"username": username, "name": "Ada", "surname": "Lovelace", "password": "s3cret",
              "email": "ada@example.com"}  # fmt: skip
    sent = s.post("/Signup/signup/send", signup)
    assert sent.status_code == 202, sent.text
    invocation_id = sent.json()["invocationId"]
    mail = wait_until(lambda: outbox(SIGNUP_OUTBOX, "username", username), "the email")
    wait_until(lambda: suspended_with_nothing_running(s, invocation_id), "suspended, idle", 30)

    link = mail["link"]
    assert link.startswith(s.runtime.ingress_url + "/restate/awakeables/")
    clicked = s.http.post(link)
    assert clicked.status_code == 202, clicked.text
    attached = s.attach(invocation_id)
    assert attached.status_code == 200, attached.text
    assert attached.json() == f"The new user {username} is signed up and activated"
    print_costs(s, started_ms, "one signup (send, click, attach)")
    assert s.post(f"/User/{username}/get").json()["activated"] is True
    assert s.http.post(link).status_code == 409  # a link clicked twice: the first stands


def test_registration_workflow_through_api_gateway(stacks: Stacks) -> None:
    s = stacks
    key = f"reg-{uuid.uuid4().hex[:6]}"
    sent = s.post(f"/Registration/{key}/run/send", {"email": "ada@example.com", "name": "Ada"})
    assert sent.status_code == 202, sent.text
    mail = wait_until(lambda: outbox(REGISTRATION_OUTBOX, "workflow_key", key), "the email")
    assert s.get(f"/restate/workflow/Registration/{key}/output").status_code == 470
    verified = s.http.post(mail["link"], json=mail["token"])
    assert verified.status_code == 200, verified.text
    wait_until(lambda: s.get(f"/restate/workflow/Registration/{key}/output").status_code == 200,
               "the workflow's output")  # fmt: skip
    attached = s.get(f"/restate/workflow/Registration/{key}/attach")
    assert attached.status_code == 200, attached.text
    again = s.post(f"/Registration/{key}/run", {"email": "ada@example.com", "name": "Ada"})
    assert again.status_code == 409  # a workflow runs once per key


def test_a_five_second_sleep_fires_through_the_queue_delay(stacks: Stacks) -> None:
    """Greeter.greet_later sleeps 5 s (a durable sleep: the function returns, the timer is an
    SQS message delayed 5 s): it fires once, never early, within a few seconds."""
    s = stacks
    reply = s.post("/Greeter/greet_later", {"name": "Ann", "seconds": 5})
    assert (reply.status_code, reply.json()) == (200, "Hello Ann!"), reply.text
    inv = s.invocation(reply.headers["x-restate-id"])
    sleeps = [e for e in inv["journal"] if e["command"]["kind"] == "sleep"]
    assert len(sleeps) == 1
    late = sleeps[0]["completed_at"] - sleeps[0]["command"]["wake_at"]
    print(f"\nthe 5 s sleep fired {late} ms after its deadline")
    assert 0 <= late < 5000  # never early; within a few seconds


def test_counter_adds_are_exact_with_a_worker_crashing_mid_invocation(stacks: Stacks) -> None:
    """100 concurrent Counter.add calls through API Gateway while the worker function's
    processes are SIGKILLed now and then as they work: every call is answered and each key's
    count is exact. (The kills need the function's processes on this machine: MiniStack.)"""
    s = stacks
    lam = client("lambda", s.endpoint)
    worker = s.runtime.functions["worker"]
    # Like an account's concurrency limit: past 8 concurrent ingress invocations API Gateway
    # answers a throttle, which a client retries (this machine could not run 100 at once).
    lam.put_function_concurrency(FunctionName=s.runtime.functions["ingress"],
                                 ReservedConcurrentExecutions=8)  # fmt: skip
    keys = [f"k{i}-{uuid.uuid4().hex[:4]}" for i in range(5)]
    retried: Counter[str] = Counter()
    killed: list[int] = []
    working = True

    def sweeper() -> None:  # the schedule's job, every 2 s instead of every minute
        while working:
            s.sweep()
            time.sleep(2)

    def killer() -> None:  # SIGKILL one of the worker function's processes now and then
        while working:
            time.sleep(random.uniform(0.5, 2.0))
            found = worker_processes(worker)
            if found:
                victim = random.choice(found)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)

    def add(key: str, n: int) -> int:
        """One add, as a careful client makes it: with an idempotency key, so that retrying
        after a throttle, a gateway error or a timeout cannot add twice."""
        headers = {"idempotency-key": f"{key}-{n}"}
        pause = 0.2
        while True:
            try:
                reply = s.post(f"/Counter/{key}/add", 1, headers=headers)
            except httpx.TimeoutException:
                retried["timeout"] += 1
                continue
            if reply.status_code == 202:  # past the call budget: attach
                reply = s.attach(reply.json()["invocationId"], timeout=300)
            if reply.status_code in (429, 500, 502, 503, 504):
                retried[str(reply.status_code)] += 1
                time.sleep(random.uniform(0, pause))  # backing off, with jitter
                pause = min(5.0, pause * 2)
                continue
            assert reply.status_code == 200, reply.text
            value: int = reply.json()
            return value

    calls = [(k, n) for n in range(20) for k in keys]
    try:
        with ThreadPoolExecutor(max_workers=102) as pool:
            helpers = [pool.submit(sweeper), pool.submit(killer)]
            answers = list(pool.map(lambda c: add(*c), calls))  # all 100 at once
            working = False
            for helper in helpers:
                helper.result()
    finally:
        working = False
        lam.delete_function_concurrency(FunctionName=s.runtime.functions["ingress"])
    print(f"\nthe worker's processes were killed {len(killed)} times during 100 adds; "
          f"retried: {dict(retried)}")
    assert killed, "no worker process was killed: the test proved nothing"
    assert len(answers) == 100
    for i, key in enumerate(keys):
        assert sorted(answers[i::5]) == list(range(1, 21)), key
        assert s.post(f"/Counter/{key}/get").json() == 20


def worker_processes(function: str) -> list[int]:
    """The processes MiniStack runs ``function`` in (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"ministack-lambda-{function}".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def test_the_admin_api_takes_only_signed_requests(stacks: Stacks) -> None:
    """Every admin route requires IAM, in the template and in the deployed API; the CLI's
    signed requests work (test_stacks registered the examples with them)."""
    template = _read_template(RUNTIME_TEMPLATE)
    admin_api = next(r for name, r in template["Resources"].items()
                     if r["Type"].startswith("AWS::Serverless::") and "Admin" in name
                     and r["Type"].endswith("Api"))  # fmt: skip
    assert admin_api["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    apis = client("apigateway", stacks.endpoint)
    api_id = re.search(r"/_aws/execute-api/([^/]+)/", stacks.runtime.admin_url + "/")
    assert api_id is not None
    methods = [
        (resource["path"], method, apis.get_method(restApiId=api_id[1], resourceId=resource["id"],
                                                   httpMethod=method)["authorizationType"])
        for resource in apis.get_resources(restApiId=api_id[1])["items"]
        for method in resource.get("resourceMethods", {})
    ]  # fmt: skip
    assert methods and all(auth == "AWS_IAM" for _, _, auth in methods), methods
    code, out, err = stacks.cli("deployments", "ls")
    assert code == 0, err
    assert "SignupFunction" in out


# -- helpers --------------------------------------------------------------------------------------


def deploy_example(lam: Any, app: Path, name: str) -> str:
    """An example as a function of its own (`tarry lambda package`): its version 1's ARN."""
    import tempfile

    from tarry.runtime.lambda_package import package
    from tests.ministack import ROLE, ministack_python

    with tempfile.TemporaryDirectory() as tmp:
        zipped = package(app, Path(tmp) / "app.zip", python=ministack_python())
        code = zipped.path.read_bytes()
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                        Handler=zipped.handler, Code={"ZipFile": code},
                        Timeout=60, MemorySize=256)  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn: str = lam.publish_version(FunctionName=name)["FunctionArn"]
    return arn


def print_costs(s: Stacks, since_ms: int, what: str) -> None:
    """Add up the one line each runtime function prints per invocation, and the handler
    function's attempt lines, since ``since_ms``; print them."""
    time.sleep(1)  # log lines land after the invocation ends
    invocations: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for kind in ("ingress", "worker"):
        for line in s.log_lines(s.runtime.functions[kind], since_ms):
            if line.startswith('{"tarry"'):
                data = json.loads(line)
                invocations[kind] += 1
                requests.update(data["requests"])
    handler = s.examples.signup_version_arn.split(":")[6]
    for line in s.log_lines(handler, since_ms):
        found = re.search(r"in (\d+) DynamoDB writes \((\d+) items\)", line)
        if line.startswith("tarry inv_") and found:
            invocations["handler"] += 1
            requests["dynamodb.TransactWriteItems"] += int(found[1])
            requests["dynamodb.TransactWriteItems.items"] += int(found[2])
    print(f"\n{what}: Lambda invocations {dict(invocations)}; AWS requests {dict(requests)}")
    assert invocations["handler"] == requests["lambda.Invoke"]
    assert invocations["ingress"] >= 1 and invocations["worker"] >= 1
