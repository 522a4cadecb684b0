"""The wire protocol between the runtime and a deployment that serves handlers.

Versioned JSON, request/response, so it works over plain HTTP, through Lambda Invoke and
in-process alike.

Discovery (``GET /discover``) answers :class:`Discovery`. An invoke (``POST /invoke/{service}/
{handler}``) carries an :class:`InvokeRequest` and answers an :class:`InvokeResponse`.

The journal is a list of *commands*, one per context call, in the order the handler made them;
entry 0 is always the ``input``. Commands that finish later (a run, a sleep, a call) get a
*completion*, keyed by the command's index. Commands are immutable once stored; a completion is
written once.

Checkpointing: a ``ctx.run`` result must be durable before the code after it runs. With
``checkpoint == "channel"`` the runtime passed a :class:`CheckpointChannel` in-process; with
``"http"`` the SDK posts :class:`CheckpointAppend` to ``checkpoint_url`` with the bearer
``checkpoint_token`` (204: durable; 409: this attempt was superseded). Either way the SDK appends
and carries on in the same attempt. With ``"none"``, the SDK ends the attempt with a ``flush``
outcome after a run completes and the runtime invokes it again at once (one round trip, and one
replay, per step).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal, NotRequired, Protocol, TypedDict

PROTOCOL_VERSION = 1

CommandKind = Literal[
    "input",
    "run",
    "sleep",
    "call",
    "send",
    "get_state",
    "set_state",
    "clear_state",
    "clear_all_state",
    "state_keys",
    "select",
    "awakeable",
    "complete_awakeable",
    "get_promise",
    "peek_promise",
    "complete_promise",
    "attach",
    "cancel_invocation",
    "output",
]

# Commands whose result arrives later, as a completion.
COMPLETABLE: frozenset[str] = frozenset(
    {"run", "sleep", "call", "awakeable", "complete_awakeable", "get_promise", "complete_promise",
     "attach"}
)  # fmt: skip

# The failure a cancelled invocation sees at the await it is suspended on (or its next one).
CANCELLED: Failure = {"code": 409, "message": "cancelled"}


class Failure(TypedDict):
    code: int
    message: str


class Completion(TypedDict, total=False):
    value: Any
    failure: Failure


class Command(TypedDict, total=False):
    kind: str  # one of CommandKind
    name: str
    value: Any  # input value, state value, get_state result, output value, select choice
    failure: Failure  # output failure
    wake_at: int  # sleep: absolute wake time, ms since the epoch
    service: str  # call / send target
    handler: str
    key: str | None
    arg: Any
    invocation_id: str  # call / send: the id of the invocation it starts
    delay_ms: int  # send: start no earlier than this much after the command was stored
    headers: dict[str, str]
    idempotency_key: str | None
    awakeable_id: str  # complete_awakeable: the awakeable it completes
    completion: Completion  # complete_awakeable / complete_promise: the result it delivers;
    #                         peek_promise: the promise's result when peeked (absent: not yet)


class HandlerInfo(TypedDict):
    name: str
    kind: Literal["exclusive", "shared", "workflow"]
    input_schema: dict[str, Any] | None  # None: the handler takes no input
    output_schema: dict[str, Any] | None
    void_output: bool


class ServiceInfo(TypedDict):
    name: str
    kind: Literal["service", "object", "workflow"]
    handlers: list[HandlerInfo]


class Discovery(TypedDict):
    protocol: int
    services: list[ServiceInfo]


class InvokeRequest(TypedDict):
    protocol: int
    invocation_id: str
    epoch: int
    service: str
    handler: str
    key: str | None
    headers: dict[str, str]
    journal: list[Command]
    completions: dict[str, Completion]  # str(index) -> completion (JSON object keys)
    state: dict[str, Any] | None  # eager state of the object or workflow key
    promises: NotRequired[dict[str, Completion]]  # a workflow key's completed durable promises
    retry_count: int  # failed attempts since the journal last grew
    checkpoint: Literal["none", "channel", "http"]
    checkpoint_url: NotRequired[str]  # "http": where to post appends ...
    checkpoint_token: NotRequired[str]  # ... with this bearer token, valid for this attempt only


class CheckpointAppend(TypedDict):
    """The body of an HTTP checkpoint: new commands and run completions, in journal order."""

    commands: list[Command]
    completions: dict[str, Completion]


class Outcome(TypedDict, total=False):
    kind: Literal["completed", "failed", "suspended", "flush", "retry"]
    value: Any  # completed
    failure: Failure  # failed
    waiting_on: list[int]  # suspended
    error: str  # retry
    delay_ms: int | None  # retry: the delay the failing step's retry policy asks for
    non_deterministic: bool  # retry caused by a journal mismatch


class InvokeResponse(TypedDict):
    protocol: int
    commands: list[Command]  # new commands, continuing the journal
    completions: dict[str, Completion]  # new completions of this attempt's runs
    outcome: Outcome


_AWAKEABLE_PREFIX = "awk_1"


def awakeable_id(invocation_id: str, index: int) -> str:
    """The id of the awakeable created by journal entry ``index`` of ``invocation_id``: opaque to
    users, derived so a replay hands out the same id.

    >>> parse_awakeable_id(awakeable_id("inv_abc", 7))
    ('inv_abc', 7)
    """
    raw = f"{invocation_id}:{index}".encode()
    return _AWAKEABLE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_awakeable_id(awakeable: str) -> tuple[str, int]:
    """The invocation and journal entry an awakeable id names; ``ValueError`` if it names none."""
    if not awakeable.startswith(_AWAKEABLE_PREFIX):
        raise ValueError(f"{awakeable!r} is not an awakeable id")
    body = awakeable.removeprefix(_AWAKEABLE_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        invocation_id, _, index = raw.rpartition(":")
        if not invocation_id or not index.isdigit():
            raise ValueError
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError(f"{awakeable!r} is not an awakeable id") from None
    return invocation_id, int(index)


class CheckpointChannel(Protocol):
    """Makes commands and run completions durable in the middle of an attempt.

    ``append`` returns once they are stored, or raises if this attempt was superseded (its epoch
    is stale), in which case the SDK stops the attempt.
    """

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None: ...


__all__ = [
    "CANCELLED",
    "COMPLETABLE",
    "PROTOCOL_VERSION",
    "CheckpointAppend",
    "CheckpointChannel",
    "Command",
    "CommandKind",
    "Completion",
    "Discovery",
    "Failure",
    "HandlerInfo",
    "InvokeRequest",
    "InvokeResponse",
    "Outcome",
    "ServiceInfo",
    "awakeable_id",
    "parse_awakeable_id",
]
