"""Deployment clients: how the runtime reaches handlers (in-process, over HTTP, or as Lambda
functions, in :mod:`.lambda_deployment`), and :func:`client_for`, which picks one by what was
registered."""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Protocol

import httpx

from tarry.endpoint import Endpoint
from tarry.protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    Discovery,
    InvokeRequest,
    InvokeResponse,
)


class DeploymentError(Exception):
    """The deployment could not be reached or answered outside the protocol."""


class DeploymentInUse(DeploymentError):
    """A deployment still has invocations that have not completed."""

    def __init__(self, deployment_id: str, invocations: int) -> None:
        super().__init__(
            f"{deployment_id} still has {invocations} invocation(s) that have not completed; "
            "they run on it until they do. Wait for them, or remove it anyway with --force "
            "(they are paused until it is registered again)"
        )
        self.invocations = invocations


class DeploymentNotFound(DeploymentError):
    """What was registered does not exist (no such function, version or alias)."""


class PayloadTooLarge(DeploymentError):
    """The invoke request is larger than the deployment takes: retrying cannot help."""


class DeploymentClient(Protocol):
    uri: str
    # How the SDK behind it can checkpoint mid-attempt: "inprocess" (a direct channel object),
    # "http" (posting back to the runtime's checkpoint URL), "dynamodb" (writing to the store's
    # table itself, when the store is DynamoDB), or "none" (flush by ending requests).
    checkpoint: Literal["inprocess", "http", "dynamodb", "none"]
    # The role the runtime assumes to reach it (Lambda); None: its own credentials.
    assume_role_arn: str | None

    async def discover(self) -> Discovery: ...

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse: ...

    async def close(self) -> None: ...


def deployment_id(uri: str) -> str:
    return "dp_" + hashlib.sha256(uri.encode()).hexdigest()[:20]


class InProcessDeployment:
    """Handlers served by this very process (``tarry dev``, tests): no network, and the SDK
    checkpoints ``ctx.run`` results straight into the store."""

    checkpoint: Literal["inprocess", "http", "dynamodb", "none"] = "inprocess"
    assume_role_arn: str | None = None

    def __init__(self, endpoint: Endpoint, name: str) -> None:
        self.endpoint = endpoint
        self.uri = f"inprocess:{name}"

    async def discover(self) -> Discovery:
        return self.endpoint.discovery()

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        return await self.endpoint.invoke(request, channel)

    async def close(self) -> None:
        return None


_INVOKE_TIMEOUT = httpx.Timeout(None, connect=5.0)


class HttpDeployment:
    """Handlers behind an HTTP URL serving :func:`tarry.app`."""

    checkpoint: Literal["inprocess", "http", "dynamodb", "none"] = "http"
    assume_role_arn: str | None = None

    def __init__(self, uri: str, timeout_s: float = 300.0) -> None:
        self.uri = uri.rstrip("/")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))

    async def discover(self) -> Discovery:
        try:
            reply = await self._client.get(f"{self.uri}/discover")
        except httpx.HTTPError as exc:
            raise DeploymentError(f"cannot reach {self.uri}: {exc}") from exc
        if reply.status_code != 200:
            raise DeploymentError(f"{self.uri}/discover answered {reply.status_code}")
        try:
            discovery: Discovery = reply.json()
        except ValueError as exc:
            raise DeploymentError(f"{self.uri}/discover did not answer JSON") from exc
        if discovery.get("protocol") != PROTOCOL_VERSION or "services" not in discovery:
            raise DeploymentError(
                f"{self.uri} speaks protocol {discovery.get('protocol')!r}, not {PROTOCOL_VERSION}"
            )
        return discovery

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        url = f"{self.uri}/invoke/{request['service']}/{request['handler']}"
        try:
            # No read timeout: an attempt answers when it ends, however many steps it stores
            # meanwhile; the invoker's attempt timeout bounds how long it may stay idle.
            reply = await self._client.post(url, json=request, timeout=_INVOKE_TIMEOUT)
        except httpx.HTTPError as exc:
            raise DeploymentError(f"cannot reach {url}: {exc!r}") from exc
        if reply.status_code != 200:
            raise DeploymentError(f"{url} answered {reply.status_code}: {reply.text[:500]}")
        response: InvokeResponse = reply.json()
        return response

    async def close(self) -> None:
        await self._client.aclose()


def client_for(
    uri: str, assume_role_arn: str | None = None, session: Any = None
) -> DeploymentClient:
    """The client that reaches a registered deployment: an ``http(s)://`` URL, or a Lambda
    function version's ARN (``ValueError`` for anything else). ``session``: the aioboto3
    session Lambda clients are made from."""
    if uri.startswith(("http://", "https://")):
        return HttpDeployment(uri)
    if uri.startswith("arn:"):
        from .lambda_deployment import FunctionArn, LambdaDeployment

        return LambdaDeployment(FunctionArn.parse(uri), assume_role_arn, session=session)
    raise ValueError(f"{uri!r} is neither an http(s) URL nor a Lambda function ARN")


__all__ = [
    "DeploymentClient",
    "DeploymentError",
    "DeploymentInUse",
    "DeploymentNotFound",
    "HttpDeployment",
    "InProcessDeployment",
    "PayloadTooLarge",
    "client_for",
    "deployment_id",
]
