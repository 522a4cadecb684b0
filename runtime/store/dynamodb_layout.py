"""The DynamoDB store's table layout: every key, attribute name, item encoding and condition.

One table with string keys ``pk`` and ``sk`` (defined once, in ``infra/table.yaml``). The items
of one invocation share a partition, so one Query loads an attempt; the items of one object key
share another. Item kinds are told apart by their sort key's prefix, which leaves room for more
kinds without touching these (an awakeable needs none: it is a journal entry and, once
resolved, its completion)::

    item                 pk                          sk                     GSI
    invocation           inv#ID                      inv                    by_service, by_status
    journal entry        inv#ID                      j#0000000007
    completion           inv#ID                      c#0000000007
    timer                inv#ID                      timer#sleep#0000000007 timers
    durable promise      obj#SERVICE#KEY             promise#NAME
    state entry          obj#SERVICE#KEY             state#NAME
    key turn (the lock)  obj#SERVICE#KEY             turn
    queued turn          obj#SERVICE#KEY             turn#000000000012
    idempotency record   idem#SERVICE#KEY#HANDLER#K  idem
    deployment           deployments                 URI

``#`` separates the parts of a key; a ``#`` or ``%`` inside a part is percent-escaped, so no two
scopes share a key. In one object partition the sort keys run ``promise#…`` < ``state#…`` <
``turn`` < ``turn#…``: one Query reads the promises and the state together with the turn item
(all an attempt of a keyed handler needs), another the turn item together with the head of the
queue.

Journal entries and completions are immutable: written once, with ``attribute_not_exists``.
Invocations, key turns, durable promises and idempotency records are *versioned*: every write
of one is conditional on the version it was read at (optimistic concurrency), and every attempt
write is also fenced by the attempt's epoch. Values (commands, results, state) are stored as
JSON strings, so a value round-trips exactly (no DynamoDB number or empty-set quirks).

The items a deployment reads and writes itself (journal entries, completions, state entries,
and the fenced move of the invocation's journal length) are defined in :mod:`tarry.journal_table`,
in the SDK, so that a Lambda function appends its steps without importing the runtime; they are
re-exported here, and this module builds the rest of the layout on them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tarry.journal_table import (
    ITEM_OVERHEAD,
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_ACTIONS,
    MAX_TRANSACTION_BYTES,
    PK,
    PROMISE_END,
    PROMISE_PREFIX,
    SK,
    STATE_END,
    STATE_PREFIX,
    VERSION,
    Attrs,
    Key,
    Wire,
    command_of,
    completion_attrs,
    completion_key,
    dumps,
    from_wire,
    index_of,
    invocation_key,
    invocation_pk,
    item_size,
    journal_attrs,
    journal_key,
    journal_of,
    key_attrs,
    object_pk,
    part,
    partition_query,
    promises_of,
    state_attrs,
    state_key,
    state_of,
    to_wire,
    too_large,
    unpart,
)
from tarry.protocol import Completion

from .base import Invocation, JournalEntry, Timer

# -- table, indexes, attribute names --------------------------------------------------------

# GSI by_service: an invocation's service, newest first; projects the status for filtering.
BY_SERVICE = "by_service"
SERVICE = "svc"
CREATED = "created"  # f"{created_at:013d}#{id}": the listing order, newest last
# GSI by_status: invocations by status, sharded so one status is not one hot partition.
BY_STATUS = "by_status"
STATUS_SHARD = "st"  # f"{status}#{shard}"
STATUS_SHARDS = 4
# GSI timers: every timer item, sharded, by the time it is due.
TIMERS = "timers"
TIMER_SHARD = "tq"  # f"timers#{shard}"
FIRE_AT = "fire_at"
TIMER_SHARDS = 4
# The lease on a running attempt: which store instance drives it, until when (projected into
# by_status, so a sweep finds lapsed leases without reading every running invocation).
OWNER = "owner"
LEASE_UNTIL = "lease_until"
# Where a pending (or paused while pending) invocation waits in its object key's queue.
QUEUE_POS = "queue_pos"
# The deployment an invocation is pinned to (projected into by_status, so the invocations a
# deployment still has are counted from the index).
DEPLOYMENT = "dp"
# The idempotency record's expiry in epoch seconds, for DynamoDB's TTL to delete it some time
# after it lapsed. The store never relies on it: it compares ``expires_at`` with ``now`` itself.
TTL = "ttl"
# The invocation's secret, which keys its awakeables' ids (absent: stored before secrets; the
# next attempt's start gives it one).
SECRET = "secret"

_WIDTH = 10  # digits of a journal index in a sort key (as tarry.journal_table's)


def _shard(value: str, shards: int) -> int:
    return zlib.crc32(value.encode()) % shards


# -- keys ------------------------------------------------------------------------------------

TURN = "turn"
QUEUE_PREFIX = "turn#"
QUEUE_END = "turn#~"  # sorts after every queued turn (digits)
TIMER_PREFIX = "timer#"
TIMER_END = "timer#\U0010ffff"  # sorts after every timer of the invocation


def timer_key(invocation_id: str, kind: str, index: int) -> Key:
    """
    >>> timer_key("inv_1", "sleep", 3)
    ('inv#inv_1', 'timer#sleep#0000000003')
    """
    return invocation_pk(invocation_id), f"{TIMER_PREFIX}{kind}#{index:0{_WIDTH}d}"


def promise_key(service: str, key: str, name: str) -> Key:
    """A workflow key's durable promise (its waiters live in the same item).

    >>> promise_key("Wf", "k", "approved")
    ('obj#Wf#k', 'promise#approved')
    """
    return object_pk(service, key), f"{PROMISE_PREFIX}{name}"


def turn_key(service: str, key: str) -> Key:
    return object_pk(service, key), TURN


def queued_key(service: str, key: str, position: int) -> Key:
    """
    >>> queued_key("Counter", "a", 12)
    ('obj#Counter#a', 'turn#000000000012')
    """
    return object_pk(service, key), f"{QUEUE_PREFIX}{position:012d}"


def idempotency_key(service: str, key: str | None, handler: str, idempotency_key: str) -> Key:
    """The record of one idempotency scope: service, object key, handler and idempotency key.

    >>> idempotency_key("Svc", None, "h", "k#1")
    ('idem#Svc##h#k%231', 'idem')
    """
    scope = "#".join(part(p) for p in (service, key or "", handler, idempotency_key))
    return f"idem#{scope}", "idem"


DEPLOYMENTS_PK = "deployments"


def deployment_key(uri: str) -> Key:
    return DEPLOYMENTS_PK, uri


def kind_of(key: Key) -> str:
    """The item kind a key names: ``invocation``, ``journal``, ``completion``, ``timer``,
    ``promise``, ``state``, ``turn``, ``queued``, ``idempotency`` or ``deployment``.

    >>> [kind_of(k) for k in (invocation_key("i"), turn_key("S", "k"), queued_key("S", "k", 1))]
    ['invocation', 'turn', 'queued']
    """
    pk, sk = key
    if pk == DEPLOYMENTS_PK:
        return "deployment"
    if sk == "inv":
        return "invocation"
    if sk == "idem":
        return "idempotency"
    if sk == TURN:
        return "turn"
    for prefix, kind in (
        ("j#", "journal"),
        ("c#", "completion"),
        (TIMER_PREFIX, "timer"),
        (PROMISE_PREFIX, "promise"),
        (STATE_PREFIX, "state"),
        (QUEUE_PREFIX, "queued"),
    ):
        if sk.startswith(prefix):
            return kind
    raise ValueError(f"unknown item key {key!r}")


# Items written under optimistic concurrency: each carries ``ver``, bumped by every write.
VERSIONED = frozenset({"invocation", "turn", "promise", "idempotency"})
# Items that never change once written.
IMMUTABLE = frozenset({"journal", "completion", "queued"})


def key_of(attrs: Attrs) -> Key:
    return attrs[PK], attrs[SK]


# -- conditions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A ConditionExpression with its placeholders (values already in wire form)."""

    expression: str
    names: dict[str, str] = field(default_factory=dict)
    values: Wire = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ConditionExpression": self.expression}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


# Written once: a journal entry, a completion, a queued turn, the first version of a versioned
# item. Timeline it prevents: a caller's attempt sends a call and dies before it learns the
# result; its next attempt replays and sends the same call (same invocation id) again. The
# second put of ``inv#ID`` fails, and the store answers with the invocation the first created
# instead of starting it twice. For a completion the same condition makes the first result win.
ABSENT = Condition("attribute_not_exists(pk)")

# Still there: a completion an operation relied on, a queued turn it hands the key to.
PRESENT = Condition("attribute_exists(pk)")


def unchanged(version: int) -> Condition:
    """Unchanged since it was read at ``version``: optimistic concurrency on a versioned item.

    Timeline it prevents (a lost queue entry): invocation A holds key k and completes, so it
    reads k's turn item (version 7, nobody waiting). Meanwhile B is created for k, reads the
    same turn item at version 7, and commits "queued behind A" (version 8). A's release, "k is
    free" conditioned on version 7, now fails; A reads again, sees B waiting and hands k to B.
    Without the condition B would wait forever on a free key.
    """
    return Condition("#ver = :ver", {"#ver": VERSION}, {":ver": {"N": str(version)}})


# More timelines the version condition prevents, each through a read the commit re-asserts:
#
# - A state edit behind a handler's back: the admin API edits k's state while k is idle (the
#   turn item names no holder); meanwhile invocation A takes k and starts on the state as it
#   was. The edit's commit re-asserts the turn item's version and fails; run again, it sees A
#   hold k and is refused (NotAllowed), so A never overwrites the edit with its snapshot.
# - An awakeable completed for an entry not stored yet: accepted because the invocation's
#   attempt is running (and could still store it). If the attempt ends meanwhile (say it
#   completes), the invocation's version moved; the completion runs again and finds nothing
#   in flight that could store the entry: not found, instead of a result nobody reads.
# - A purge against a new workflow run: a workflow key's state and promises are deleted (a
#   chunk per transaction, if many) only with the purged run's idempotency record unchanged.
#   A new run that claims the key meanwhile rewrites the record, the chunk fails, and the
#   new run's state stays. Clearing the key of an expired run before a new run claims it
#   (``DynamoDBStore._clear_expired_run``) is guarded the same way.
# - Cancelling a queued invocation against the key's release: the invocation leaves the queue
#   (its queued turn deleted, PRESENT, and the turn's count lowered) in the same transaction
#   that completes it; a release that read the queue before hands the key to it, and fails on
#   the turn item's version: run again, it hands the key to the next one.


def fenced(version: int, epoch: int) -> Condition:
    """The write of an attempt: the invocation is still running that attempt (its epoch), and
    unchanged since it was read.

    Timeline it prevents (a zombie attempt): attempt 1 of an invocation stalls (a long GC, a
    partition); the runtime gives up on it and starts attempt 2 (epoch 2), which appends step
    results. Attempt 1 wakes up and appends its own result for the same journal index. Its
    write is conditioned on epoch 1 and fails; the store turns the failure (with the item as it
    is, ALL_OLD) into StaleEpoch carrying the current invocation, and nothing of attempt 1 is
    written. The version part makes a concurrent change that is not an attempt's (a caller
    attaching to the invocation's result) retry the write instead of being overwritten.
    """
    return Condition(
        "#ver = :ver AND #epoch = :epoch AND #status = :running",
        {"#ver": VERSION, "#epoch": "epoch", "#status": "status"},
        {
            ":ver": {"N": str(version)},
            ":epoch": {"N": str(epoch)},
            ":running": {"S": "running"},
        },
    )


def timer_due(fire_at: int) -> Condition:
    """Deleting a timer as it fires: it is still armed, for this time.

    Timeline it prevents (a double wake-up): two timer wheels (two processes, or one timer
    armed twice) fire the same sleep. The first deletes the timer item and writes the sleep's
    completion in one transaction; the second's delete fails, and it does nothing. A timer that
    was re-armed for later (a retry pushed back) does not fire at its old time either.
    """
    return Condition(
        "attribute_exists(pk) AND #fire_at = :fire_at",
        {"#fire_at": FIRE_AT},
        {":fire_at": {"N": str(fire_at)}},
    )


# -- invocations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InvocationRow:
    """An invocation item: the record, the journal entries waiting for its result, the lease
    of the process that drives its running attempt (see :func:`lease_expired`), and its place
    in its object key's queue."""

    record: Invocation
    callers: tuple[tuple[str, int], ...] = ()
    owner: str | None = None  # the store instance that started the running attempt ...
    lease_until: int | None = None  # ... and until when it holds it unless it renews
    # The position of its queued turn (``turn#…``) while it waits for its object key, kept
    # while it is paused there: resumed, it is queued at the same position again, ahead of
    # everything that came after it.
    queue_pos: int | None = None

    def with_(self, **changes: Any) -> InvocationRow:
        return replace(self, record=replace(self.record, **changes))


def invocation_attrs(row: InvocationRow) -> Attrs:
    inv = row.record
    pk, sk = invocation_key(inv.id)
    return {
        PK: pk,
        SK: sk,
        "id": inv.id,
        SERVICE: inv.service,
        "handler": inv.handler,
        "key": inv.key,
        "exclusive": inv.exclusive,
        "status": inv.status,
        "epoch": inv.epoch,
        "attempts": inv.attempts,
        "retry_count": inv.retry_count,
        "journal_length": inv.journal_length,
        "headers": dumps(inv.headers),
        "idempotency_key": inv.idempotency_key,
        "caller_id": inv.caller_id,
        "caller_index": inv.caller_index,
        "created_at": inv.created_at,
        "modified_at": inv.modified_at,
        "scheduled_at": inv.scheduled_at,
        "next_retry_at": inv.next_retry_at,
        "waiting_on": dumps(inv.waiting_on),
        "completion": dumps(inv.completion) if inv.completion is not None else None,
        "completed_at": inv.completed_at,
        "last_failure": inv.last_failure,
        "interrupt": inv.interrupt,
        DEPLOYMENT: inv.deployment_id,
        SECRET: inv.secret,
        "callers": dumps([list(c) for c in row.callers]),
        OWNER: row.owner,
        LEASE_UNTIL: row.lease_until,
        QUEUE_POS: row.queue_pos,
        CREATED: f"{inv.created_at:013d}#{inv.id}",
        STATUS_SHARD: f"{inv.status}#{_shard(inv.id, STATUS_SHARDS)}",
    }


def invocation_row(attrs: Attrs) -> InvocationRow:
    completion = attrs.get("completion")
    record = Invocation(
        id=attrs["id"],
        service=attrs[SERVICE],
        handler=attrs["handler"],
        key=attrs.get("key"),
        exclusive=attrs["exclusive"],
        status=attrs["status"],
        epoch=attrs["epoch"],
        attempts=attrs["attempts"],
        retry_count=attrs["retry_count"],
        journal_length=attrs["journal_length"],
        headers=json.loads(attrs["headers"]),
        idempotency_key=attrs.get("idempotency_key"),
        caller_id=attrs.get("caller_id"),
        caller_index=attrs.get("caller_index"),
        created_at=attrs["created_at"],
        modified_at=attrs["modified_at"],
        scheduled_at=attrs.get("scheduled_at"),
        next_retry_at=attrs.get("next_retry_at"),
        waiting_on=json.loads(attrs["waiting_on"]),
        completion=json.loads(completion) if completion is not None else None,
        completed_at=attrs.get("completed_at"),
        last_failure=attrs.get("last_failure"),
        interrupt=attrs.get("interrupt"),
        deployment_id=attrs.get(DEPLOYMENT),
        secret=attrs.get(SECRET),
    )
    callers = tuple((c[0], c[1]) for c in json.loads(attrs.get("callers", "[]")))
    return InvocationRow(
        record, callers, attrs.get(OWNER), attrs.get(LEASE_UNTIL), attrs.get(QUEUE_POS)
    )


def created_at(attrs: Attrs) -> int:
    """When the invocation an item (or its by_status entry) belongs to was created."""
    return int(str(attrs[CREATED]).partition("#")[0])


def lease_expired(attrs: Attrs, now: int) -> bool:
    """A running attempt whose driver stopped renewing its lease: its process is gone (or cut
    off), and another may take the invocation over. Works on the by_status projection too.

    Timeline it decides: process A starts attempt 3 (lease until t+10 s) and dies. Nobody
    renews; at t+10 s process B's sweep sees the lease lapsed and makes the invocation ready
    (a versioned write), then starts attempt 4. Should A come back, its writes carry epoch 3
    and are fenced off (:func:`fenced`).
    """
    lease = attrs.get(LEASE_UNTIL)
    return lease is None or lease <= now


def status_partitions(status: str) -> list[str]:
    """The by_status partitions that hold invocations in ``status``."""
    return [f"{status}#{n}" for n in range(STATUS_SHARDS)]


# -- journal, completions, timers ------------------------------------------------------------


def timeline_of(items: list[Attrs]) -> list[JournalEntry]:
    """An invocation partition's journal with each entry's result and the times both were
    stored; empty if the partition holds no invocation (it never existed, or was purged)."""
    rows = [a for a in items if a[SK] == "inv"]
    if not rows:
        return []
    length: int = rows[0]["journal_length"]
    done = {index_of(a[SK]): a for a in items if a[SK].startswith("c#")}
    entries = []
    for attrs in items:
        if not attrs[SK].startswith("j#") or index_of(attrs[SK]) >= length:
            continue
        index = index_of(attrs[SK])
        result = done.get(index)
        entries.append(
            JournalEntry(
                index,
                command_of(attrs),
                attrs["created_at"],
                json.loads(result["completion"]) if result is not None else None,
                result["created_at"] if result is not None else None,
            )
        )
    return sorted(entries, key=lambda e: e.index)


def timer_attrs(timer: Timer) -> Attrs:
    pk, sk = timer_key(timer.invocation_id, timer.kind, timer.index)
    return {
        PK: pk,
        SK: sk,
        TIMER_SHARD: f"timers#{_shard(timer.invocation_id, TIMER_SHARDS)}",
        FIRE_AT: timer.fire_at,
    }


def timer_of(attrs: Attrs) -> Timer:
    """A timer from its item, or from its keys-only projection in the timers index."""
    _, kind, index = attrs[SK].split("#")
    invocation_id = unpart(attrs[PK].removeprefix("inv#"))
    return Timer(attrs[FIRE_AT], kind, invocation_id, int(index))


def timer_partitions() -> list[str]:
    return [f"timers#{n}" for n in range(TIMER_SHARDS)]


# -- object state and the key's turn ---------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """Whose turn it is on an exclusive object key, and how many wait for theirs.

    ``tail`` numbers queued turns (FIFO); ``waiting`` counts them, so releasing a key nobody
    waits for needs no Query."""

    service: str
    key: str
    holder: str | None = None
    tail: int = 0
    waiting: int = 0


def turn_attrs(turn: Turn) -> Attrs:
    pk, sk = turn_key(turn.service, turn.key)
    return {
        PK: pk,
        SK: sk,
        "holder": turn.holder,
        "tail": turn.tail,
        "waiting": turn.waiting,
    }


def turn_of(service: str, key: str, attrs: Attrs | None) -> Turn:
    if attrs is None:
        return Turn(service, key)
    return Turn(service, key, attrs.get("holder"), attrs["tail"], attrs["waiting"])


def queued_attrs(service: str, key: str, position: int, invocation_id: str) -> Attrs:
    pk, sk = queued_key(service, key, position)
    return {PK: pk, SK: sk, "invocation_id": invocation_id}


# -- durable promises ------------------------------------------------------------------------


@dataclass(frozen=True)
class Promise:
    """A workflow key's durable promise: its result once completed, and until then the journal
    entries (invocation, index) that await it.

    One versioned item holds both, so awaiting a promise and completing it serialize on it.
    Timeline it prevents (a lost waiter): a workflow's run awaits promise p, not completed yet;
    at the same moment a signal handler completes p. Were each waiter an item of its own, the
    signal could read "nobody waits", the run "not completed", both commit, and the run would
    wait forever. In one item, the second commit fails its version condition and runs again
    knowing the first: the run finds p completed, or the signal finds the run waiting. A second
    completion of p fails the same way, then finds p completed (and answers 409): the first
    completion wins.
    """

    service: str
    key: str
    name: str
    completion: Completion | None = None
    completed_at: int | None = None
    waiters: tuple[tuple[str, int], ...] = ()


def promise_attrs(promise: Promise) -> Attrs:
    pk, sk = promise_key(promise.service, promise.key, promise.name)
    completion = promise.completion
    return {
        PK: pk,
        SK: sk,
        "completion": dumps(completion) if completion is not None else None,
        "completed_at": promise.completed_at,
        "waiters": dumps([list(w) for w in promise.waiters]),
    }


def promise_of(service: str, key: str, name: str, attrs: Attrs | None) -> Promise:
    """The promise as its item has it (``attrs``: None if there is none yet)."""
    if attrs is None:
        return Promise(service, key, name)
    completion = attrs.get("completion")
    return Promise(
        service,
        key,
        name,
        json.loads(completion) if completion is not None else None,
        attrs.get("completed_at"),
        tuple((w[0], w[1]) for w in json.loads(attrs.get("waiters", "[]"))),
    )


# -- idempotency records ---------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyRecord:
    service: str
    key: str | None
    handler: str
    idempotency_key: str
    invocation_id: str
    request_hash: str | None
    retention_ms: int
    expires_at: int | None = None  # set when the invocation completes

    def expired(self, now: int) -> bool:
        """Lapsed at ``now`` (compared here, never left to DynamoDB's TTL)."""
        return self.expires_at is not None and self.expires_at <= now


def idempotency_attrs(record: IdempotencyRecord) -> Attrs:
    pk, sk = idempotency_key(record.service, record.key, record.handler, record.idempotency_key)
    expires = record.expires_at
    return {
        PK: pk,
        SK: sk,
        "service": record.service,
        "key": record.key,
        "handler": record.handler,
        "idempotency_key": record.idempotency_key,
        "invocation_id": record.invocation_id,
        "request_hash": record.request_hash,
        "retention_ms": record.retention_ms,
        "expires_at": expires,
        TTL: None if expires is None else expires // 1000 + 1,
    }


def idempotency_record(attrs: Attrs) -> IdempotencyRecord:
    return IdempotencyRecord(
        service=attrs["service"],
        key=attrs.get("key"),
        handler=attrs["handler"],
        idempotency_key=attrs["idempotency_key"],
        invocation_id=attrs["invocation_id"],
        request_hash=attrs.get("request_hash"),
        retention_ms=attrs["retention_ms"],
        expires_at=attrs.get("expires_at"),
    )


# -- deployments -----------------------------------------------------------------------------


def deployment_upsert(
    deployment_id: str,
    uri: str,
    services_json: str,
    created_at: int,
    registered_at: int,
    assume_role_arn: str | None,
) -> dict[str, Any]:
    """UpdateItem parameters that store a deployment's services, registration time and role,
    keeping the id and the time it was first registered (an upsert by URI)."""
    pk, sk = deployment_key(uri)
    values: Attrs = {
        ":services": services_json,
        ":id": deployment_id,
        ":created_at": created_at,
        ":registered_at": registered_at,
    }
    update = (
        "SET services = :services, id = if_not_exists(id, :id), "
        "created_at = if_not_exists(created_at, :created_at), registered_at = :registered_at"
    )
    if assume_role_arn is not None:
        update += ", assume_role_arn = :role"
        values[":role"] = assume_role_arn
    else:
        update += " REMOVE assume_role_arn"
    return {
        "Key": to_wire({PK: pk, SK: sk}),
        "UpdateExpression": update,
        "ExpressionAttributeValues": to_wire(values),
    }


ItemKind = Literal[
    "invocation",
    "journal",
    "completion",
    "timer",
    "promise",
    "state",
    "turn",
    "queued",
    "idempotency",
    "deployment",
]

__all__ = [
    "ABSENT",
    "ITEM_OVERHEAD",
    "MAX_ITEM_BYTES",
    "MAX_TRANSACTION_ACTIONS",
    "MAX_TRANSACTION_BYTES",
    "PK",
    "PRESENT",
    "PROMISE_END",
    "PROMISE_PREFIX",
    "SK",
    "STATE_END",
    "STATE_PREFIX",
    "VERSION",
    "Attrs",
    "Condition",
    "IdempotencyRecord",
    "InvocationRow",
    "Key",
    "Promise",
    "Turn",
    "Wire",
    "command_of",
    "completion_attrs",
    "completion_key",
    "created_at",
    "dumps",
    "fenced",
    "from_wire",
    "index_of",
    "invocation_key",
    "invocation_pk",
    "item_size",
    "journal_attrs",
    "journal_key",
    "journal_of",
    "key_attrs",
    "object_pk",
    "part",
    "partition_query",
    "promises_of",
    "state_attrs",
    "state_key",
    "state_of",
    "timer_due",
    "to_wire",
    "too_large",
    "unchanged",
    "unpart",
]
