"""The SQLite store's schema and its operations inside one transaction.

Every function here runs on the writer thread, inside the transaction (and savepoint) that
:mod:`tarry.runtime.store.sqlite_writer` opened for it; none commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from tarry.protocol import (
    CANCELLED,
    Command,
    Completion,
    Failure,
    authentic_awakeable_id,
    parse_awakeable_id,
)

from .base import (
    AttemptStart,
    AwakeableOutcome,
    Effects,
    IdempotencyConflict,
    Invocation,
    JournalEntry,
    NewInvocation,
    StaleEpoch,
    Timer,
    check_purgeable,
    key_in_use,
    new_secret,
    pausing,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order: the per-key queue is FIFO by it
    id TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    handler TEXT NOT NULL,
    key TEXT,
    exclusive INTEGER NOT NULL,
    status TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    journal_length INTEGER NOT NULL DEFAULT 0,
    headers TEXT NOT NULL,
    idempotency_key TEXT,
    caller_id TEXT,
    caller_index INTEGER,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    scheduled_at INTEGER,
    next_retry_at INTEGER,
    waiting_on TEXT NOT NULL DEFAULT '[]',
    completion TEXT,
    completed_at INTEGER,
    last_failure TEXT,
    interrupt TEXT,                          -- 'cancel' or 'pause', asked while it ran
    deployment_id TEXT,                      -- the deployment every attempt runs on
    secret TEXT                              -- keys its awakeables' ids (NULL: made before)
);
CREATE INDEX IF NOT EXISTS invocations_by_key ON invocations (service, key, status, seq);
CREATE INDEX IF NOT EXISTS invocations_by_status ON invocations (status);
CREATE TABLE IF NOT EXISTS journal (
    invocation_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    command TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS completions (
    invocation_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    completion TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS callers (
    invocation_id TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    caller_index INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, caller_id, caller_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS locks (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    PRIMARY KEY (service, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    fire_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, kind, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT PRIMARY KEY,         -- service, key, handler and idempotency key
    invocation_id TEXT NOT NULL,
    request_hash TEXT,
    retention_ms INTEGER NOT NULL,
    expires_at INTEGER              -- set when the invocation completes
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promises (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promise_waiters (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (service, key, name, invocation_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    services TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    registered_at INTEGER NOT NULL DEFAULT 0,
    assume_role_arn TEXT
);
"""

COLUMNS = (
    "id, service, handler, key, exclusive, status, epoch, attempts, retry_count, journal_length, "
    "headers, idempotency_key, caller_id, caller_index, created_at, modified_at, scheduled_at, "
    "next_retry_at, waiting_on, completion, completed_at, last_failure, interrupt, deployment_id, "
    "secret"
)

KILLED: Failure = {"code": 409, "message": "killed"}


def setup(conn: sqlite3.Connection) -> None:
    """Create the schema, and bring a database made by an earlier version up to it."""
    conn.executescript(SCHEMA)
    added = {
        "invocations": [("interrupt", "TEXT"), ("deployment_id", "TEXT"), ("secret", "TEXT")],
        "deployments": [
            ("registered_at", "INTEGER NOT NULL DEFAULT 0"),
            ("assume_role_arn", "TEXT"),
        ],
    }
    for table, columns in added.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def invocation(row: sqlite3.Row) -> Invocation:
    return Invocation(
        id=row["id"],
        service=row["service"],
        handler=row["handler"],
        key=row["key"],
        exclusive=bool(row["exclusive"]),
        status=row["status"],
        epoch=row["epoch"],
        attempts=row["attempts"],
        retry_count=row["retry_count"],
        journal_length=row["journal_length"],
        headers=json.loads(row["headers"]),
        idempotency_key=row["idempotency_key"],
        caller_id=row["caller_id"],
        caller_index=row["caller_index"],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        scheduled_at=row["scheduled_at"],
        next_retry_at=row["next_retry_at"],
        waiting_on=json.loads(row["waiting_on"]),
        completion=json.loads(row["completion"]) if row["completion"] else None,
        completed_at=row["completed_at"],
        last_failure=row["last_failure"],
        interrupt=row["interrupt"],
        deployment_id=row["deployment_id"],
        secret=row["secret"],
    )


def idempotency_scope(service: str, key: str | None, handler: str, idempotency_key: str) -> str:
    return "\x1f".join((service, key or "", handler, idempotency_key))


def load(conn: sqlite3.Connection, invocation_id: str) -> Invocation:
    row = conn.execute(f"SELECT {COLUMNS} FROM invocations WHERE id=?", (invocation_id,)).fetchone()
    if row is None:
        raise KeyError(invocation_id)
    return invocation(row)


def start(conn: sqlite3.Connection, invocation_id: str, now: int) -> AttemptStart | None:
    # An invocation stored before secrets existed is given one here, kept from then on.
    cur = conn.execute(
        "UPDATE invocations SET status='running', epoch=epoch+1, attempts=attempts+1, "
        "modified_at=?, secret=coalesce(secret, ?) WHERE id=? AND status='ready'",
        (now, new_secret(late=True), invocation_id),
    )
    if cur.rowcount == 0:
        return None
    inv = load(conn, invocation_id)
    commands, completions = load_journal(conn, invocation_id)
    if inv.key is None:
        return AttemptStart(inv, commands, completions, None)
    state = load_state(conn, inv.service, inv.key)
    return AttemptStart(
        inv, commands, completions, state, load_promises(conn, inv.service, inv.key)
    )


def fenced(conn: sqlite3.Connection, invocation_id: str, epoch: int) -> Invocation:
    """The invocation, if ``epoch`` is its running attempt; else :class:`StaleEpoch`."""
    try:
        inv = load(conn, invocation_id)
    except KeyError:
        raise StaleEpoch(invocation_id, epoch, None) from None
    if inv.epoch != epoch or inv.status != "running":
        raise StaleEpoch(invocation_id, epoch, inv)
    return inv


def load_journal(
    conn: sqlite3.Connection, invocation_id: str
) -> tuple[list[Command], dict[str, Completion]]:
    commands = [
        json.loads(r[0])
        for r in conn.execute(
            "SELECT command FROM journal WHERE invocation_id=? ORDER BY idx", (invocation_id,)
        )
    ]
    completions = {
        str(r[0]): json.loads(r[1])
        for r in conn.execute(
            "SELECT idx, completion FROM completions WHERE invocation_id=?", (invocation_id,)
        )
    }
    return commands, completions


def load_state(conn: sqlite3.Connection, service: str, key: str) -> dict[str, Any]:
    rows = conn.execute("SELECT name, value FROM state WHERE service=? AND key=?", (service, key))
    return {r[0]: json.loads(r[1]) for r in rows}


def load_promises(conn: sqlite3.Connection, service: str, key: str) -> dict[str, Completion]:
    rows = conn.execute(
        "SELECT name, completion FROM promises WHERE service=? AND key=?", (service, key)
    )
    return {r[0]: json.loads(r[1]) for r in rows}


def set_status(conn: sqlite3.Connection, invocation_id: str, status: str, now: int) -> None:
    conn.execute(
        "UPDATE invocations SET status=?, modified_at=? WHERE id=?", (status, now, invocation_id)
    )


def claim_idempotency(conn: sqlite3.Connection, new: NewInvocation, now: int) -> Invocation | None:
    """The invocation an idempotency key already names, or ``None`` after claiming it."""
    assert new.idempotency_key is not None
    scope = idempotency_scope(new.service, new.key, new.handler, new.idempotency_key)
    row = conn.execute(
        "SELECT invocation_id, request_hash, expires_at FROM idempotency WHERE scope=?", (scope,)
    ).fetchone()
    if row is not None:
        expired = row["expires_at"] is not None and row["expires_at"] <= now
        if not expired:
            existing = load(conn, row["invocation_id"])
            if new.request_hash is not None and row["request_hash"] != new.request_hash:
                raise IdempotencyConflict(existing)
            return existing
        conn.execute("DELETE FROM idempotency WHERE scope=?", (scope,))
        if new.idempotency_key == "" and new.key is not None:  # a workflow key begins anew
            clear_workflow(conn, new.service, new.key)
    conn.execute(
        "INSERT INTO idempotency (scope, invocation_id, request_hash, retention_ms) "
        "VALUES (?,?,?,?)",
        (scope, new.id, new.request_hash, new.retention_ms),
    )
    return None


def create(
    conn: sqlite3.Connection, new: NewInvocation, now: int, effects: Effects
) -> Invocation | None:
    """Insert ``new``, unless its idempotency key names an invocation already: then return that
    one, with ``new``'s caller (if any) attached to its result."""
    if new.idempotency_key is not None:
        existing = claim_idempotency(conn, new, now)
        if existing is not None:
            if new.caller_id is not None and new.caller_index is not None:
                if new.idempotency_key == "" and existing.id != new.id:
                    # A workflow's run, called a second time (not a retried first call).
                    message = f"the workflow {new.service}/{new.key} was already submitted"
                    failure: Completion = {"failure": {"code": 409, "message": message}}
                    add_completion(conn, new.caller_id, new.caller_index, failure, now, effects)
                else:
                    effects.merge(attach(conn, existing, new.caller_id, new.caller_index, now))
            return existing
    insert(conn, new, now, effects)
    return None


def insert(conn: sqlite3.Connection, new: NewInvocation, now: int, effects: Effects) -> None:
    delayed = new.start_at is not None and new.start_at > now
    cur = conn.execute(
        "INSERT INTO invocations (id, service, handler, key, exclusive, status, headers, "
        "idempotency_key, caller_id, caller_index, created_at, modified_at, scheduled_at, "
        "deployment_id, secret, journal_length) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1) "
        "ON CONFLICT (id) DO NOTHING",
        (
            new.id,
            new.service,
            new.handler,
            new.key,
            int(new.exclusive),
            "scheduled",
            dumps(new.headers),
            new.idempotency_key,
            new.caller_id,
            new.caller_index,
            now,
            now,
            new.start_at if delayed else None,
            new.deployment_id,
            new.secret,
        ),
    )
    if cur.rowcount == 0:  # created before (a call retried from the same journal entry)
        return
    conn.execute(
        "INSERT INTO journal (invocation_id, idx, command, created_at) VALUES (?,0,?,?)",
        (new.id, dumps({"kind": "input", "value": new.input}), now),
    )
    if new.caller_id is not None and new.caller_index is not None:
        conn.execute(
            "INSERT OR IGNORE INTO callers VALUES (?,?,?)",
            (new.id, new.caller_id, new.caller_index),
        )
    if new.failure is not None:
        complete(conn, load(conn, new.id), {"failure": new.failure}, now, effects)
    elif delayed:
        assert new.start_at is not None
        effects.timers.append(add_timer(conn, new.start_at, "start", new.id, 0))
    else:
        enqueue(conn, load(conn, new.id), now, effects)


def enqueue(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    """Make an invocation ready (a new one, a delayed one now due, a resumed one), or queue it
    behind the holder of its object key."""
    if inv.exclusive and inv.key is not None:
        cur = conn.execute(
            "INSERT INTO locks (service, key, invocation_id) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            (inv.service, inv.key, inv.id),
        )
        if cur.rowcount == 0 and holder(conn, inv.service, inv.key) != inv.id:
            set_status(conn, inv.id, "pending", now)
            return
    set_status(conn, inv.id, "ready", now)
    effects.ready.append(inv.id)


def holder(conn: sqlite3.Connection, service: str, key: str) -> str | None:
    """The invocation that holds an object key, if any."""
    row = conn.execute(
        "SELECT invocation_id FROM locks WHERE service=? AND key=?", (service, key)
    ).fetchone()
    return row[0] if row else None


def release(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    """Free the object key ``inv`` held (if it held it) and hand it to the next queued
    invocation (FIFO by arrival)."""
    cur = conn.execute(
        "DELETE FROM locks WHERE service=? AND key=? AND invocation_id=?",
        (inv.service, inv.key, inv.id),
    )
    if cur.rowcount == 0:
        return
    row = conn.execute(
        "SELECT id FROM invocations WHERE service=? AND key=? AND status='pending' "
        "ORDER BY seq LIMIT 1",
        (inv.service, inv.key),
    ).fetchone()
    if row is not None:
        conn.execute(
            "INSERT INTO locks (service, key, invocation_id) VALUES (?,?,?)",
            (inv.service, inv.key, row[0]),
        )
        set_status(conn, row[0], "ready", now)
        effects.ready.append(row[0])


def add_timer(
    conn: sqlite3.Connection, fire_at: int, kind: str, invocation_id: str, index: int
) -> Timer:
    conn.execute(
        "INSERT OR REPLACE INTO timers (fire_at, kind, invocation_id, idx) VALUES (?,?,?,?)",
        (fire_at, kind, invocation_id, index),
    )
    return Timer(fire_at, kind, invocation_id, index)  # type: ignore[arg-type]


def add_completion(
    conn: sqlite3.Connection,
    invocation_id: str,
    index: int,
    completion: Completion,
    now: int,
    effects: Effects,
) -> bool:
    """Record a completion (the first one wins: False if there was one) and wake the
    invocation if it waits for it."""
    cur = conn.execute(
        "INSERT INTO completions (invocation_id, idx, completion, created_at) VALUES (?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        (invocation_id, index, dumps(completion), now),
    )
    if cur.rowcount == 0:
        return False
    row = conn.execute(
        "SELECT status, waiting_on FROM invocations WHERE id=?", (invocation_id,)
    ).fetchone()
    if row is not None and row[0] == "suspended" and index in json.loads(row[1]):
        conn.execute(
            "UPDATE invocations SET status='ready', waiting_on='[]', modified_at=? WHERE id=?",
            (now, invocation_id),
        )
        effects.ready.append(invocation_id)
    return True


def any_completed(conn: sqlite3.Connection, invocation_id: str, indices: list[int]) -> bool:
    """Whether any of the journal entries ``indices`` has a completion."""
    if not indices:
        return False
    marks = ",".join("?" * len(indices))
    row = conn.execute(
        f"SELECT 1 FROM completions WHERE invocation_id=? AND idx IN ({marks}) LIMIT 1",
        (invocation_id, *indices),
    ).fetchone()
    return row is not None


def attach(
    conn: sqlite3.Connection, inv: Invocation, caller_id: str, caller_index: int, now: int
) -> Effects:
    """Deliver ``inv``'s result to another awaiting journal entry (now, or when it completes)."""
    effects = Effects()
    if inv.completion is not None:
        add_completion(conn, caller_id, caller_index, inv.completion, now, effects)
    else:
        conn.execute(
            "INSERT OR IGNORE INTO callers VALUES (?,?,?)", (inv.id, caller_id, caller_index)
        )
    return effects


def complete(
    conn: sqlite3.Connection, inv: Invocation, completion: Completion, now: int, effects: Effects
) -> None:
    conn.execute(
        "UPDATE invocations SET status='completed', completion=?, completed_at=?, modified_at=?, "
        "waiting_on='[]', interrupt=NULL WHERE id=?",
        (dumps(completion), now, now, inv.id),
    )
    for caller_id, caller_index in conn.execute(
        "DELETE FROM callers WHERE invocation_id=? RETURNING caller_id, caller_index", (inv.id,)
    ).fetchall():
        add_completion(conn, caller_id, caller_index, completion, now, effects)
    if inv.idempotency_key is not None:
        conn.execute(
            "UPDATE idempotency SET expires_at=?+retention_ms WHERE scope=?",
            (now, idempotency_scope(inv.service, inv.key, inv.handler, inv.idempotency_key)),
        )
    if inv.exclusive and inv.key is not None:
        release(conn, inv, now, effects)
    effects.finished.append(load(conn, inv.id))


def apply(
    conn: sqlite3.Connection,
    inv: Invocation,
    commands: list[Command],
    completions: dict[str, Completion],
    children: list[NewInvocation],
    now: int,
    effects: Effects,
) -> bool:
    """Store an attempt's new commands and completions and what they cause. True if anything
    new was stored."""
    base = inv.journal_length
    starts = {child.id: child for child in children}
    for offset, command in enumerate(commands):
        index = base + offset
        conn.execute(
            "INSERT INTO journal (invocation_id, idx, command, created_at) VALUES (?,?,?,?)",
            (inv.id, index, dumps(command), now),
        )
        # A call or send starts its invocation here, in journal order: an attach or a cancel
        # after it in the same batch finds it.
        child = starts.pop(str(command.get("invocation_id")), None)
        if child is not None and command["kind"] in ("call", "send"):
            create(conn, child, now, effects)
        _PROCESSORS.get(command["kind"], _no_effect)(conn, inv, index, command, now, effects)
    if commands:
        conn.execute(
            "UPDATE invocations SET journal_length=? WHERE id=?", (base + len(commands), inv.id)
        )
    for key, completion in completions.items():
        add_completion(conn, inv.id, int(key), completion, now, effects)
    for child in starts.values():
        create(conn, child, now, effects)
    return bool(commands or completions)


def clear_workflow(conn: sqlite3.Connection, service: str, key: str) -> None:
    """Forget a workflow key's state and promises (its run was purged or expired)."""
    for table in ("state", "promises", "promise_waiters"):
        conn.execute(f"DELETE FROM {table} WHERE service=? AND key=?", (service, key))


def find(
    conn: sqlite3.Connection,
    service: str,
    key: str | None,
    handler: str,
    idempotency_key: str,
    now: int,
) -> Invocation | None:
    row = conn.execute(
        "SELECT invocation_id, expires_at FROM idempotency WHERE scope=?",
        (idempotency_scope(service, key, handler, idempotency_key),),
    ).fetchone()
    if row is None or (row["expires_at"] is not None and row["expires_at"] <= now):
        return None
    try:
        return load(conn, row["invocation_id"])
    except KeyError:
        return None


def complete_awakeable(
    conn: sqlite3.Connection,
    awakeable_id: str,
    completion: Completion,
    now: int,
    effects: Effects,
) -> AwakeableOutcome:
    """Complete the awakeable ``awakeable_id`` names, if the id is authentic: exactly the one
    its invocation's secret makes for that entry (see :func:`tarry.protocol.awakeable_id`)."""
    try:
        invocation_id, index = parse_awakeable_id(awakeable_id)
        inv = load(conn, invocation_id)
    except (ValueError, KeyError):
        return "not-found"
    if index < 1 or not authentic_awakeable_id(awakeable_id, inv.secret):
        return "not-found"
    if index < inv.journal_length:
        row = conn.execute(
            "SELECT command FROM journal WHERE invocation_id=? AND idx=?", (invocation_id, index)
        ).fetchone()
        if row is None or json.loads(row[0])["kind"] != "awakeable":
            return "not-found"
        if inv.status == "completed":  # nothing waits for it any more
            done = any_completed(conn, invocation_id, [index])
            return "already-completed" if done else "not-found"
    elif inv.status not in ("running", "ready", "backing-off"):
        # Not stored, and no attempt in flight that could still store it.
        return "not-found"
    if add_completion(conn, invocation_id, index, completion, now, effects):
        return "completed"
    return "already-completed"


def _open_calls(conn: sqlite3.Connection, invocation_id: str) -> list[str]:
    """The invocations started by ``invocation_id``'s calls that have no result yet."""
    return [
        entry.command["invocation_id"]
        for entry in timeline(conn, invocation_id)
        if entry.command["kind"] == "call" and entry.completion is None
    ]


def _each_open_call(
    conn: sqlite3.Connection,
    inv: Invocation,
    act: Callable[[sqlite3.Connection, Invocation, int, Effects], None],
    now: int,
    effects: Effects,
) -> None:
    for child_id in _open_calls(conn, inv.id):
        try:
            child = load(conn, child_id)
        except KeyError:  # an idempotent call attached to an invocation made elsewhere
            continue
        act(conn, child, now, effects)


def _drop_timers(conn: sqlite3.Connection, invocation_id: str) -> None:
    conn.execute("DELETE FROM timers WHERE invocation_id=?", (invocation_id,))


def deliver_cancel(
    conn: sqlite3.Connection, inv: Invocation, waiting_on: list[int], now: int, effects: Effects
) -> None:
    """Fail the entries a started invocation waits on with CANCELLED (so its code can
    compensate) and cancel the calls it has not had results from."""
    conn.execute("UPDATE invocations SET interrupt=NULL WHERE id=?", (inv.id,))
    _each_open_call(conn, inv, cancel, now, effects)
    for index in waiting_on:
        add_completion(conn, inv.id, index, {"failure": CANCELLED}, now, effects)


def cancel(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    if inv.status == "completed":
        return
    if inv.status in ("scheduled", "pending") or inv.attempts == 0:
        # Never ran (also: ready or paused before a first attempt): nothing to compensate.
        _drop_timers(conn, inv.id)
        complete(conn, inv, {"failure": CANCELLED}, now, effects)
        return
    if inv.status == "suspended":
        deliver_cancel(conn, inv, inv.waiting_on, now, effects)
        return
    # running, ready, backing-off, paused: delivered (with its calls cancelled) when an attempt
    # suspends (end_attempt). A pause asked before stays asked, but the cancel comes first.
    conn.execute("UPDATE invocations SET interrupt='cancel' WHERE id=?", (inv.id,))
    if inv.status == "paused":  # it must run to see the cancellation
        conn.execute("UPDATE invocations SET retry_count=0 WHERE id=?", (inv.id,))
        enqueue(conn, inv, now, effects)


def kill(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    if inv.status == "completed":
        return
    _drop_timers(conn, inv.id)
    complete(conn, inv, {"failure": KILLED}, now, effects)
    _each_open_call(conn, inv, kill, now, effects)  # after: their ends must not wake it


def pause(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    step = pausing(inv)
    if step == "when-attempt-ends":
        conn.execute(
            "UPDATE invocations SET interrupt='pause' WHERE id=? AND interrupt IS NULL", (inv.id,)
        )
    elif step == "now":
        park(conn, inv, now, effects)


def park(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    """Pause ``inv``. It keeps its place on its object key: an exclusive handler may have made
    half of its state changes, and the next one must not see them half-made."""
    conn.execute(
        "UPDATE invocations SET status='paused', interrupt=NULL, modified_at=? WHERE id=?",
        (now, inv.id),
    )


def purge(conn: sqlite3.Connection, inv: Invocation) -> None:
    check_purgeable(inv)
    for table in ("journal", "completions", "callers", "timers", "promise_waiters"):
        conn.execute(f"DELETE FROM {table} WHERE invocation_id=?", (inv.id,))
    conn.execute("DELETE FROM callers WHERE caller_id=?", (inv.id,))  # results it still awaited
    if inv.idempotency_key is not None:
        scope = idempotency_scope(inv.service, inv.key, inv.handler, inv.idempotency_key)
        cur = conn.execute(
            "DELETE FROM idempotency WHERE scope=? AND invocation_id=?", (scope, inv.id)
        )
        if cur.rowcount and inv.idempotency_key == "" and inv.key is not None:
            clear_workflow(conn, inv.service, inv.key)  # unless a newer run has the key now
    conn.execute("DELETE FROM invocations WHERE id=?", (inv.id,))


def timeline(conn: sqlite3.Connection, invocation_id: str) -> list[JournalEntry]:
    rows = conn.execute(
        "SELECT j.idx, j.command, j.created_at, c.completion, c.created_at FROM journal j "
        "LEFT JOIN completions c ON c.invocation_id=j.invocation_id AND c.idx=j.idx "
        "WHERE j.invocation_id=? ORDER BY j.idx",
        (invocation_id,),
    )
    return [
        JournalEntry(r[0], json.loads(r[1]), r[2], json.loads(r[3]) if r[3] else None, r[4])
        for r in rows
    ]


def edit_state(
    conn: sqlite3.Connection,
    service: str,
    key: str,
    set_values: dict[str, Any],
    clear: list[str],
    clear_all: bool,
) -> dict[str, Any]:
    holding = holder(conn, service, key)
    if holding is not None:
        raise key_in_use(service, key, holding)
    if clear_all:
        conn.execute("DELETE FROM state WHERE service=? AND key=?", (service, key))
    for name in clear:
        conn.execute("DELETE FROM state WHERE service=? AND key=? AND name=?", (service, key, name))
    for name, value in set_values.items():
        conn.execute(
            "INSERT INTO state (service, key, name, value) VALUES (?,?,?,?) "
            "ON CONFLICT DO UPDATE SET value=excluded.value",
            (service, key, name, dumps(value)),
        )
    return load_state(conn, service, key)


# One processor per command kind that has consequences in the store.


def _no_effect(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    return None


def _on_sleep(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    fx.timers.append(add_timer(conn, command["wake_at"], "sleep", inv.id, index))


def _on_set_state(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    conn.execute(
        "INSERT INTO state (service, key, name, value) VALUES (?,?,?,?) "
        "ON CONFLICT DO UPDATE SET value=excluded.value",
        (inv.service, inv.key, command["name"], dumps(command["value"])),
    )


def _on_clear_state(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    conn.execute(
        "DELETE FROM state WHERE service=? AND key=? AND name=?",
        (inv.service, inv.key, command["name"]),
    )


def _on_clear_all_state(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    conn.execute("DELETE FROM state WHERE service=? AND key=?", (inv.service, inv.key))


def _on_complete_awakeable(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    awk_id = command["awakeable_id"]
    outcome = complete_awakeable(conn, awk_id, command["completion"], now, fx)
    result: Completion = {"value": None}
    if outcome == "already-completed":
        result = {"failure": {"code": 409, "message": f"awakeable {awk_id} was already completed"}}
    elif outcome == "not-found":
        result = {"failure": {"code": 404, "message": f"no awakeable {awk_id}"}}
    add_completion(conn, inv.id, index, result, now, fx)


def _on_get_promise(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    row = conn.execute(
        "SELECT completion FROM promises WHERE service=? AND key=? AND name=?",
        (inv.service, inv.key, command["name"]),
    ).fetchone()
    if row is not None:
        add_completion(conn, inv.id, index, json.loads(row[0]), now, fx)
    else:
        conn.execute(
            "INSERT OR IGNORE INTO promise_waiters VALUES (?,?,?,?,?)",
            (inv.service, inv.key, command["name"], inv.id, index),
        )


def _on_complete_promise(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    name, completion = command["name"], command["completion"]
    cur = conn.execute(
        "INSERT INTO promises (service, key, name, completion, created_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        (inv.service, inv.key, name, dumps(completion), now),
    )
    if cur.rowcount == 0:
        failure: Failure = {"code": 409, "message": f"promise {name!r} was already completed"}
        add_completion(conn, inv.id, index, {"failure": failure}, now, fx)
        return
    waiters = conn.execute(
        "DELETE FROM promise_waiters WHERE service=? AND key=? AND name=? "
        "RETURNING invocation_id, idx",
        (inv.service, inv.key, name),
    ).fetchall()
    for waiter_id, waiter_index in waiters:
        add_completion(conn, waiter_id, waiter_index, completion, now, fx)
    add_completion(conn, inv.id, index, {"value": None}, now, fx)


def _on_attach(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    try:
        target = load(conn, command["invocation_id"])
    except KeyError:
        failure: Failure = {"code": 404, "message": f"no invocation {command['invocation_id']}"}
        add_completion(conn, inv.id, index, {"failure": failure}, now, fx)
        return
    fx.merge(attach(conn, target, inv.id, index, now))


def _on_cancel_invocation(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    try:
        target = load(conn, command["invocation_id"])
    except KeyError:
        return
    cancel(conn, target, now, fx)


_Processor = Callable[[sqlite3.Connection, Invocation, int, Command, int, Effects], None]
_PROCESSORS: dict[str, _Processor] = {
    "sleep": _on_sleep,
    "set_state": _on_set_state,
    "clear_state": _on_clear_state,
    "clear_all_state": _on_clear_all_state,
    "complete_awakeable": _on_complete_awakeable,
    "get_promise": _on_get_promise,
    "complete_promise": _on_complete_promise,
    "attach": _on_attach,
    "cancel_invocation": _on_cancel_invocation,
}
