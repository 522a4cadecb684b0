"""Lambda entry points: user handlers as a Lambda function, invoked with the tarry protocol.

>>> handler = lambda_handler([greeter])  # doctest: +SKIP

The Invoke payload is a protocol message and so is the answer: ``{"discover": true}`` answers the
:class:`~tarry.protocol.Discovery`, an :class:`~tarry.protocol.InvokeRequest` an
:class:`~tarry.protocol.InvokeResponse`, anything else an :class:`~tarry.protocol.ErrorReply`.

One invocation of the function per suspension, not per step. When the runtime's store is
DynamoDB, the request names the table (checkpoint ``dynamodb``) and the function appends each
``ctx.run`` result there itself, one transaction fenced by the attempt's epoch, and carries on;
it returns only when the handler must wait (a sleep, a call, an awakeable), when it is done, or
when its time is running out: ``margin`` before the function's timeout it stops, returns what it
made durable, and the runtime invokes it again at once, so a handler may run for longer than
Lambda's 15 minutes. A long journal is not sent in the request: the function reads it from the
table. Without DynamoDB the function returns after each step (checkpoint ``none``).
An at-most-once step (``ctx.run(..., at_most_once=True)``) is appended before its body starts,
fenced like every append, so of two instances of one attempt only one runs it; without
DynamoDB the function returns to have it stored, and the next invoke runs the body.

A warm function keeps its event loop and its DynamoDB client from one invoke to the next. It
prints one line per attempt (which lands in its CloudWatch log): the invocation, the attempt,
how it ended and what it stored; ``log=False`` turns that off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from tarry.clock import Clock, SystemClock
from tarry.deadline import Deadline
from tarry.endpoint import Endpoint, ProtocolError, check_request
from tarry.protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    CheckpointDeferred,
    InvokeRequest,
    InvokeResponse,
    error_reply,
)
from tarry.serde import dumps
from tarry.service import ServiceDefinition

from ._dynamodb import JournalTable, JournalUnavailable

# What Lambda takes and returns through a synchronous Invoke: 6 MB each way
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class LambdaHandler:
    """A Lambda handler serving services over the protocol; made by :func:`lambda_handler`."""

    def __init__(
        self,
        services: Iterable[ServiceDefinition],
        clock: Clock | None = None,
        margin: timedelta = timedelta(seconds=1),
        journal_table: JournalTable | None = None,
        log: bool = True,
    ) -> None:
        self.endpoint = Endpoint(services, clock)
        self.margin_ms = int(margin.total_seconds() * 1000)
        self.log = log
        self.journal_table = journal_table or JournalTable(self.endpoint.clock)
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.handle(event, context))

    def close(self) -> None:
        """Close the event loop (a Lambda process never needs to; tests do)."""
        if self._loop is not None:
            self._loop.close()

    async def handle(self, event: Any, context: Any) -> dict[str, Any]:
        if isinstance(event, dict) and event.get("discover") is True:
            return dict(self.endpoint.discovery())
        if not isinstance(event, dict) or "invocation_id" not in event:
            return dict(
                error_reply(
                    400,
                    'not a tarry protocol message: expected {"discover": true} or an invoke '
                    f"request (protocol {PROTOCOL_VERSION})",
                )
            )
        try:
            table = self.journal_table
            began, writes, items = time.monotonic(), table.writes, table.items
            request, channel = await self._prepare(event)
            response = await self.endpoint.invoke(request, channel, self._deadline(context))
            response = await self._fit(response, channel)
            if self.log:
                writes, items = table.writes - writes, table.items - items
                _log_attempt(request, response, time.monotonic() - began, writes, items)
            return dict(response)
        except ProtocolError as exc:
            return dict(error_reply(exc.status_code, str(exc)))
        except JournalUnavailable as exc:
            return dict(error_reply(503, str(exc)))
        except (KeyError, TypeError, ValueError) as exc:
            return dict(error_reply(400, f"bad invoke request: {exc!r}"))

    async def _prepare(
        self, event: dict[str, Any]
    ) -> tuple[InvokeRequest, CheckpointChannel | None]:
        request: InvokeRequest = event  # type: ignore[assignment]
        if request.get("checkpoint") != "dynamodb":
            return request, None  # Endpoint.invoke checks the rest
        if "journal" not in request:
            request = await self.journal_table.load(request)
        check_request(request)  # before the channel reads what it needs from it
        return request, self.journal_table.channel(request)

    def _deadline(self, context: Any) -> Deadline | None:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return Deadline(remaining, self.margin_ms) if callable(remaining) else None

    async def _fit(
        self, response: InvokeResponse, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        """``response``, made small enough for Lambda to return: if it is not, its commands are
        appended through the channel first; if that cannot be done, the attempt fails, naming
        the limit (returning it would fail the same way every time)."""
        size = len(dumps(response))
        if size <= MAX_PAYLOAD_BYTES:
            return response
        done = response.get("checkpointed") or {"commands": 0, "completions": 0}
        smaller: InvokeResponse = {**response, "commands": [], "completions": {}}
        if channel is not None and response["outcome"].get("kind") != "retry":
            try:
                await channel.append(response["commands"], response["completions"])
            except CheckpointDeferred:
                pass
            except Exception as exc:  # may or may not be stored: the next attempt will know
                smaller["outcome"] = {"kind": "retry", "error": f"checkpoint failed: {exc}"}
                return smaller
            else:
                smaller["checkpointed"] = {
                    "commands": done["commands"] + len(response["commands"]),
                    "completions": done["completions"] + len(response["completions"]),
                }
                return smaller
        message = (
            f"the attempt's result is {size} bytes, over the {MAX_PAYLOAD_BYTES} bytes (6 MB) a "
            "Lambda function may return"
        )
        smaller["outcome"] = {"kind": "failed", "failure": {"code": 413, "message": message}}
        return smaller


def _log_attempt(
    request: InvokeRequest, response: InvokeResponse, seconds: float, writes: int, items: int
) -> None:
    outcome = response["outcome"]
    stored = response.get("checkpointed", {}).get("commands", 0)
    detail = outcome.get("error") or outcome.get("failure", {}).get("message", "")
    print(
        f"tarry {request['invocation_id']} attempt {request['epoch']} "
        f"{request['service']}/{request['handler']}: {outcome.get('kind')} after {seconds:.3f} s, "
        f"{stored} entries stored in {writes} DynamoDB writes ({items} items), "
        f"{len(response['commands'])} returned"
        + (f": {str(detail)[:200]}" if detail else ""),
        flush=True,
    )


def lambda_handler(
    services: Iterable[ServiceDefinition],
    *,
    clock: Clock | None = None,
    margin: timedelta = timedelta(seconds=1),
    log: bool = True,
) -> LambdaHandler:
    """A Lambda handler function serving ``services`` over the tarry protocol. ``margin``: how
    long before the function's timeout an attempt stops and returns what it made durable (it
    starts no step it cannot expect to finish by then, judged by the longest step it ran).
    ``log``: print one line per attempt."""
    return LambdaHandler(services, clock or SystemClock(), margin, log=log)


__all__ = ["MAX_PAYLOAD_BYTES", "LambdaHandler", "lambda_handler"]
