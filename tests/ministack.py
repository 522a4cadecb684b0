"""MiniStack for the Lambda tests: real Python handlers behind the real Invoke API, or a loud
failure under CI.

``scripts/test.sh`` installs MiniStack, starts it on a free loopback port and exports
``TARRY_MINISTACK_URL``. Without it the Lambda tests skip on a developer's machine and fail under
``CI=true``. Only ``AWS_ENDPOINT_URL_DYNAMODB`` is exported for the DynamoDB tests, so the clients
here are pointed at MiniStack explicitly. They only ever talk to a loopback endpoint, never to an
AWS account.

What MiniStack does with a function (1.5.33, read in its source and checked): each function
version (or alias) gets warm worker processes on MiniStack's own interpreter (Python 3.12 in
``.ci/.deps/ministack/venv``, whatever ``Runtime`` says), one per concurrent invocation, that
import the handler once; an unhandled exception or a timeout kills the worker, so the next
invocation is a cold start. A handler inherits MiniStack's environment, then its function's
``Environment`` (which may set ``AWS_ENDPOINT_URL_DYNAMODB``), then the reserved variables.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.config import Config

from tests.dynamodb_local import unavailable

REGION = "us-east-1"
ACCOUNT = "000000000000"  # MiniStack's default account: the one in every ARN it makes
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tarry-test"  # not checked: MiniStack runs without auth


_answered: set[str] = set()  # endpoints whose health check passed once in this process


def ministack() -> str:
    """The MiniStack endpoint; skips the test (fails it under CI=true) without one."""
    endpoint = os.environ.get("TARRY_MINISTACK_URL")
    problem = None
    if endpoint and endpoint in _answered:
        return endpoint
    if not endpoint:
        problem = "TARRY_MINISTACK_URL is not set"
    elif urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        problem = f"{endpoint} is not a loopback MiniStack"
    else:
        try:
            reply = httpx.get(f"{endpoint}/_ministack/health", timeout=5)
            if reply.status_code != 200:
                problem = f"{endpoint}/_ministack/health answered {reply.status_code}"
        except httpx.HTTPError as exc:
            problem = f"nothing answers at {endpoint}: {exc!r}"
    if problem is not None:
        unavailable("MiniStack", problem)
    assert endpoint is not None
    _answered.add(endpoint)
    return endpoint


def ministack_python() -> str:
    """The interpreter MiniStack runs functions on (Python 3.12, from scripts/ministack.sh):
    packages are compiled with it, as with the function's own Python on AWS."""
    python = Path(__file__).resolve().parent.parent / ".ci/.deps/ministack/venv/bin/python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: scripts/ministack.sh installs it")
    return str(python)


def reset(endpoint: str | None = None) -> None:
    """Wipe all of MiniStack's state (functions, versions, aliases) and stop its workers."""
    reply = httpx.post(f"{endpoint or ministack()}/_ministack/reset", timeout=30)
    reply.raise_for_status()


def lambda_client(endpoint: str | None = None, read_timeout: float = 120) -> Any:
    """A boto3 Lambda client on MiniStack. It never retries: a retried Invoke would run the
    handler again and hide what the test is looking at."""
    return boto3.client(
        "lambda",
        endpoint_url=endpoint or ministack(),
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": 1},
            read_timeout=read_timeout,
            connect_timeout=5,
            tcp_keepalive=True,
        ),
    )


def zip_files(files: dict[str, str | bytes]) -> bytes:
    """A deployment package: ``{"handler.py": source, ...}`` zipped in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def deploy_function(
    client: Any,
    name: str,
    zip_bytes: bytes,
    handler: str,
    timeout_s: int = 30,
    environment: dict[str, str] | None = None,
    memory_mb: int = 128,
    runtime: str = "python3.12",
) -> str:
    """Create the function (``$LATEST``), wait until it is active, and return its ARN."""
    made = client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        Timeout=timeout_s,
        MemorySize=memory_mb,
        Environment={"Variables": environment or {}},
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    arn: str = made["FunctionArn"]
    return arn


def update_code(client: Any, name: str, zip_bytes: bytes) -> None:
    """Replace ``$LATEST``'s code and wait until the update is done."""
    client.update_function_code(FunctionName=name, ZipFile=zip_bytes)
    client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )


def publish_version(client: Any, name: str) -> str:
    """Publish ``$LATEST`` as a new version; return the version's ARN (``…:function:NAME:N``)."""
    arn: str = client.publish_version(FunctionName=name)["FunctionArn"]
    return arn


def create_alias(client: Any, name: str, alias: str, version: str) -> str:
    """Point ``alias`` at ``version``; return the alias ARN (``…:function:NAME:ALIAS``)."""
    arn: str = client.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)[
        "AliasArn"
    ]
    return arn


def invoke(
    client: Any, function: str, event: Any = None, qualifier: str | None = None
) -> tuple[Any, str | None]:
    """Invoke synchronously; return the decoded payload and ``FunctionError`` (None when the
    handler returned). ``function`` may be a name or a (qualified) ARN."""
    kwargs: dict[str, Any] = {"FunctionName": function, "Payload": json.dumps(event).encode()}
    if qualifier is not None:
        kwargs["Qualifier"] = qualifier
    reply = client.invoke(**kwargs)
    payload = reply["Payload"].read()
    function_error: str | None = reply.get("FunctionError")
    return (json.loads(payload) if payload else None), function_error
