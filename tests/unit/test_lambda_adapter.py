"""The Lambda adapter turns Invoke payloads into protocol calls (saved event fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

from examples.greeter import greeter
from tarry.lambda_adapter import lambda_handler

FIXTURES = Path(__file__).parent / "fixtures"


def test_discover_and_invoke_events() -> None:
    handler = lambda_handler([greeter])
    discovery = handler({"discover": True}, None)
    assert [s["name"] for s in discovery["services"]] == ["Greeter"]

    event = json.loads((FIXTURES / "lambda_invoke_greet.json").read_text())
    response = handler(event, None)
    assert response["outcome"] == {"kind": "completed", "value": "Hello Lambda!"}
    assert response["commands"] == [{"kind": "output", "value": "Hello Lambda!"}]


def test_a_request_for_an_unknown_handler_is_an_error_payload() -> None:
    event = json.loads((FIXTURES / "lambda_invoke_greet.json").read_text())
    event["handler"] = "nope"
    response = lambda_handler([greeter])(event, None)
    assert response["error"]["code"] == 404
