"""The wire protocol between the runtime and a deployment that serves handlers.

Versioned JSON, request/response, so it works over plain HTTP, through Lambda Invoke and
in-process alike.

Discovery (``GET /discover``; through Lambda, the payload :class:`DiscoverRequest`) answers
:class:`Discovery`. An invoke (``POST /invoke/{service}/{handler}``, or the payload itself) carries
an :class:`InvokeRequest` and answers an :class:`InvokeResponse`. A request the deployment cannot
serve is answered with an :class:`ErrorReply` (over HTTP, with its code as the status).

The journal is a list of *commands*, one per context call, in the order the handler made them;
entry 0 is always the ``input``. Commands that finish later (a run, a sleep, a call) get a
*completion*, keyed by the command's index. Commands are immutable once stored; a completion is
written once.

Checkpointing: a ``ctx.run`` result must be durable before the code after it runs. With
``checkpoint == "channel"`` the runtime passed a :class:`CheckpointChannel` in-process; with
``"http"`` the SDK posts :class:`CheckpointAppend` to ``checkpoint_url`` with the bearer
``checkpoint_token`` (204: durable; 409: this attempt was superseded); with ``"dynamodb"`` the
deployment writes them itself, as epoch-fenced transactions on the DynamoDB table ``table``
(:mod:`tarry.journal_table` has the items and the condition). Either way the SDK appends and
carries on in the same attempt, and the response says how much it made durable so
(``checkpointed``). With ``"none"``, the SDK ends the attempt with a ``flush`` outcome after a run
completes and the runtime invokes it again at once (one round trip, and one replay, per step).

An at-most-once run (``at_most_once`` in its command) is made durable *before* its body starts,
through the channel; with none, the attempt ends with ``flush`` and the command names the next
attempt's epoch (``runs_in``) as the one that runs the body. An attempt that finds such a command
without a completion, and is not the one it names, completes it with a failure marked
``interrupted`` instead of running it.

With ``"dynamodb"`` the journal, completions, state and promises may be left out of the request
(a long journal would not fit a Lambda payload): the deployment then reads the first
``journal_length`` entries of the journal, and the object's state, from ``table`` itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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
    # An at-most-once run interrupted before its result was stored: the SDK raises
    # StepInterrupted for it, not a plain TerminalError.
    interrupted: NotRequired[bool]


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
    # run: the step's body runs at most once. The command is stored before the body starts;
    # an attempt that finds it stored without a completion completes it as interrupted, unless
    # it is the attempt ``runs_in`` names: the command was stored by the end of the attempt
    # before (no checkpoint channel), and the body has not started yet. Absent: at least once.
    at_most_once: bool
    runs_in: int  # run (at most once): the epoch of the attempt that may run the body


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


class DiscoverRequest(TypedDict):
    """Discovery as a message (a Lambda Invoke payload); over HTTP it is ``GET /discover``."""

    discover: Literal[True]


CheckpointMode = Literal["none", "channel", "http", "dynamodb"]


class InvokeRequest(TypedDict):
    protocol: int
    invocation_id: str
    epoch: int
    service: str
    handler: str
    key: str | None
    headers: dict[str, str]
    # The journal so far, its completions and the eager state of the object or workflow key.
    # Always present, except with checkpoint "dynamodb", where absent means: read them from
    # ``table`` (the first ``journal_length`` entries).
    journal: NotRequired[list[Command]]
    completions: NotRequired[dict[str, Completion]]  # str(index) -> completion
    state: NotRequired[dict[str, Any] | None]  # None: not an object or workflow handler
    promises: NotRequired[dict[str, Completion]]  # a workflow key's completed durable promises
    journal_length: NotRequired[int]  # entries stored when the attempt began
    retry_count: int  # failed attempts since the journal last grew
    checkpoint: CheckpointMode
    checkpoint_url: NotRequired[str]  # "http": where to post appends ...
    checkpoint_token: NotRequired[str]  # ... with this bearer token, valid for this attempt only
    table: NotRequired[str]  # "dynamodb": the table that holds the journal
    # The invocation's secret, the same on every attempt: keys the ids it hands out (its
    # awakeables', its calls' and sends'). Absent from a runtime that predates it (then no
    # awakeable can be made).
    secret: NotRequired[str]


# The prefix of a secret given late, at the next attempt of an invocation stored before secrets
# existed: what it drew from ``ctx.random`` before was seeded by its id, and replays must draw
# the same again.
LATE_SECRET_PREFIX = "late-"


class CheckpointAppend(TypedDict):
    """The body of an HTTP checkpoint: new commands and run completions, in journal order."""

    commands: list[Command]
    completions: dict[str, Completion]


class Outcome(TypedDict, total=False):
    # "flush": store what the attempt made and invoke it again at once (a run finished with no
    # channel to append it through, or the deployment's time is running out).
    kind: Literal["completed", "failed", "suspended", "flush", "retry"]
    value: Any  # completed
    failure: Failure  # failed
    waiting_on: list[int]  # suspended
    error: str  # retry
    delay_ms: int | None  # retry: the delay the failing step's retry policy asks for
    non_deterministic: bool  # retry caused by a journal mismatch


class Checkpointed(TypedDict):
    """How much an attempt made durable itself, through its checkpoint channel."""

    commands: int  # the response's commands continue the journal after these
    completions: int


class InvokeResponse(TypedDict):
    protocol: int
    commands: list[Command]  # new commands, continuing the journal
    completions: dict[str, Completion]  # new completions of this attempt's runs
    outcome: Outcome
    checkpointed: NotRequired[Checkpointed]  # with a checkpoint channel


class ErrorReply(TypedDict):
    """The answer to a request the deployment cannot serve: not a protocol message it knows,
    a protocol version it does not speak, a handler it does not have, a journal it could not
    read. ``code`` is HTTP-like: 4xx the request is wrong, 5xx the deployment failed."""

    protocol: int
    error: Failure


def error_reply(code: int, message: str) -> ErrorReply:
    return {"protocol": PROTOCOL_VERSION, "error": {"code": code, "message": message}}


# An awakeable's id is a capability: whoever holds it can complete the awakeable (the link in
# an activation email). So it carries a MAC, keyed with the invocation's ``secret`` (random,
# 256 bits, made when the invocation is created and stored with it), over the invocation id
# and the journal index. It stays deterministic, so a retried attempt (one that sent the link
# in a ``ctx.run`` and crashed before the run's result was stored) hands out the same id; and
# it is verifiable by the store before the entry that made it is stored (a completion may come
# first). Without the secret nobody can make one, not even knowing the invocation id.
#
# ``awk_1`` ids (before the MAC) were the invocation id and index alone: anyone holding the
# invocation id could make one. They are refused: they do not parse as an id of this format.
_AWAKEABLE_PREFIX = "awk_2"
_AWAKEABLE_TAG_BYTES = 16  # 128 bits of MAC
_AWAKEABLE_LABEL = b"tarry awakeable id\x00"  # this secret keys other ids too (child calls)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(secret: str, label: bytes, message: str) -> bytes:
    return hmac.new(secret.encode(), label + message.encode(), hashlib.sha256).digest()


def awakeable_id(invocation_id: str, index: int, secret: str) -> str:
    """The id of the awakeable created by journal entry ``index`` of ``invocation_id``, whose
    invocation's secret is ``secret``: opaque to users, the same on every attempt, unguessable
    without the secret.

    >>> awk = awakeable_id("inv_abc", 7, "s3cret")
    >>> awk == awakeable_id("inv_abc", 7, "s3cret"), parse_awakeable_id(awk)
    (True, ('inv_abc', 7))
    >>> awk == awakeable_id("inv_abc", 7, "other"), authentic_awakeable_id(awk, "s3cret")
    (False, True)
    """
    raw = f"{invocation_id}:{index}"
    tag = _mac(secret, _AWAKEABLE_LABEL, raw)[:_AWAKEABLE_TAG_BYTES]
    return _AWAKEABLE_PREFIX + _b64(tag + raw.encode())


def parse_awakeable_id(awakeable: str) -> tuple[str, int]:
    """The invocation and journal entry an awakeable id claims to name; ``ValueError`` if it is
    not an id of this format. It says nothing of whether the id is authentic: see
    :func:`authentic_awakeable_id`."""
    error = ValueError(f"{awakeable!r} is not an awakeable id")
    if not awakeable.startswith(_AWAKEABLE_PREFIX):
        raise error
    body = awakeable.removeprefix(_AWAKEABLE_PREFIX)
    try:
        decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        invocation_id, _, index = decoded[_AWAKEABLE_TAG_BYTES:].decode().rpartition(":")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise error from None
    if not invocation_id or not index.isdigit() or not index.isascii():
        raise error
    return invocation_id, int(index)


def authentic_awakeable_id(awakeable: str, secret: str | None) -> bool:
    """Whether ``awakeable`` is exactly the id its invocation, whose secret is ``secret``,
    hands out for the entry it names (compared in constant time; ``secret`` ``None``: an
    invocation that has none hands out no ids)."""
    try:
        invocation_id, index = parse_awakeable_id(awakeable)
    except ValueError:
        return False
    if secret is None:
        return False
    expected = awakeable_id(invocation_id, index, secret)
    return hmac.compare_digest(awakeable.encode(), expected.encode())


class CheckpointDeferred(Exception):
    """Raised by :meth:`CheckpointChannel.append` for a batch it leaves to the runtime (commands
    whose effects reach beyond the invocation, such as a call): nothing was stored, and the SDK
    ends the attempt with a ``flush`` outcome that carries the batch."""


class CheckpointRejected(Exception):
    """The store did not take an append: the attempt was superseded (or is over)."""


class CheckpointChannel(Protocol):
    """Makes commands and run completions durable in the middle of an attempt.

    ``append`` returns once they are stored; raises :class:`CheckpointDeferred` to leave them to
    the runtime, a ``TerminalError`` for a value the store cannot keep (nothing is stored), or
    anything else if they may not have been stored (the attempt was superseded, the store
    failed), in which case the SDK ends the attempt and drops what was not known durable.
    """

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None: ...


__all__ = [
    "CANCELLED",
    "COMPLETABLE",
    "PROTOCOL_VERSION",
    "CheckpointAppend",
    "CheckpointChannel",
    "CheckpointDeferred",
    "CheckpointMode",
    "CheckpointRejected",
    "Checkpointed",
    "Command",
    "CommandKind",
    "Completion",
    "DiscoverRequest",
    "Discovery",
    "ErrorReply",
    "Failure",
    "HandlerInfo",
    "InvokeRequest",
    "InvokeResponse",
    "Outcome",
    "ServiceInfo",
    "authentic_awakeable_id",
    "awakeable_id",
    "error_reply",
    "parse_awakeable_id",
]
