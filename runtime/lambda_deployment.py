"""Handlers as Lambda functions: the runtime reaches them through the Invoke API (aioboto3).

A Lambda deployment is one *published version* of a function: invocations are pinned to the
deployment they were created for, and a version's code never changes, so a journal is always
replayed by the code that wrote it. An alias is resolved to its version when it is registered;
``$LATEST`` (or an unqualified ARN) is refused unless asked for, loudly, for development.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from tarry.protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    DiscoverRequest,
    Discovery,
    InvokeRequest,
    InvokeResponse,
)
from tarry.serde import dumps

from .deployments import DeploymentError, DeploymentNotFound, PayloadTooLarge

log = logging.getLogger("tarry.runtime.lambda")

# A synchronous Invoke takes and returns 6 MB at most
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Journals and state up to this size travel in the invoke request; a longer one the function
# reads from the table itself (when the store is DynamoDB). Inline was as fast or faster at every
# size measured (bench/lambda_inline.py), and costs no read units; past a megabyte the request
# stays small instead: the runtime does not serialize megabytes for every attempt.
INLINE_JOURNAL_BYTES = 1024 * 1024
# The longest a function may run (15 minutes), and some: the Invoke call waits that long.
INVOKE_TIMEOUT_S = 15 * 60 + 30
# How long assumed-role credentials last (STS's default); the client is renewed 5 minutes early.
ROLE_SESSION_S = 3600

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
)


class LambdaArnError(ValueError):
    """Not a Lambda function ARN that can be registered; the message says what to do."""


@dataclass(frozen=True)
class FunctionArn:
    """A Lambda function ARN, taken apart.

    >>> arn = FunctionArn.parse("arn:aws:lambda:eu-west-1:123456789012:function:signup:3")
    >>> arn.name, arn.region, arn.qualifier, arn.kind
    ('signup', 'eu-west-1', '3', 'version')
    >>> FunctionArn.parse("arn:aws:lambda:eu-west-1:123456789012:function:signup:live").kind
    'alias'
    >>> FunctionArn.parse("arn:aws:lambda:eu-west-1:123456789012:function:signup").kind
    'unqualified'
    """

    partition: str
    region: str
    account: str
    name: str
    qualifier: str | None

    @classmethod
    def parse(cls, arn: str) -> FunctionArn:
        found = _ARN.match(arn.strip())
        if found is None:
            raise LambdaArnError(
                f"{arn!r} is not a Lambda function ARN: expected "
                "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:VERSION or ALIAS]"
            )
        return cls(
            found["partition"], found["region"], found["account"], found["name"], found["qualifier"]
        )

    @property
    def kind(self) -> Literal["version", "alias", "latest", "unqualified"]:
        if self.qualifier is None:
            return "unqualified"
        if self.qualifier == "$LATEST":
            return "latest"
        return "version" if self.qualifier.isdigit() else "alias"

    @property
    def function(self) -> str:
        """The unqualified ARN."""
        return (
            f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.name}"
        )

    def __str__(self) -> str:
        return f"{self.function}:{self.qualifier}" if self.qualifier else self.function

    def at(self, qualifier: str) -> FunctionArn:
        return replace(self, qualifier=qualifier)


class LambdaDeployment:
    """Handlers in a Lambda function version, invoked with the protocol as the payload.

    The function appends its steps to the store's table itself (checkpoint ``dynamodb``) when
    the store is DynamoDB; otherwise it returns after every step. ``assume_role_arn``: a role
    to invoke it as (credentials from STS, renewed before they expire)."""

    checkpoint: Literal["inprocess", "http", "dynamodb", "none"] = "dynamodb"

    def __init__(
        self,
        arn: FunctionArn,
        assume_role_arn: str | None = None,
        session: Any = None,
        inline_bytes: int = INLINE_JOURNAL_BYTES,
    ) -> None:
        self.arn = arn
        self.inline_bytes = inline_bytes  # longer requests leave the journal in the table
        self.uri = str(arn)
        self.assume_role_arn = assume_role_arn
        self._session = session
        self._client: Any = None
        self._client_cm: Any = None
        self._expires: float | None = None  # when assumed-role credentials lapse (loop time)
        # Clients renewed away from (loop time, client): kept until every invoke that may still
        # use them has timed out, then closed.
        self._retired: list[tuple[float, Any]] = []
        self._lock = asyncio.Lock()
        self.invokes = 0  # Invoke calls made (for cost measurements)

    # -- the client ----------------------------------------------------------------------------

    async def _lambda(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and (self._expires is None or loop.time() < self._expires):
            return self._client
        async with self._lock:
            if self._client is not None and (self._expires is None or loop.time() < self._expires):
                return self._client
            await self._retire_client(loop.time())
            try:
                import aioboto3
                from botocore.config import Config
            except ImportError as exc:
                raise DeploymentError(
                    f"Lambda deployments need the aws extra: pip install 'tarry[aws]' ({exc})"
                ) from None
            session = self._session or aioboto3.Session()
            credentials: dict[str, Any] = {}
            if self.assume_role_arn is not None:
                credentials = await self._assume_role(session)
                self._expires = loop.time() + ROLE_SESSION_S - 300
            config = Config(
                read_timeout=INVOKE_TIMEOUT_S,
                connect_timeout=5,
                # An invoke that may have reached the function is not sent again here: a
                # failed attempt is retried by the invoker, from the journal, with backoff.
                retries={"mode": "standard", "max_attempts": 1},
                tcp_keepalive=True,
            )
            cm = session.client("lambda", region_name=self.arn.region, config=config, **credentials)
            self._client = await cm.__aenter__()
            self._client_cm = cm
            return self._client

    async def _assume_role(self, session: Any) -> dict[str, Any]:
        assert self.assume_role_arn is not None
        try:
            async with session.client("sts", region_name=self.arn.region) as sts:
                reply = await sts.assume_role(
                    RoleArn=self.assume_role_arn,
                    RoleSessionName="tarry-runtime",
                    DurationSeconds=ROLE_SESSION_S,
                )
        except Exception as exc:
            raise DeploymentError(f"cannot assume {self.assume_role_arn}: {_explain(exc)}") from exc
        creds = reply["Credentials"]
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    async def _retire_client(self, now: float) -> None:
        """Set the current client aside (invokes may still be waiting on it) and close those
        set aside long enough ago that none can be."""
        if self._client_cm is not None:
            self._retired.append((now, self._client_cm))
            self._client_cm = self._client = None
        done = [cm for since, cm in self._retired if now - since > INVOKE_TIMEOUT_S]
        self._retired = [(since, cm) for since, cm in self._retired if cm not in done]
        for cm in done:
            await cm.__aexit__(None, None, None)

    async def close(self) -> None:
        clients = [cm for _, cm in self._retired]
        if self._client_cm is not None:
            clients.append(self._client_cm)
        self._retired, self._client_cm, self._client = [], None, None
        for cm in clients:
            await cm.__aexit__(None, None, None)

    # -- registration ------------------------------------------------------------------------

    async def resolve_alias(self) -> FunctionArn:
        """The version an alias points to now."""
        assert self.arn.kind == "alias" and self.arn.qualifier is not None
        client = await self._lambda()
        try:
            reply = await client.get_alias(FunctionName=self.arn.function, Name=self.arn.qualifier)
        except Exception as exc:
            raise _failure(
                f"cannot resolve the alias {self.arn.qualifier!r} of {self.arn.function}", exc
            ) from exc
        return self.arn.at(str(reply["FunctionVersion"]))

    # -- the protocol ------------------------------------------------------------------------

    async def discover(self) -> Discovery:
        message: DiscoverRequest = {"discover": True}
        reply = await self._invoke(dumps(message))
        if not isinstance(reply, dict) or reply.get("protocol") != PROTOCOL_VERSION:
            raise DeploymentError(
                f"{self.uri} did not answer discovery with tarry protocol {PROTOCOL_VERSION}: "
                f"{str(reply)[:300]} (is its handler a tarry.lambda_adapter.lambda_handler?)"
            )
        if "services" not in reply:
            raise DeploymentError(f"{self.uri} answered discovery without services: {reply}")
        discovery: Discovery = reply  # type: ignore[assignment]
        return discovery

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        payload = dumps(request)
        if len(payload) > self.inline_bytes and request.get("checkpoint") == "dynamodb":
            # The function reads the journal and state from the table itself.
            slim = {k: v for k, v in request.items() if k not in _INLINE}
            payload = dumps(slim)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"the invoke request is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} bytes "
                "(6 MB) Lambda takes; with the DynamoDB store a function reads a long journal "
                "from the table instead"
            )
        reply = await self._invoke(payload)
        if not isinstance(reply, dict):
            raise DeploymentError(f"{self.uri} answered {str(reply)[:300]}, not a protocol reply")
        if "outcome" not in reply:
            raise DeploymentError(f"{self.uri} answered outside the protocol: {str(reply)[:300]}")
        response: InvokeResponse = reply  # type: ignore[assignment]
        return response

    async def _send(self, payload: bytes) -> tuple[str | None, bytes]:
        """One synchronous Invoke: Lambda's ``FunctionError`` (None if the function returned)
        and the payload it answered."""
        client = await self._lambda()
        reply = await client.invoke(
            FunctionName=self.uri, InvocationType="RequestResponse", Payload=payload
        )
        body: bytes = await reply["Payload"].read()
        return reply.get("FunctionError"), body

    async def _invoke(self, payload: bytes) -> Any:
        self.invokes += 1
        try:
            function_error, body = await self._send(payload)
        except DeploymentError:
            raise
        except Exception as exc:
            raise _failure(f"invoking {self.uri} failed", exc) from exc
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            raise DeploymentError(f"{self.uri} answered non-JSON: {body[:300]!r}") from None
        if function_error:
            raise DeploymentError(_function_error(function_error, answer))
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            error = answer["error"]
            raise DeploymentError(
                f"{self.uri} refused the request ({error.get('code')}): {error.get('message')}"
            )
        return answer


_INLINE = frozenset({"journal", "completions", "state", "promises"})


def _function_error(kind: str, answer: Any) -> str:
    """What Lambda says when the function failed: the error type and message, as its runtime
    reported them (``Unhandled``: the handler raised; ``Sandbox.Timedout``: its time ran out)."""
    if isinstance(answer, dict):
        error_type = answer.get("errorType") or kind
        message = answer.get("errorMessage") or ""
        return f"{error_type}: {message}" if message else str(error_type)
    return f"{kind}: {str(answer)[:300]}"


def _failure(what: str, exc: Exception) -> DeploymentError:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    kind = DeploymentNotFound if code == "ResourceNotFoundException" else DeploymentError
    return kind(f"{what}: {_explain(exc)}")


def _explain(exc: Exception) -> str:
    """A botocore failure in words: what is missing (function, version, region, credentials)
    or what Lambda said."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "")
        message = response["Error"].get("Message", "")
        hint = {
            "ResourceNotFoundException": "the function, version or alias does not exist "
            "(in that region and account)",
            "TooManyRequestsException": "Lambda is throttling the function",
            "AccessDeniedException": "the runtime's credentials may not do this",
            "UnrecognizedClientException": "the runtime's credentials are not valid",
            "InvalidSignatureException": "the runtime's credentials are not valid",
            "RequestEntityTooLargeException": "the request is over Lambda's payload limit",
        }.get(code)
        return f"{code}: {message}" + (f" ({hint})" if hint else "")
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/...)"
    if name == "NoRegionError":
        return "no AWS region (set AWS_DEFAULT_REGION)"
    return f"{name}: {exc}"


__all__ = [
    "INLINE_JOURNAL_BYTES",
    "MAX_PAYLOAD_BYTES",
    "FunctionArn",
    "LambdaArnError",
    "LambdaDeployment",
]
