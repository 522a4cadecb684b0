"""The runtime's Lambda functions (tarry.lambda_adapter.aws) run in this process, each as its
own "function": the ingress fed API Gateway events, the worker fed SQS events by a pump that
plays the event source mapping (receive, invoke, delete what did not fail), the sweep fed the
scheduled event. The queue is MiniStack's SQS, the table DynamoDB Local, the user functions
real Lambda functions on MiniStack: everything but API Gateway and the event source mapping is
the real API. tests/integration/test_aws_stack.py runs the same functions deployed by `sam
deploy`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aioboto3
import boto3

from tarry.clock import Clock, SystemClock
from tarry.lambda_adapter.aws import (
    ApiFunction,
    AwsRuntime,
    SweepFunction,
    WorkerFunction,
    admin_app_of,
    ingress_app_of,
)
from tests.ministack import REGION


class OffsetClock(SystemClock):
    """Real time moved ``offset_ms`` ahead: a simulated clock whose time still passes."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms


def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


def create_queue(endpoint: str) -> str:
    name = f"tarry-test-{uuid.uuid4().hex[:12]}"
    url: str = sqs_client(endpoint).create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "30"}
    )["QueueUrl"]
    return url


class Context:
    """A Lambda context with a deadline."""

    def __init__(self, timeout_s: float = 60) -> None:
        self._end = time.monotonic() + timeout_s
        self.aws_request_id = uuid.uuid4().hex

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def api_event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
              query: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """An API Gateway REST (v1) proxy event."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": uuid.uuid4().hex,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


class Reply:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status_code: int = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        self.text: str = raw.get("body") or ""

    def json(self) -> Any:
        return json.loads(self.text)


class Functions:
    """The runtime's four functions in this process, each with a runtime of its own."""

    def __init__(self, table: str, queue_url: str, ministack: str, clock: Clock | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.ministack = ministack
        self.queue_url = queue_url
        self.clock = clock or SystemClock()
        self.env = {"TARRY_TABLE": table, "TARRY_QUEUE_URL": queue_url, **(env or {})}
        self._runtimes: list[AwsRuntime] = []
        self.ingress_rt = self._runtime()
        self.ingress = ApiFunction("ingress", ingress_app_of).bind(self.ingress_rt)
        self.admin = ApiFunction("admin", admin_app_of).bind(self._runtime())
        self.worker_rt = self._runtime()
        self.worker = WorkerFunction().bind(self.worker_rt)
        self.sweep_rt = self._runtime()
        self.sweep = SweepFunction().bind(self.sweep_rt)
        self._lock = threading.Lock()  # API Gateway events: one at a time per "function"

    def _runtime(self) -> AwsRuntime:
        rt = AwsRuntime(self.env, self.clock, aioboto3.Session())
        self._runtimes.append(rt)
        return rt

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        with self._lock:
            return Reply(self.ingress(api_event(method, path, body, **kwargs), Context(29)))

    def admin_call(self, method: str, path: str, body: Any = None) -> Reply:
        return Reply(self.admin(api_event(method, path, body), Context(29)))

    def sweep_once(self) -> dict[str, int]:
        event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                 "time": "2026-12-01T00:00:00Z", "detail": {}}  # fmt: skip
        result: dict[str, int] = self.sweep(event, Context(60))
        return result

    @contextmanager
    def pump(self, wait_s: int = 1) -> Iterator[list[int]]:
        """Play the event source mapping while the block runs: receive up to 10 messages,
        invoke the worker with them, delete those it did not report as failed. Yields the
        sizes of the batches it delivered."""
        sqs = sqs_client(self.ministack)
        stop = threading.Event()
        batches: list[int] = []

        def run() -> None:
            while not stop.is_set():
                got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=wait_s).get("Messages", [])  # fmt: skip
                if not got:
                    continue
                batches.append(len(got))
                event = {"Records": [{"messageId": m["MessageId"], "body": m["Body"],
                                      "receiptHandle": m["ReceiptHandle"],
                                      "eventSource": "aws:sqs"} for m in got]}  # fmt: skip
                answer = self.worker(event, Context(60))
                failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
                done = [m for m in got if m["MessageId"] not in failed]
                if done:
                    sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)])  # fmt: skip

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield batches
        finally:
            stop.set()
            thread.join(timeout=30)

    def close(self) -> None:
        for rt in self._runtimes:
            with rt.current_loop() as loop:
                loop.run_until_complete(rt.close())
            rt.loop.close()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return found
