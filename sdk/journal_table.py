"""An invocation's journal in DynamoDB, as the runtime's store and a deployment that writes its
own steps both read and write it.

The runtime's DynamoDB store (``tarry.runtime.store.dynamodb_layout``) owns the table's layout;
the part of it a deployment touches is defined here, in the SDK, so that a Lambda function can
load its journal and append its steps without importing the runtime. Nothing here talks to
DynamoDB: it builds keys, items and transactions (``tarry.lambda_adapter`` sends them).

The items a deployment touches::

    item                 pk                   sk
    invocation           inv#ID               inv           (read; journal_length moved on)
    journal entry        inv#ID               j#0000000007
    completion           inv#ID               c#0000000007
    state entry          obj#SERVICE#KEY      state#NAME
    durable promise      obj#SERVICE#KEY      promise#NAME  (read: completed ones)

A deployment appends only *local* commands (:data:`LOCAL_COMMANDS`): those whose consequences in
the store stay within the invocation's own items and its object's state, which its exclusive
handler holds. Anything else (a call, a sleep's timer, a promise) needs the runtime; the SDK then
ends the attempt and hands the batch over (``CheckpointDeferred``).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import TerminalError
from .protocol import Command, Completion

PK = "pk"
SK = "sk"
VERSION = "ver"

# DynamoDB's limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# ServiceQuotas.html): an item, a transaction's actions, a transaction's total size.
MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACTION_ACTIONS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
# Room kept beside a value in its item for the keys and bookkeeping attributes.
ITEM_OVERHEAD = 2048

Key = tuple[str, str]
Attrs = dict[str, Any]  # an item with plain values: str, int, bool (None: absent)
Wire = dict[str, dict[str, Any]]  # an item as the DynamoDB API speaks it

_WIDTH = 10  # digits of a journal index in a sort key

# Commands a deployment may store itself: they change nothing but the journal and, for
# set/clear state, the object's own state entries.
LOCAL_COMMANDS: frozenset[str] = frozenset(
    {"run", "get_state", "set_state", "clear_state", "clear_all_state", "state_keys", "select",
     "awakeable", "peek_promise", "output"}
)  # fmt: skip


class NotLocal(Exception):
    """The commands cannot be appended by a deployment: one is the runtime's to store, or one
    command's effects alone exceed a transaction."""


def part(value: str) -> str:
    """One part of a composite key, with ``%`` and ``#`` escaped.

    >>> part("a#b%c")
    'a%23b%25c'
    """
    return value.replace("%", "%25").replace("#", "%23")


def unpart(value: str) -> str:
    """The inverse of :func:`part`.

    >>> unpart(part("a#b%23"))
    'a#b%23'
    """
    return value.replace("%23", "#").replace("%25", "%")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- keys ------------------------------------------------------------------------------------


def invocation_pk(invocation_id: str) -> str:
    return f"inv#{part(invocation_id)}"


def invocation_key(invocation_id: str) -> Key:
    """
    >>> invocation_key("inv_1")
    ('inv#inv_1', 'inv')
    """
    return invocation_pk(invocation_id), "inv"


def journal_key(invocation_id: str, index: int) -> Key:
    """
    >>> journal_key("inv_1", 7)
    ('inv#inv_1', 'j#0000000007')
    """
    return invocation_pk(invocation_id), f"j#{index:0{_WIDTH}d}"


def completion_key(invocation_id: str, index: int) -> Key:
    return invocation_pk(invocation_id), f"c#{index:0{_WIDTH}d}"


def object_pk(service: str, key: str) -> str:
    return f"obj#{part(service)}#{part(key)}"


def state_key(service: str, key: str, name: str) -> Key:
    """
    >>> state_key("Counter", "a#1", "count")
    ('obj#Counter#a%231', 'state#count')
    """
    return object_pk(service, key), f"state#{name}"


PROMISE_PREFIX = "promise#"
PROMISE_END = "promise#\U0010ffff"  # sorts after every promise
STATE_PREFIX = "state#"
STATE_END = "state#\U0010ffff"  # sorts after every state entry


# -- wire form -------------------------------------------------------------------------------


def to_wire(attrs: Attrs) -> Wire:
    """An item in DynamoDB's typed JSON: str → S, bool → BOOL, int → N; None is left out.

    >>> to_wire({"pk": "a", "n": 3, "b": True, "gone": None})
    {'pk': {'S': 'a'}, 'n': {'N': '3'}, 'b': {'BOOL': True}}
    """
    out: Wire = {}
    for name, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = {"BOOL": value}
        elif isinstance(value, int):
            out[name] = {"N": str(value)}
        elif isinstance(value, str):
            out[name] = {"S": value}
        else:
            raise TypeError(f"attribute {name!r}: cannot store {type(value).__name__}")
    return out


def from_wire(item: Wire) -> Attrs:
    """The inverse of :func:`to_wire`."""
    out: Attrs = {}
    for name, typed in item.items():
        ((tag, value),) = typed.items()
        if tag == "S":
            out[name] = value
        elif tag == "N":
            out[name] = int(value)
        elif tag == "BOOL":
            out[name] = bool(value)
        else:
            raise TypeError(f"attribute {name!r}: unexpected DynamoDB type {tag}")
    return out


def item_size(attrs: Attrs) -> int:
    """An upper bound of the size DynamoDB counts against its item limit: the UTF-8 bytes of
    every attribute name and value (a number counts at most its digits)."""
    size = 0
    for name, value in attrs.items():
        if value is None:
            continue
        size += len(name.encode())
        if isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, bool):
            size += 1
        else:
            size += len(str(value)) // 2 + 2
    return size


def too_large(what: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored in an item of its own, or ``None`` if it can."""
    size = len(dumps(value).encode())
    if size <= MAX_ITEM_BYTES - ITEM_OVERHEAD:
        return None
    return (
        f"a {what} of {size} bytes does not fit in a DynamoDB item: the limit is "
        f"{MAX_ITEM_BYTES} bytes (400 KB) including the item's keys and bookkeeping, so a value "
        f"may take up to {MAX_ITEM_BYTES - ITEM_OVERHEAD} bytes; nothing was written"
    )


def partition_query(
    table: str, pk: str, low: str | None = None, high: str | None = None
) -> dict[str, Any]:
    """Query parameters for every item of partition ``pk`` with a sort key in ``[low, high]``,
    read consistently (page through them with ``ExclusiveStartKey``)."""
    condition = "pk = :pk"
    values: dict[str, Any] = {":pk": {"S": pk}}
    if low is not None and high is not None:
        condition += " AND sk BETWEEN :low AND :high"
        values[":low"], values[":high"] = {"S": low}, {"S": high}
    return {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }


# -- items -----------------------------------------------------------------------------------


def journal_attrs(invocation_id: str, index: int, command: Command, now: int) -> Attrs:
    pk, sk = journal_key(invocation_id, index)
    return {PK: pk, SK: sk, "command": dumps(command), "created_at": now}


def completion_attrs(invocation_id: str, index: int, completion: Completion, now: int) -> Attrs:
    pk, sk = completion_key(invocation_id, index)
    return {PK: pk, SK: sk, "completion": dumps(completion), "created_at": now}


def state_attrs(service: str, key: str, name: str, value: Any) -> Attrs:
    pk, sk = state_key(service, key, name)
    return {PK: pk, SK: sk, "value": dumps(value)}


def index_of(sk: str) -> int:
    """The journal index at the end of a journal, completion or timer sort key."""
    return int(sk.rsplit("#", 1)[1])


def command_of(attrs: Attrs) -> Command:
    """The command a journal entry's item holds."""
    command: Command = json.loads(attrs["command"])
    return command


def journal_of(
    items: list[Attrs], journal_length: int | None = None
) -> tuple[list[Command], dict[str, Completion]]:
    """The journal and completions among an invocation partition's items, up to
    ``journal_length`` (entries past it belong to no committed write)."""
    commands: dict[int, Command] = {}
    completions: dict[str, Completion] = {}
    for attrs in items:
        sk: str = attrs[SK]
        if sk.startswith("j#"):
            commands[index_of(sk)] = command_of(attrs)
        elif sk.startswith("c#"):
            completions[str(index_of(sk))] = json.loads(attrs["completion"])
    if journal_length is not None:
        commands = {i: c for i, c in commands.items() if i < journal_length}
        completions = {k: c for k, c in completions.items() if int(k) < journal_length}
    return [commands[i] for i in sorted(commands)], completions


def state_of(items: list[Attrs]) -> dict[str, Any]:
    """The state entries among an object partition's items."""
    return {
        a[SK].removeprefix(STATE_PREFIX): json.loads(a["value"])
        for a in items
        if a[SK].startswith(STATE_PREFIX)
    }


def promises_of(items: list[Attrs]) -> dict[str, Completion]:
    """The completed promises among an object partition's items, by name."""
    return {
        a[SK].removeprefix(PROMISE_PREFIX): json.loads(a["completion"])
        for a in items
        if a[SK].startswith(PROMISE_PREFIX) and a.get("completion") is not None
    }


# -- the append of a deployment --------------------------------------------------------------


def append_fence(invocation_id: str, epoch: int, base: int, length: int, now: int) -> Attrs:
    """The UpdateItem of an append (as a transaction action's body, without the table): the
    invocation's journal moves from ``base`` to ``length`` entries.

    Timelines its condition prevents:

    - A zombie attempt: a function's attempt 3 stalls; the runtime gives up on it and starts
      attempt 4. Attempt 3 wakes and appends its step: its write requires epoch 3 and status
      running, fails, and nothing of it is stored.
    - Two writers of one attempt: the runtime's invoke of a function was retried (its answer
      was lost), so two instances run attempt 4 side by side from the same journal. Both
      append entry 9; the second requires ``journal_length = 9`` as it read it, finds 10, and
      fails instead of storing a second entry 9 or leaving a gap.

    The version is bumped, so a runtime process that wrote the invocation item from a copy
    read before (its conditions require the version it read) reads it again instead of
    putting back the old journal length.
    """
    pk, sk = invocation_key(invocation_id)
    return {
        "Key": to_wire({PK: pk, SK: sk}),
        "UpdateExpression": "SET journal_length = :length, modified_at = :now, "
        "retry_count = :zero ADD #ver :one",
        "ConditionExpression": "epoch = :epoch AND #status = :running AND journal_length = :base",
        "ExpressionAttributeNames": {"#ver": VERSION, "#status": "status"},
        "ExpressionAttributeValues": to_wire(
            {
                ":length": length,
                ":now": now,
                ":zero": 0,
                ":one": 1,
                ":epoch": epoch,
                ":running": "running",
                ":base": base,
            }
        ),
    }


class StateScope:
    """The object key an exclusive handler holds, with the names of its state entries (it
    learns them from the eager state and follows its own changes, so clearing all of them
    needs no read)."""

    def __init__(self, service: str, key: str, names: set[str]) -> None:
        self.service = service
        self.key = key
        self.names = set(names)


def append_transactions(
    table: str,
    invocation_id: str,
    epoch: int,
    base: int,
    commands: list[Command],
    completions: dict[str, Completion],
    scope: StateScope | None,
    now: int,
) -> list[list[dict[str, Any]]]:
    """The TransactWriteItems (their ``TransactItems``) that append ``commands`` (from journal
    index ``base`` on) and ``completions``, in order: usually one; more when they exceed a
    transaction, each then a prefix of the journal, as a checkpoint made there would be.
    ``scope`` follows the state changes. A :class:`TerminalError` (413) names a value that
    cannot be stored, :class:`NotLocal` commands a deployment may not append; nothing is built
    then."""
    for command in commands:
        if command["kind"] not in LOCAL_COMMANDS:
            raise NotLocal(f"a {command['kind']} command is stored by the runtime")
        problem = too_large(f"journal entry ({command['kind']})", command)
        if problem is not None:
            raise TerminalError(problem, status_code=413)
    for completion in completions.values():
        problem = too_large("step result", completion)
        if problem is not None:
            raise TerminalError(problem, status_code=413)

    # Each command with its completion (if it has one here) and its state write: they stay
    # together in one transaction. Completions of earlier commands go first.
    groups: list[list[tuple[str, Attrs]]] = []
    earlier = [k for k in completions if int(k) < base]
    if earlier:
        groups.append([("put", completion_attrs(invocation_id, int(k), completions[k], now))
                       for k in earlier])  # fmt: skip
    for offset, command in enumerate(commands):
        index = base + offset
        group: list[tuple[str, Attrs]] = [
            ("put", journal_attrs(invocation_id, index, command, now))
        ]
        if str(index) in completions:
            group.append(
                ("put", completion_attrs(invocation_id, index, completions[str(index)], now))
            )
        group += _state_writes(command, scope)
        groups.append(group)

    transactions: list[list[dict[str, Any]]] = []
    batch: list[tuple[str, Attrs]] = []
    start = length = base
    size = 0
    for group in groups:
        journal_entries = sum(1 for op, a in group if op == "put" and a[SK].startswith("j#"))
        group_size = sum(item_size(a) for _, a in group)
        if batch and (
            len(batch) + len(group) + 1 > MAX_TRANSACTION_ACTIONS
            or size + group_size > MAX_TRANSACTION_BYTES - 64 * 1024
        ):
            transactions.append(
                _transaction(table, invocation_id, epoch, start, length, batch, now)
            )
            batch, start, size = [], length, 0
        batch += group
        length += journal_entries
        size += group_size
    if batch or not transactions:
        transactions.append(_transaction(table, invocation_id, epoch, start, length, batch, now))
    return transactions


def _state_writes(command: Command, scope: StateScope | None) -> list[tuple[str, Attrs]]:
    kind = command["kind"]
    if kind not in ("set_state", "clear_state", "clear_all_state"):
        return []
    if scope is None:
        raise NotLocal(f"a {kind} command needs an object key")
    if kind == "set_state":
        scope.names.add(command["name"])
        return [("put", state_attrs(scope.service, scope.key, command["name"], command["value"]))]
    names = [command["name"]] if kind == "clear_state" else sorted(scope.names)
    scope.names -= set(names)
    return [("delete", key_attrs(state_key(scope.service, scope.key, n))) for n in names]


def key_attrs(key: Key) -> Attrs:
    """An item's key as attributes: ``{"pk": …, "sk": …}``."""
    return {PK: key[0], SK: key[1]}


def _transaction(
    table: str,
    invocation_id: str,
    epoch: int,
    base: int,
    length: int,
    writes: list[tuple[str, Attrs]],
    now: int,
) -> list[dict[str, Any]]:
    update = append_fence(invocation_id, epoch, base, length, now)
    fence = {"TableName": table, **update, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    actions: list[dict[str, Any]] = [{"Update": fence}]
    for op, attrs in writes:
        if op == "delete":
            actions.append({"Delete": {"TableName": table, "Key": to_wire(attrs)}})
        elif attrs[SK].startswith(STATE_PREFIX):  # state entries are overwritten
            actions.append({"Put": {"TableName": table, "Item": to_wire(attrs)}})
        else:  # journal entries and completions are written once
            body = {"TableName": table, "Item": to_wire(attrs),
                    "ConditionExpression": "attribute_not_exists(pk)"}  # fmt: skip
            actions.append({"Put": body})
    if len(actions) > MAX_TRANSACTION_ACTIONS:
        raise NotLocal(
            f"one command changes {len(actions) - 1} items, more than a transaction holds"
        )
    return actions


__all__ = [
    "LOCAL_COMMANDS",
    "MAX_ITEM_BYTES",
    "NotLocal",
    "StateScope",
    "append_fence",
    "append_transactions",
    "journal_of",
    "key_attrs",
    "partition_query",
    "promises_of",
    "state_of",
    "too_large",
]
