"""What a client or a handler may pass: the same limits on every store, checked in one place.

The ingress, the admin API, the runtime when it starts what a handler calls, and the SDK when a
handler calls ``ctx.object_call``, ``ctx.set`` and the like all ask these functions, so a
request one store takes is never one another store refuses (or fails on and retries).

Sizes are in UTF-8 bytes. They fit the DynamoDB store's key attributes (a partition key holds at
most 2048 bytes, a sort key 1024) however :mod:`tarry.runtime.store.dynamodb_layout` composes
them, each part escaped (``#`` and ``%`` take 3 bytes): the longest is an idempotency record's
``idem#SERVICE#KEY#HANDLER#IDEMPOTENCY_KEY``, at most 8 + 3 * (64 + 256 + 64 + 256) = 1928
bytes.

======================================  ===============  =====================================
what                                    at most          over it
======================================  ===============  =====================================
service and handler names               64 bytes         ValueError where defined; a deployment
                                                         serving one is not registered
object and workflow keys                256 bytes        400; a handler's call: TerminalError
``Idempotency-Key``                     256 bytes        400; a handler's call: TerminalError
state and durable promise names         256 bytes        400; in a handler: TerminalError
a delay (``?delay=``, sleeps, sends)    100 * 365 days   400; in a handler: TerminalError
JSON nesting (bodies, values)           128 levels       400; in a handler: TerminalError
deployment URI or ARN                   1000 bytes       400
a value stored (an input, a step's      398 KiB of JSON  413, nothing stored; in a handler: the
result, a journal entry, a state                         invocation fails with 413, and nothing
entry, a completion, a result)                           of the attempt's unstored steps is kept
======================================  ===============  =====================================

A value is at most :data:`MAX_VALUE_BYTES` on every store, not only on DynamoDB, whose item
(400 KB) must hold it beside its keys: a handler that works on SQLite works on DynamoDB.

>>> too_long("key", "k" * 300, MAX_KEY_BYTES)
'the key is 300 bytes long; at most 256 bytes (UTF-8) are allowed'
>>> too_long("key", "k", MAX_KEY_BYTES) is None
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .journal_table import ITEM_OVERHEAD, MAX_ITEM_BYTES
from .protocol import Command, Completion
from .serde import MAX_JSON_DEPTH, encoding_problem

MAX_NAME_BYTES = 64
MAX_KEY_BYTES = 256
MAX_IDEMPOTENCY_KEY_BYTES = 256
MAX_STATE_NAME_BYTES = 256  # state entries and durable promises
MAX_URI_BYTES = 1000
MAX_ID_BYTES = 128  # invocation ids (tarry's are 36 bytes): a longer one names nothing
MAX_DELAY_MS = 100 * 365 * 86_400_000  # 100 years of 365 days
# The largest value stored, as compact JSON in UTF-8: what a DynamoDB item holds beside its
# keys and bookkeeping (400 KB less 2 KB), on every store.
MAX_VALUE_BYTES = MAX_ITEM_BYTES - ITEM_OVERHEAD


def too_long(what: str, value: str, limit: int) -> str | None:
    """Why ``value`` is too long to be ``what``, or ``None``."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    return f"the {what} is {size} bytes long; at most {limit} bytes (UTF-8) are allowed"


def shown(value: str, chars: int = 80) -> str:
    """``value`` quoted for a message, cut short if it is long (a message never echoes
    kilobytes back).

    >>> shown("abc"), shown("x" * 100, 10)
    ("'abc'", "'xxxxxxxxx…' (100 characters)")
    """
    if len(value) <= chars:
        return repr(value)
    return repr(value[: chars - 1] + "…") + f" ({len(value)} characters)"


def _name(what: str, value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return f"the {what} must be a string"
    return too_long(what, value, limit)


def target_problem(
    service: str, handler: str, key: str | None = None, idempotency_key: str | None = None
) -> str | None:
    """Why an invocation of ``service``/``handler`` for ``key`` cannot be made, or ``None``.

    >>> target_problem("Counter", "add", "k" * 257)
    'the key is 257 bytes long; at most 256 bytes (UTF-8) are allowed'
    """
    return (
        too_long("service name", service, MAX_NAME_BYTES)
        or too_long("handler name", handler, MAX_NAME_BYTES)
        or (too_long("key", key, MAX_KEY_BYTES) if key is not None else None)
        or (
            too_long("idempotency key", idempotency_key, MAX_IDEMPOTENCY_KEY_BYTES)
            if idempotency_key is not None
            else None
        )
    )


def delay_problem(delay_ms: float, what: str = "delay") -> str | None:
    """Why ``delay_ms`` is not a delay tarry takes (negative, not a number, over the maximum).

    >>> delay_problem(-1)
    'a delay cannot be negative (it is -1 ms)'
    >>> delay_problem(10**20)
    'a delay of 100000000000000000000 ms is over the maximum of 100 years (3153600000000 ms)'
    """
    if not math.isfinite(delay_ms):
        return f"a {what} must be a finite number of milliseconds"
    if delay_ms < 0:
        return f"a {what} cannot be negative (it is {delay_ms:g} ms)"
    if delay_ms > MAX_DELAY_MS:
        return (
            f"a {what} of {delay_ms:.0f} ms is over the maximum of 100 years "
            f"({MAX_DELAY_MS} ms)"
        )
    return None


def value_problem(what: str, value: Any) -> str | None:
    """Why ``value`` is too large to store as ``what``, or ``None``.

    >>> value_problem("step result", {"value": "x" * 500_000})  # doctest: +ELLIPSIS
    'a step result of 500012 bytes is over the limit of 407552 bytes (JSON) a value may take...'
    >>> value_problem("step result", {"value": "x"}) is None
    True
    """
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    ))  # fmt: skip
    if size <= MAX_VALUE_BYTES:
        return None
    return (
        f"a {what} of {size} bytes is over the limit of {MAX_VALUE_BYTES} bytes (JSON) a value "
        "may take, on every store (what a DynamoDB item of 400 KB holds beside its keys); "
        "nothing was written"
    )


def journal_problem(
    commands: Iterable[Command],
    completions: Mapping[str, Completion],
    result: Completion | None = None,
) -> str | None:
    """Why new journal entries, step results or an invocation's result cannot be stored (one
    is over :data:`MAX_VALUE_BYTES`), or ``None``."""
    for command in commands:
        problem = value_problem(f"journal entry ({command.get('kind')})", command)
        if problem is not None:
            return problem
    for completion in completions.values():
        problem = value_problem("step result", completion)
        if problem is not None:
            return problem
    return value_problem("result", result) if result is not None else None


_STATE = ("get_state", "set_state", "clear_state")
_PROMISE = ("get_promise", "peek_promise", "complete_promise")
# The field of each kind of command that carries a value the handler gave.
_VALUES = {"set_state": "value", "call": "arg", "send": "arg",
           "complete_awakeable": "completion", "complete_promise": "completion"}  # fmt: skip


def command_problem(command: Mapping[str, Any]) -> str | None:
    """Why a journal command a handler made cannot be stored, or ``None``: a call's or send's
    target over the limits above, a negative or too long delay, a state or promise name too
    long, a value that is not JSON (``NaN``, nested too deeply, a type JSON does not have).

    >>> command_problem({"kind": "set_state", "name": "total", "value": float("nan")})
    'the value of state total is not JSON: NaN and Infinity are not JSON numbers'
    """
    kind = command.get("kind")
    problem: str | None = None
    if kind in ("call", "send"):
        key, idem = command.get("key"), command.get("idempotency_key")
        if not all(isinstance(v, str) for v in (command.get("service"), command.get("handler"))):
            return f"a {kind} needs a service and a handler (strings)"
        if not all(v is None or isinstance(v, str) for v in (key, idem)):
            return f"the key and idempotency key of a {kind} must be strings"
        problem = target_problem(command["service"], command["handler"], key, idem) or _name(
            "invocation id", command.get("invocation_id"), MAX_ID_BYTES
        )
        delay = command.get("delay_ms")
        if problem is None and delay is not None:
            if not isinstance(delay, int | float) or isinstance(delay, bool):
                return "a send's delay must be a number of milliseconds"
            problem = delay_problem(delay, "send's delay")
    elif kind in ("attach", "cancel_invocation"):
        problem = _name("invocation id", command.get("invocation_id"), MAX_ID_BYTES)
    elif kind == "complete_awakeable":
        problem = _name("awakeable id", command.get("awakeable_id"), 2 * MAX_ID_BYTES)
    elif kind in _STATE:
        problem = _name("state name", command.get("name"), MAX_STATE_NAME_BYTES)
    elif kind in _PROMISE:
        problem = _name("promise name", command.get("name"), MAX_STATE_NAME_BYTES)
    if problem is not None:
        return problem
    field = _VALUES.get(str(kind))
    if field is not None and field in command:
        problem = encoding_problem(command[field])
        if problem is not None:
            what = {"value": f"value of state {command.get('name')}", "arg": f"{kind}'s argument"}
            return f"the {what.get(field, 'completion')} is not JSON: {problem}"
    return None


__all__ = [
    "MAX_DELAY_MS",
    "MAX_IDEMPOTENCY_KEY_BYTES",
    "MAX_ID_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_KEY_BYTES",
    "MAX_NAME_BYTES",
    "MAX_STATE_NAME_BYTES",
    "MAX_URI_BYTES",
    "MAX_VALUE_BYTES",
    "command_problem",
    "delay_problem",
    "journal_problem",
    "shown",
    "target_problem",
    "too_long",
    "value_problem",
]
