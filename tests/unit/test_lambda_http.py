"""The HTTP deployment on Lambda: Function URL and API Gateway events through Mangum to
``tarry.app`` (saved event fixtures, one handler per test as in a warm Lambda process)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tarry
from examples.greeter import greeter
from tarry.lambda_adapter.http import HttpHandler, http_handler

FIXTURES = Path(__file__).parent / "fixtures"

# A REST API's proxy integration (payload 1.0, its body base64-encoded), an HTTP API on its
# $default stage (payload 2.0) and a Function URL (payload 2.0).
KINDS = ["apigateway_rest", "apigateway_http", "function_url"]


def fixture(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return event


def with_body(event: dict[str, Any], body: str) -> dict[str, Any]:
    """``event`` with another body, encoded the way the event's own was."""
    event = copy.deepcopy(event)
    event["body"] = base64.b64encode(body.encode()).decode() if event["isBase64Encoded"] else body
    return event


def with_path(event: dict[str, Any], path: str) -> dict[str, Any]:
    """``event`` for another request path, in every place the payload format names it."""
    event = copy.deepcopy(event)
    context = event["requestContext"]
    if event.get("version") == "2.0":
        event["rawPath"] = context["http"]["path"] = path
    else:
        event["path"] = path
        event["pathParameters"] = {"proxy": path.lstrip("/")}
        context["path"] = f"/{context['stage']}{path}"
    return event


def json_body(response: dict[str, Any]) -> Any:
    assert response["isBase64Encoded"] is False
    return json.loads(response["body"])


@pytest.fixture
def handler() -> Iterator[HttpHandler]:
    h = http_handler([greeter])
    yield h
    h.close()


@pytest.mark.parametrize("kind", KINDS)
def test_discovery_lists_the_services(handler: HttpHandler, kind: str) -> None:
    response = handler(fixture(f"{kind}_discover"), None)
    assert response["statusCode"] == 200
    discovery = json_body(response)
    assert discovery["protocol"] == 1
    assert [s["name"] for s in discovery["services"]] == ["Greeter"]
    greet = next(h for h in discovery["services"][0]["handlers"] if h["name"] == "greet")
    assert greet["input_schema"] == {"type": "string"}


@pytest.mark.parametrize("kind", KINDS)
def test_invoke_answers_the_outcome(handler: HttpHandler, kind: str) -> None:
    response = handler(fixture(f"{kind}_invoke_greet"), None)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    reply = json_body(response)
    assert reply["outcome"] == {"kind": "completed", "value": "Hello Lambda!"}
    assert reply["commands"] == [{"kind": "output", "value": "Hello Lambda!"}]


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_that_is_not_json_is_a_400_with_a_message(handler: HttpHandler, kind: str) -> None:
    response = handler(with_body(fixture(f"{kind}_invoke_greet"), "{not json"), None)
    assert response["statusCode"] == 400
    assert json_body(response)["error"]["message"].startswith("bad invoke request")


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_for_another_handler_than_the_path_is_a_400(
    handler: HttpHandler, kind: str
) -> None:
    event = with_path(fixture(f"{kind}_invoke_greet"), "/invoke/Greeter/greet_later")
    response = handler(event, None)
    assert response["statusCode"] == 400
    assert "different handlers" in json_body(response)["error"]["message"]


def test_an_unknown_handler_is_a_404(handler: HttpHandler) -> None:
    event = fixture("function_url_invoke_greet")
    request = json.loads(event["body"])
    request["handler"] = "nope"
    event = with_path(with_body(event, json.dumps(request)), "/invoke/Greeter/nope")
    response = handler(event, None)
    assert response["statusCode"] == 404
    assert json_body(response) == {
        "protocol": 1,
        "error": {"code": 404, "message": "no handler Greeter/nope here"},
    }


def test_a_warm_handler_serves_invocation_after_invocation(handler: HttpHandler) -> None:
    for _ in range(2):
        for kind in KINDS:
            assert handler(fixture(f"{kind}_discover"), None)["statusCode"] == 200
            reply = json_body(handler(fixture(f"{kind}_invoke_greet"), None))
            assert reply["outcome"] == {"kind": "completed", "value": "Hello Lambda!"}


def test_asyncio_run_between_invocations_does_not_break_the_handler(handler: HttpHandler) -> None:
    """Mangum alone runs on the thread's current loop, which ``asyncio.run`` clears."""
    assert handler(fixture("function_url_invoke_greet"), None)["statusCode"] == 200
    asyncio.run(asyncio.sleep(0))
    assert handler(fixture("function_url_invoke_greet"), None)["statusCode"] == 200
    assert handler(fixture("apigateway_rest_invoke_greet"), None)["statusCode"] == 200


def test_a_stage_prefix_is_stripped_when_configured() -> None:
    # An HTTP API on a named stage puts the stage in front of the path.
    event = fixture("apigateway_http_discover")
    event["requestContext"]["stage"] = "live"
    event = with_path(event, "/live/discover")
    h = http_handler([greeter], api_gateway_base_path="/live")
    try:
        assert h(event, None)["statusCode"] == 200
    finally:
        h.close()
    plain = http_handler([greeter])
    try:
        assert plain(event, None)["statusCode"] == 404
    finally:
        plain.close()


def test_a_closed_handler_refuses_to_run() -> None:
    h = http_handler([greeter])
    h.close()
    h.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        h(fixture("function_url_discover"), None)


# -- HTTP checkpoints: the app's httpx client lives across invocations ---------------------

shouter = tarry.Service("Shouter")


@shouter.handler()
async def shout(ctx: tarry.Context, name: str) -> str:
    loud: str = await ctx.run("upper", lambda: name.upper())
    return f"{loud}!"


class CheckpointServer:
    """The runtime's checkpoint endpoint, reduced to: answer 204, remember what came."""

    def __init__(self) -> None:
        self.appends: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the runtime's uvicorn does

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.appends.append(
                    {
                        "path": self.path,
                        "authorization": self.headers["authorization"],
                        "body": json.loads(body),
                        "peer_port": self.client_address[1],
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tarry/checkpoint"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def checkpoints() -> Iterator[CheckpointServer]:
    server = CheckpointServer()
    yield server
    server.close()


@pytest.fixture
def shouter_handler(checkpoints: CheckpointServer) -> Iterator[HttpHandler]:
    h = http_handler([shouter])  # closed before the server: its connection ends first
    yield h
    h.close()


def shout_event(checkpoint_url: str, n: int) -> dict[str, Any]:
    request = {
        "protocol": 1,
        "invocation_id": f"inv_shout{n}",
        "epoch": 1,
        "service": "Shouter",
        "handler": "shout",
        "key": None,
        "headers": {},
        "journal": [{"kind": "input", "value": f"ann{n}"}],
        "completions": {},
        "state": None,
        "retry_count": 0,
        "checkpoint": "http",
        "checkpoint_url": checkpoint_url,
        "checkpoint_token": f"token-{n}",
    }
    event = with_path(fixture("function_url_invoke_greet"), "/invoke/Shouter/shout")
    return with_body(event, json.dumps(request))


def test_http_checkpoints_work_invocation_after_invocation(
    shouter_handler: HttpHandler, checkpoints: CheckpointServer
) -> None:
    for n in range(3):
        if n == 2:
            asyncio.run(asyncio.sleep(0))  # other asyncio use in the process, between invocations
        response = shouter_handler(shout_event(checkpoints.url, n), None)
        assert response["statusCode"] == 200, response
        reply = json_body(response)
        assert reply["outcome"] == {"kind": "completed", "value": f"ANN{n}!"}
    assert [(a["path"], a["authorization"]) for a in checkpoints.appends] == [
        ("/tarry/checkpoint", f"Bearer token-{n}") for n in range(3)
    ]
    assert [a["body"]["completions"] for a in checkpoints.appends] == [
        {"1": {"value": f"ANN{n}"}} for n in range(3)
    ]
    # One client, one pooled connection, on one loop: every append came over the same socket.
    assert len({a["peer_port"] for a in checkpoints.appends}) == 1
