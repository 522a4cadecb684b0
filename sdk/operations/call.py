"""Calls (await the result) and sends (fire and forget, optionally delayed) to other handlers.

A call or send the runtime could not start — a key or idempotency key over the limits of
:mod:`tarry.limits`, an argument that is not JSON, a negative or too long delay — raises
:class:`~tarry.TerminalError` (400) at the call, before anything is journaled.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tarry.errors import TerminalError
from tarry.protocol import Command
from tarry.serde import to_json

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


_CHILD_LABEL = b"tarry child invocation id\x00"


def child_invocation_id(parent: str, index: int, secret: str | None) -> str:
    """The id of the invocation started by journal entry ``index`` of ``parent``, whose secret
    is ``secret``: the same on every attempt, so a retried attempt names the same invocation,
    and not derivable from ``parent``'s id (which its caller holds, and may share): an id lets
    its holder read that invocation's result (``/restate/invocation/{id}/output``). Without a
    secret (a runtime older than this SDK) it is derived from the parent's id, as it was.

    >>> child_invocation_id("inv_a", 3, "s") == child_invocation_id("inv_a", 3, "s")
    True
    >>> child_invocation_id("inv_a", 3, "s") == child_invocation_id("inv_a", 3, "t")
    False
    """
    if not secret:
        return "inv_" + hashlib.sha256(f"{parent}/{index}".encode()).hexdigest()[:32]
    mac = hmac.new(secret.encode(), _CHILD_LABEL + f"{parent}/{index}".encode(), hashlib.sha256)
    return "inv_" + mac.hexdigest()[:32]


@dataclass(frozen=True)
class SendHandle:
    """What a send returns: the id of the invocation it started."""

    invocation_id: str


def _command(
    attempt: Attempt,
    kind: str,
    service: str,
    handler: str,
    key: str | None,
    arg: Any,
    idempotency_key: str | None,
    headers: dict[str, str] | None,
    delay: timedelta | None = None,
) -> tuple[int, Command]:
    command: Command = {
        "kind": kind,
        "name": f"{service}/{handler}",
        "service": service,
        "handler": handler,
        "key": key,
        "arg": to_json(arg),
        "headers": headers or {},
        "idempotency_key": idempotency_key,
    }
    if delay is not None and not isinstance(delay, timedelta):
        raise TerminalError(
            f"a send's delay is a timedelta, not {type(delay).__name__}", status_code=400
        )
    if delay:
        command["delay_ms"] = int(delay.total_seconds() * 1000)  # checked when recorded
    index = attempt.journal_position()
    request = attempt.request
    command["invocation_id"] = child_invocation_id(
        request["invocation_id"], index, request.get("secret")
    )  # on replay, the one recorded
    return attempt.record(command)


def call(
    attempt: Attempt,
    service: str,
    handler: str,
    key: str | None,
    arg: Any,
    result_type: Any,
    idempotency_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> DurableFuture[Any]:
    index, _ = _command(attempt, "call", service, handler, key, arg, idempotency_key, headers)
    return attempt.future(index, result_type)


def send(
    attempt: Attempt,
    service: str,
    handler: str,
    key: str | None,
    arg: Any,
    delay: timedelta | None = None,
    idempotency_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> SendHandle:
    _, command = _command(
        attempt, "send", service, handler, key, arg, idempotency_key, headers, delay
    )
    return SendHandle(command["invocation_id"])


def attach(attempt: Attempt, invocation_id: str, result_type: Any = Any) -> DurableFuture[Any]:
    """Await the result of an invocation by id (one started elsewhere, or by a send)."""
    index, _ = attempt.record(
        {"kind": "attach", "name": invocation_id, "invocation_id": invocation_id}
    )
    return attempt.future(index, result_type)


def cancel(attempt: Attempt, invocation_id: str) -> None:
    """Ask the runtime to cancel an invocation (see :meth:`tarry.Context.cancel_invocation`)."""
    attempt.record({"kind": "cancel_invocation", "name": invocation_id,
                    "invocation_id": invocation_id})  # fmt: skip
