"""A Lambda function in a thread of the test process: the runtime's real ``LambdaDeployment``
(payload limits, inline or by-reference journals, error mapping) over the real function side
(``tarry.lambda_adapter``), with only the Invoke transport replaced. The function reaches
DynamoDB Local through the same environment as the runtime, as a deployed one would through
its own. The acceptance tests run the same code on MiniStack's real Invoke API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from datetime import timedelta

from botocore.exceptions import ClientError

from tarry.lambda_adapter import LambdaHandler, lambda_handler
from tarry.runtime.lambda_deployment import FunctionArn, LambdaDeployment
from tarry.service import ServiceDefinition

ACCOUNT = "000000000000"


class Context:
    """The part of Lambda's context object the adapter reads: the time left before the
    function's timeout, counted from the start of the invoke."""

    def __init__(self, timeout_ms: int) -> None:
        self._end = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


class InThreadLambda(LambdaDeployment):
    """Version ``version`` of function ``name``, served by ``services`` in worker threads: one
    sandbox (a handler with its own event loop) per concurrent invoke, kept warm afterwards, as
    Lambda does. ``crash``: raised in the sandbox, reported as Lambda reports an unhandled
    error; ``timeout_ms``: the function's timeout."""

    def __init__(
        self,
        services: Iterable[ServiceDefinition],
        name: str = "fn",
        version: int = 1,
        timeout_ms: int = 60_000,
        margin: timedelta = timedelta(seconds=1),
    ) -> None:
        arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:{version}"
        super().__init__(FunctionArn.parse(arn))
        self._services = list(services)
        self._margin = margin
        self._idle: list[LambdaHandler] = []
        self._sandboxes: list[LambdaHandler] = []
        self.timeout_ms = timeout_ms
        self.payloads: list[int] = []  # the size of each invoke request
        self.crash: BaseException | None = None
        self.throttle = 0  # how many of the next invokes Lambda throttles

    async def _send(self, payload: bytes) -> tuple[str | None, bytes]:
        if self.throttle > 0:  # as Lambda does at its concurrency limit: the call is refused
            self.throttle -= 1
            error = {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}
            raise ClientError({"Error": error}, "Invoke")
        self.payloads.append(len(payload))
        event = json.loads(payload)
        if self._idle:
            sandbox = self._idle.pop()
        else:
            sandbox = lambda_handler(self._services, margin=self._margin)
            self._sandboxes.append(sandbox)
        try:
            if self.crash is not None:
                raise self.crash
            answer = await asyncio.to_thread(sandbox, event, Context(self.timeout_ms))
        except Exception as exc:
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return "Unhandled", json.dumps(error).encode()
        finally:
            self._idle.append(sandbox)
        return None, json.dumps(answer).encode()

    @property
    def writes(self) -> int:
        """Transactions the function's sandboxes wrote to the table themselves."""
        return sum(s.journal_table.writes for s in self._sandboxes)

    async def close(self) -> None:
        await super().close()
        for sandbox in self._sandboxes:
            sandbox.close()


__all__ = ["Context", "InThreadLambda"]
