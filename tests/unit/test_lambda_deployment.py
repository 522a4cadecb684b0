"""What the runtime makes of a Lambda function's answers: Lambda's errors mapped to failed
attempts with their type and message, payload limits kept (the Invoke transport replaced)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from tarry.protocol import PROTOCOL_VERSION, InvokeRequest
from tarry.runtime.deployments import DeploymentError, DeploymentNotFound, PayloadTooLarge
from tarry.runtime.lambda_deployment import (
    INLINE_JOURNAL_BYTES,
    FunctionArn,
    LambdaArnError,
    LambdaDeployment,
)

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:signup:7"


class Scripted(LambdaDeployment):
    """Answers each Invoke as told: ``(FunctionError, payload)``, or raises."""

    def __init__(self, answer: tuple[str | None, Any] | Exception) -> None:
        super().__init__(FunctionArn.parse(ARN))
        self.answer = answer
        self.sent: list[dict[str, Any]] = []

    async def _send(self, payload: bytes) -> tuple[str | None, bytes]:
        self.sent.append(json.loads(payload))
        if isinstance(self.answer, Exception):
            raise self.answer
        error, body = self.answer
        return error, json.dumps(body).encode()


def request(journal_bytes: int = 10, checkpoint: str = "dynamodb") -> InvokeRequest:
    return {
        "protocol": PROTOCOL_VERSION,
        "invocation_id": "inv_1",
        "epoch": 1,
        "service": "Signup",
        "handler": "signup",
        "key": None,
        "headers": {},
        "journal": [{"kind": "input", "value": "x" * journal_bytes}],
        "completions": {},
        "state": None,
        "retry_count": 0,
        "checkpoint": checkpoint,  # type: ignore[typeddict-item]
        "table": "tarry",
        "journal_length": 1,
    }


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Invoke")


@pytest.mark.parametrize(
    ("answer", "kind", "says"),
    [
        (
            ("Unhandled", {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"}),
            DeploymentError,
            "Sandbox.Timedout: Task timed out",
        ),
        (("Unhandled", {"errorType": "KeyError", "errorMessage": "'user'"}),
         DeploymentError, "KeyError: 'user'"),
        ((None, {"protocol": 1, "error": {"code": 404, "message": "no handler Signup/x here"}}),
         DeploymentError, "refused the request (404): no handler Signup/x here"),
        ((None, {"statusCode": 200}), DeploymentError, "outside the protocol"),
        (client_error("TooManyRequestsException", "Rate Exceeded."),
         DeploymentError, "TooManyRequestsException: Rate Exceeded. (Lambda is throttling"),
        (client_error("ResourceNotFoundException", f"Function not found: {ARN}"),
         DeploymentNotFound, "does not exist"),
        (NoCredentialsError(), DeploymentError, "no AWS credentials found"),
    ],
)
async def test_lambdas_errors_become_failed_attempts_that_say_what_happened(
    answer: Any, kind: type[Exception], says: str
) -> None:
    function = Scripted(answer)
    with pytest.raises(kind) as raised:
        await function.invoke(request(), None)
    assert says in str(raised.value)


async def test_a_long_journal_is_left_in_the_table_and_a_short_one_is_sent() -> None:
    reply = (None, {"protocol": 1, "commands": [], "completions": {},
                    "outcome": {"kind": "completed", "value": None}})  # fmt: skip
    function = Scripted(reply)
    await function.invoke(request(journal_bytes=10), None)
    await function.invoke(request(journal_bytes=INLINE_JOURNAL_BYTES), None)
    short, long = function.sent
    assert short["journal"] and short["journal_length"] == 1
    assert "journal" not in long and "completions" not in long and "state" not in long
    assert long["table"] == "tarry" and long["journal_length"] == 1
    assert len(json.dumps(long)) < 1024


async def test_a_request_lambda_would_refuse_is_not_sent() -> None:
    function = Scripted((None, {}))
    with pytest.raises(PayloadTooLarge, match="6 MB"):
        await function.invoke(request(journal_bytes=7 * 1024 * 1024, checkpoint="none"), None)
    assert function.sent == []


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:lambda:eu-west-1:123456789012:function",
        "arn:aws:lambda:eu-west-1:12345:function:f:1",
        "arn:aws:s3:::bucket",
        "signup",
    ],
)
def test_what_is_not_a_function_arn_says_what_one_looks_like(arn: str) -> None:
    with pytest.raises(LambdaArnError, match="function:NAME"):
        FunctionArn.parse(arn)


def test_arns_are_pinned_by_what_they_name() -> None:
    base = "arn:aws:lambda:eu-west-1:123456789012:function:signup"
    assert FunctionArn.parse(f"{base}:$LATEST").kind == "latest"
    assert str(FunctionArn.parse(f"{base}:live").at("4")) == f"{base}:4"
    assert FunctionArn.parse("arn:aws-cn:lambda:cn-north-1:123456789012:function:f:2").region == (
        "cn-north-1"
    )


class FakeSession:
    """aioboto3's Session as far as LambdaDeployment uses it: STS hands out credentials, and
    every Lambda client made is kept, to see which are closed."""

    def __init__(self) -> None:
        self.lambdas: list[FakeClient] = []

    def client(self, service: str, **kwargs: Any) -> FakeClient:
        made = FakeClient(service, kwargs)
        if service == "lambda":
            self.lambdas.append(made)
        return made


class FakeClient:
    def __init__(self, service: str, kwargs: dict[str, Any]) -> None:
        self.service, self.kwargs, self.closed = service, kwargs, False

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        token = f"token-{kwargs['RoleArn']}"
        return {"Credentials": {"AccessKeyId": "a", "SecretAccessKey": "s", "SessionToken": token}}


async def test_renewed_credentials_leave_invokes_in_flight_their_client() -> None:
    import asyncio

    session = FakeSession()
    function = LambdaDeployment(FunctionArn.parse(ARN), "arn:aws:iam::1:role/r", session)
    first = await function._lambda()
    assert first.kwargs["aws_session_token"] == "token-arn:aws:iam::1:role/r"
    function._expires = asyncio.get_running_loop().time() - 1  # the credentials are lapsing
    second = await function._lambda()
    assert second is not first
    assert not first.closed  # an invoke started on it may still be waiting for its answer
    await function.close()
    assert first.closed and second.closed
