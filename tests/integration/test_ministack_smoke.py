"""MiniStack runs real Python handlers behind the real Lambda API: the infrastructure the Lambda
tests stand on (scripts/ministack.sh starts it; tests/ministack.py talks to it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ministack import (
    create_alias,
    deploy_function,
    invoke,
    publish_version,
    update_code,
    zip_files,
)

pytestmark = pytest.mark.integration

HANDLER = """
import os

CALLS = 0  # module state: a warm worker keeps it between invocations of one version


def handler(event, context):
    global CALLS
    CALLS += 1
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {
        "echo": event,
        "code": CODE,
        "tag": os.environ["TAG"],
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "calls": CALLS,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def package(code: str) -> bytes:
    return zip_files({"app.py": f"CODE = {code!r}\n{HANDLER}"})




def test_create_invoke_publish_alias(lam: Any, function_name: str) -> None:
    name = function_name
    arn = deploy_function(lam, name, package("one"), "app.handler", 10, {"TAG": "blue"})
    assert arn.endswith(f":function:{name}")

    payload, error = invoke(lam, name, {"hello": "world"})
    assert error is None
    assert payload["echo"] == {"hello": "world"}
    assert (payload["code"], payload["tag"], payload["version"]) == ("one", "blue", "$LATEST")
    assert 0 < payload["remaining_ms"] <= 10_000
    assert invoke(lam, name, {})[0]["calls"] == 2  # the same warm worker

    version_arn = publish_version(lam, name)
    assert version_arn == f"{arn}:1"
    payload, error = invoke(lam, version_arn, {"n": 1})
    assert error is None
    assert (payload["version"], payload["arn"], payload["echo"]) == ("1", version_arn, {"n": 1})

    alias_arn = create_alias(lam, name, "live", "1")
    alias = lam.get_alias(FunctionName=name, Name="live")
    assert (alias["AliasArn"], alias["FunctionVersion"]) == (alias_arn, "1")
    assert alias_arn == f"{arn}:live"
    payload, error = invoke(lam, alias_arn, {})
    assert error is None
    assert (payload["version"], payload["arn"], payload["code"]) == ("1", alias_arn, "one")


def test_a_published_version_keeps_its_code(lam: Any, function_name: str) -> None:
    name = function_name
    deploy_function(lam, name, package("one"), "app.handler", environment={"TAG": "t"})
    one = publish_version(lam, name)
    update_code(lam, name, package("two"))
    two = publish_version(lam, name)
    assert (one.rsplit(":", 1)[1], two.rsplit(":", 1)[1]) == ("1", "2")
    assert invoke(lam, name, {})[0]["code"] == "two"
    assert invoke(lam, one, {})[0]["code"] == "one"
    assert invoke(lam, name, {}, qualifier="2")[0]["code"] == "two"


def test_failures(lam: Any, function_name: str) -> None:
    name = function_name
    deploy_function(lam, name, package("one"), "app.handler", environment={"TAG": "t"})
    payload, error = invoke(lam, name, {"fail": True})
    assert error == "Unhandled"
    assert payload["errorMessage"] == "asked to fail"
    # MiniStack's errorType, not the exception's class as on AWS; and no stackTrace
    assert payload["errorType"] == "Runtime.HandlerError"

    for function, qualifier in [(f"{name}-missing", None), (name, "9"), (name, "nowhere")]:
        with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Function not found"):
            invoke(lam, function, {}, qualifier=qualifier)
