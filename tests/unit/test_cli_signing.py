"""The CLI signs its admin requests with SigV4 when the admin API sits behind API Gateway's IAM
authorisation: a local Starlette server stands in for API Gateway and checks each signature
the way API Gateway does, recomputing it with botocore from the request it received."""

from __future__ import annotations

import doctest
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tarry.runtime import sigv4
from tarry.runtime.cli import main

KEY, SECRET, TOKEN = "ASIAEXAMPLETEMPKEY01", "temporary/secret/key", "session-token-from-sts"
LONG_KEY, LONG_SECRET = "AKIAEXAMPLELONGKEY01", "long/term/secret/key"

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<headers>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass
class Received:
    """One request as the stand-in for API Gateway received it, and what it made of it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    scope: dict[str, str] | None = None  # the parsed Authorization header, if signed
    refusal: str | None = None  # why the signature does not verify, if it does not


@dataclass
class Gateway:
    url: str
    secrets: dict[str, str]  # access key -> the secret API Gateway knows it by
    require_signature: bool = True
    received: list[Received] = field(default_factory=list)


def verify(got: Received, secrets: dict[str, str]) -> None:
    """Check ``got``'s signature as API Gateway would: recompute it with botocore from the
    method, URL, signed headers and body as received, at the time the request says."""
    authorization = got.headers.get("authorization")
    if authorization is None:
        got.refusal = "Missing Authentication Token"
        return
    match = _AUTHORIZATION.fullmatch(authorization)
    if match is None:
        got.refusal = f"Authorization header malformed: {authorization}"
        return
    got.scope = match.groupdict()
    secret = secrets.get(got.scope["key"])
    if secret is None:
        got.refusal = "The security token included in the request is invalid."
        return
    signed = {name: got.headers[name] for name in got.scope["headers"].split(";")}
    # API Gateway reads the query's parameters (a `+` is a space) and signs them encoded anew
    url, _, query = got.url.partition("?")
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if params:
        url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="-_.~")
    request = AWSRequest(method=got.method, url=url, headers=signed, data=got.body)
    request.context["timestamp"] = got.headers["x-amz-date"]
    signer = SigV4Auth(
        Credentials(got.scope["key"], secret, got.headers.get("x-amz-security-token")),
        got.scope["service"],
        got.scope["region"],
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if got.scope["date"] != got.headers["x-amz-date"][:8] or expected != got.scope["signature"]:
        got.refusal = (
            "The request signature we calculated does not match the signature you provided."
        )


def _reply(path: str) -> dict[str, Any]:
    """What the admin API would answer, enough for the CLI to print something."""
    if path.endswith("/deployments"):
        deployment = {
            "id": "dp_1",
            "uri": "arn:aws:lambda:eu-west-1:123456789012:function:signup:3",
            "services": ["Signup"],
            "invocations": 0,
            "serving": True,
            "created_at": 0,
        }
        return {"deployments": [deployment]}
    if path.endswith("/invocations"):
        return {"invocations": []}
    return {"state": {"name": {"a": 1}}}


def _app(gateway: Gateway) -> Starlette:
    async def endpoint(request: Request) -> JSONResponse:
        raw_path = request.scope["raw_path"].decode()
        query = request.scope["query_string"].decode()
        got = Received(
            method=request.method,
            url=f"http://{request.headers['host']}{raw_path}" + (f"?{query}" if query else ""),
            headers=dict(request.headers),
            body=await request.body(),
        )
        verify(got, gateway.secrets)
        gateway.received.append(got)
        if got.refusal is not None and gateway.require_signature:
            kind = "MissingAuthenticationTokenException" if got.scope is None else "Forbidden"
            return JSONResponse(
                {"message": got.refusal}, status_code=403, headers={"x-amzn-ErrorType": kind}
            )
        return JSONResponse(_reply(request.url.path))

    route = Route("/{path:path}", endpoint, methods=["GET", "POST", "PATCH", "DELETE"])
    return Starlette(routes=[route])


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    gateway = Gateway(
        url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        secrets={KEY: SECRET, LONG_KEY: LONG_SECRET},
    )
    server = uvicorn.Server(uvicorn.Config(_app(gateway), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield gateway
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(autouse=True)
def no_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, region, profile or proxy from the machine running the tests; and no
    instance-role lookup (it would wait for a metadata service that is not there)."""
    for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "TARRY_ADMIN_URL", "TARRY_ADMIN_SIGV4",
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def temporary_credentials(region: str = "eu-central-1") -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": region,
    }


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_docstring_examples() -> None:
    result = doctest.testmod(sigv4)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("how", ["--sign", "TARRY_ADMIN_SIGV4=1"])
def test_a_signed_request_verifies_at_the_server(gateway: Gateway, how: str) -> None:
    env = temporary_credentials("eu-central-1")
    flag = ["--sign"] if how == "--sign" else []
    if how != "--sign":
        env["TARRY_ADMIN_SIGV4"] = "1"
    result = run_cli("deployments", "ls", "--admin-url", gateway.url, *flag, env=env)
    assert result.exit_code == 0, result.output
    assert "arn:aws:lambda:eu-west-1:123456789012:function:signup:3" in result.output
    [got] = gateway.received
    assert got.refusal is None
    assert got.scope is not None
    assert (got.scope["key"], got.scope["region"], got.scope["service"]) == (
        KEY,
        "eu-central-1",
        "execute-api",
    )
    assert re.fullmatch(r"\d{8}T\d{6}Z", got.headers["x-amz-date"])
    assert got.headers["x-amz-security-token"] == TOKEN
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(got.scope["headers"].split(";"))


def test_an_api_gateway_host_is_signed_for_the_region_it_names(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stand-in answers for the API's host name as an HTTP proxy: the request goes out
    # exactly as it would to AWS (its Host header, its path under the stage), signed unasked.
    monkeypatch.setenv("HTTP_PROXY", gateway.url)
    api = "http://a1b2c3d4e5.execute-api.ap-southeast-2.amazonaws.com/prod"
    env = temporary_credentials(region="us-east-1")  # the host's region wins
    listed = run_cli(
        "invocations", "ls", "--service", "Sign up", "--status", "running",
        "--admin-url", api, env=env,
    )  # fmt: skip
    assert listed.exit_code == 0, listed.output
    edited = run_cli(
        "state", "set", "My Object", "user/1", "name", '{"a": 1}', "--admin-url", api, env=env
    )
    assert edited.exit_code == 0, edited.output
    query, body = gateway.received
    for got in (query, body):
        assert got.refusal is None
        assert got.scope is not None
        assert (got.scope["region"], got.scope["service"]) == ("ap-southeast-2", "execute-api")
        assert got.headers["host"] == "a1b2c3d4e5.execute-api.ap-southeast-2.amazonaws.com"
    # sent as signed: a space as %20, not httpx's `+`, which API Gateway would sign as a space
    assert query.url.endswith("/prod/invocations?limit=50&service=Sign%20up&status=running")
    assert body.method == "PATCH"
    assert body.url.endswith("/prod/state/My%20Object/user%2F1")
    assert body.body == b'{"set":{"name":{"a":1}}}'
    assert body.scope is not None
    assert "content-type" in body.scope["headers"].split(";")


@pytest.mark.parametrize(
    "path", ["/_aws/execute-api/a1b2c3/prod", "/restapis/a1b2c3/prod/_user_request_"]
)
def test_an_emulator_data_plane_url_is_signed_when_it_looks_like_one(
    gateway: Gateway, path: str
) -> None:
    result = run_cli(
        "deployments", "ls", "--admin-url", gateway.url + path, env=temporary_credentials()
    )
    assert result.exit_code == 0, result.output
    [got] = gateway.received
    assert got.refusal is None
    assert got.url == f"{gateway.url}{path}/deployments"


def test_a_local_admin_url_is_not_signed(gateway: Gateway) -> None:
    gateway.require_signature = False
    result = run_cli("deployments", "ls", "--admin-url", gateway.url, env=temporary_credentials())
    assert result.exit_code == 0, result.output
    [got] = gateway.received
    assert not {"authorization", "x-amz-date", "x-amz-security-token"} & set(got.headers)


def test_no_credentials_is_a_clear_error() -> None:
    result = run_cli(
        "deployments", "ls", "--admin-url", "https://abc.execute-api.us-east-1.amazonaws.com/prod"
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # click's error, not an exception
    assert "Error: no AWS credentials to sign the admin request: none in the environment" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_a_profile_that_does_not_exist_is_a_clear_error() -> None:
    result = run_cli(
        "deployments", "ls", "--admin-url", "https://abc.execute-api.us-east-1.amazonaws.com/prod",
        env={"AWS_PROFILE": "nonesuch"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "no AWS credentials to sign the admin request:" in result.output
    assert "nonesuch" in result.output


def test_no_region_is_a_clear_error(gateway: Gateway) -> None:
    env = temporary_credentials()
    del env["AWS_REGION"]
    result = run_cli("deployments", "ls", "--admin-url", gateway.url, "--sign", env=env)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "no AWS region to sign the admin request for" in result.output
    assert gateway.received == []


def test_a_refusal_by_iam_says_who_signed(gateway: Gateway) -> None:
    gateway.secrets[LONG_KEY] = "not the secret the client has"
    env = {"AWS_ACCESS_KEY_ID": LONG_KEY, "AWS_SECRET_ACCESS_KEY": LONG_SECRET}
    env["AWS_DEFAULT_REGION"] = "eu-west-1"
    result = run_cli("deployments", "ls", "--admin-url", gateway.url, "--sign", env=env)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    [got] = gateway.received
    assert got.refusal is not None
    assert "x-amz-security-token" not in got.headers  # long-term credentials carry no token
    assert "403: The request signature we calculated does not match" in result.output
    assert "refused the request" in result.output
    assert f"signed with access key {LONG_KEY} (env) for region eu-west-1" in result.output


def test_an_unsigned_request_refused_by_api_gateway_suggests_signing(gateway: Gateway) -> None:
    result = run_cli("deployments", "ls", "--admin-url", gateway.url, env=temporary_credentials())
    assert result.exit_code == 1
    assert "403: Missing Authentication Token" in result.output
    assert "--sign" in result.output


def test_without_botocore_signing_names_the_aws_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("botocore", "botocore.session", "botocore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: import fails
    result = run_cli(
        "deployments", "ls", "--admin-url", "https://abc.execute-api.us-east-1.amazonaws.com/prod",
        env=temporary_credentials(),
    )  # fmt: skip
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "pip install 'tarry[aws]'" in result.output
