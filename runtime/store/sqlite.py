"""The embedded store: SQLite in WAL mode with ``synchronous=FULL`` (a commit survives power
loss), one writer thread with group commit.

Every operation is a function run on the writer thread inside a savepoint; the thread commits
all operations queued at once in one transaction (one fsync for many invocations), then hands
each its own result. An operation that raises is rolled back alone.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tarry.protocol import Command, Completion

from .base import (
    AttemptEnd,
    AttemptStart,
    Created,
    Deployment,
    Effects,
    IdempotencyConflict,
    Invocation,
    NewInvocation,
    StaleEpoch,
    Timer,
)

T = TypeVar("T")

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
    last_failure TEXT
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
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    services TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""

_COLUMNS = (
    "id, service, handler, key, exclusive, status, epoch, attempts, retry_count, journal_length, "
    "headers, idempotency_key, caller_id, caller_index, created_at, modified_at, scheduled_at, "
    "next_retry_at, waiting_on, completion, completed_at, last_failure"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _invocation(row: sqlite3.Row) -> Invocation:
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
    )


def idempotency_scope(service: str, key: str | None, handler: str, idempotency_key: str) -> str:
    return "\x1f".join((service, key or "", handler, idempotency_key))


class _Writer(threading.Thread):
    """Runs operations on one connection; commits everything queued at once together."""

    def __init__(self, path: str) -> None:
        super().__init__(name="tarry-sqlite", daemon=True)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._path = path
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            batch = [self._queue.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in batch)
            work = [item for item in batch if item is not None]
            results: list[tuple[Any, Any, bool]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, fut in work:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(conn)
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((fut, exc, False))
                    else:
                        conn.execute("RELEASE op")
                        results.append((fut, value, True))
                conn.execute("COMMIT")
            except BaseException as exc:  # the commit itself failed: nothing of the batch holds
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                results = [(fut, exc, False) for _, fut in work]
            for fut, value, ok in results:
                loop = fut.get_loop()
                loop.call_soon_threadsafe(_settle, fut, value, ok)
            if stop:
                conn.close()
                return

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._queue.put(None)

    def wait_ready(self) -> None:
        self._ready.wait()
        if self._error is not None:
            raise self._error


def _settle(fut: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class SQLiteStore:
    """The :class:`~tarry.runtime.store.Store` on one SQLite file."""

    ordered_writes = True  # one writer thread takes operations first come, first served

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._writer = _Writer(self.path)
        self._writer.start()
        self._writer.wait_ready()

    async def _do(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.submit(fn)

    async def close(self) -> None:
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)

    # -- invocations -------------------------------------------------------------------------

    async def create(self, new: NewInvocation, now: int, start: bool = False) -> Created:
        def op(conn: sqlite3.Connection) -> Created:
            effects = Effects()
            if new.idempotency_key is not None:
                existing = _claim_idempotency(conn, new, now)
                if existing is not None:
                    if new.caller_id is not None and new.caller_index is not None:
                        effects.merge(_attach(conn, existing, new.caller_id, new.caller_index, now))
                    return Created(existing, True, effects)
            _insert(conn, new, now, effects)
            if start and new.id in effects.ready:
                effects.ready.remove(new.id)
                started = _start(conn, new.id, now)
                assert started is not None
                return Created(started.invocation, False, effects, started)
            return Created(_get(conn, new.id), False, effects)

        return await self._do(op)

    async def start_attempt(self, invocation_id: str, now: int) -> AttemptStart | None:
        return await self._do(lambda conn: _start(conn, invocation_id, now))

    async def append(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        now: int,
    ) -> Effects:
        def op(conn: sqlite3.Connection) -> Effects:
            inv = _fenced(conn, invocation_id, epoch)
            effects = Effects()
            _apply(conn, inv, commands, completions, children, now, effects)
            conn.execute(
                "UPDATE invocations SET retry_count=0, modified_at=? WHERE id=?",
                (now, invocation_id),
            )
            return effects

        return await self._do(op)

    async def end_attempt(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        end: AttemptEnd,
        now: int,
    ) -> Effects:
        def op(conn: sqlite3.Connection) -> Effects:
            inv = _fenced(conn, invocation_id, epoch)
            effects = Effects()
            grew = _apply(conn, inv, commands, completions, children, now, effects)
            if grew:
                conn.execute("UPDATE invocations SET retry_count=0 WHERE id=?", (invocation_id,))
            if end.kind == "completed":
                assert end.completion is not None
                _complete(conn, _get(conn, invocation_id), end.completion, now, effects)
            elif end.kind == "suspended":
                done = {
                    r[0]
                    for r in conn.execute(
                        "SELECT idx FROM completions WHERE invocation_id=?", (invocation_id,)
                    )
                }
                if any(i in done for i in end.waiting_on):
                    _set_status(conn, invocation_id, "ready", now)
                    effects.ready.append(invocation_id)
                else:
                    conn.execute(
                        "UPDATE invocations SET status='suspended', waiting_on=?, modified_at=? "
                        "WHERE id=?",
                        (_dumps(list(end.waiting_on)), now, invocation_id),
                    )
            elif end.kind == "ready":
                _set_status(conn, invocation_id, "ready", now)
                effects.ready.append(invocation_id)
            elif end.kind == "backing-off":
                assert end.retry_at is not None
                conn.execute(
                    "UPDATE invocations SET status='backing-off', next_retry_at=?, "
                    "retry_count=retry_count+1, last_failure=?, modified_at=? WHERE id=?",
                    (end.retry_at, end.failure, now, invocation_id),
                )
                effects.timers.append(_add_timer(conn, end.retry_at, "retry", invocation_id, 0))
            elif end.kind == "paused":
                conn.execute(
                    "UPDATE invocations SET status='paused', retry_count=retry_count+1, "
                    "last_failure=?, modified_at=? WHERE id=?",
                    (end.failure, now, invocation_id),
                )
                if inv.exclusive and inv.key is not None:
                    _release(conn, inv, now, effects)
            return effects

        return await self._do(op)

    async def fire_timer(self, timer: Timer, now: int) -> Effects:
        def op(conn: sqlite3.Connection) -> Effects:
            effects = Effects()
            if timer.fire_at > now:  # never early
                effects.timers.append(timer)
                return effects
            cur = conn.execute(
                "DELETE FROM timers WHERE invocation_id=? AND kind=? AND idx=?",
                (timer.invocation_id, timer.kind, timer.index),
            )
            if cur.rowcount == 0:  # already fired
                return effects
            if timer.kind == "sleep":
                _add_completion(
                    conn, timer.invocation_id, timer.index, {"value": None}, now, effects
                )
            elif timer.kind == "start":
                inv = _get(conn, timer.invocation_id)
                if inv.status == "scheduled":
                    _enqueue(conn, inv, now, effects)
            elif timer.kind == "retry":
                cur = conn.execute(
                    "UPDATE invocations SET status='ready', next_retry_at=NULL, modified_at=? "
                    "WHERE id=? AND status='backing-off'",
                    (now, timer.invocation_id),
                )
                if cur.rowcount:
                    effects.ready.append(timer.invocation_id)
            return effects

        return await self._do(op)

    async def resume(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        def op(conn: sqlite3.Connection) -> tuple[Invocation, Effects] | None:
            effects = Effects()
            try:
                inv = _get(conn, invocation_id)
            except KeyError:
                return None
            if inv.status == "paused":
                conn.execute("UPDATE invocations SET retry_count=0 WHERE id=?", (invocation_id,))
                _enqueue(conn, inv, now, effects)
                inv = _get(conn, invocation_id)
            return inv, effects

        return await self._do(op)

    async def timers(self) -> list[Timer]:
        def op(conn: sqlite3.Connection) -> list[Timer]:
            rows = conn.execute("SELECT fire_at, kind, invocation_id, idx FROM timers")
            return [Timer(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._do(op)

    async def recover(self, now: int) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "UPDATE invocations SET status='ready', modified_at=? WHERE status='running'",
                (now,),
            )
            rows = conn.execute("SELECT id FROM invocations WHERE status='ready' ORDER BY seq")
            return [r[0] for r in rows]

        return await self._do(op)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, invocation_id: str) -> Invocation | None:
        def op(conn: sqlite3.Connection) -> Invocation | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM invocations WHERE id=?", (invocation_id,)
            ).fetchone()
            return _invocation(row) if row else None

        return await self._do(op)

    async def list_invocations(
        self, service: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Invocation]:
        def op(conn: sqlite3.Connection) -> list[Invocation]:
            where, args = [], []
            if service is not None:
                where.append("service=?")
                args.append(service)
            if status is not None:
                where.append("status=?")
                args.append(status)
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM invocations {clause} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            )
            return [_invocation(r) for r in rows]

        return await self._do(op)

    async def journal(self, invocation_id: str) -> tuple[list[Command], dict[str, Completion]]:
        return await self._do(lambda conn: _journal(conn, invocation_id))

    async def state(self, service: str, key: str) -> dict[str, Any]:
        return await self._do(lambda conn: _state(conn, service, key))

    async def put_deployment(self, deployment: Deployment) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO deployments (id, uri, services, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT (uri) DO UPDATE SET services=excluded.services",
                (deployment.id, deployment.uri, _dumps(deployment.services), deployment.created_at),
            )

        await self._do(op)

    async def deployments(self) -> list[Deployment]:
        def op(conn: sqlite3.Connection) -> list[Deployment]:
            rows = conn.execute(
                "SELECT id, uri, services, created_at FROM deployments ORDER BY created_at"
            )
            return [Deployment(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

        return await self._do(op)


# -- operations inside a transaction (writer thread only) -------------------------------------


def _get(conn: sqlite3.Connection, invocation_id: str) -> Invocation:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM invocations WHERE id=?", (invocation_id,)
    ).fetchone()
    if row is None:
        raise KeyError(invocation_id)
    return _invocation(row)


def _start(conn: sqlite3.Connection, invocation_id: str, now: int) -> AttemptStart | None:
    cur = conn.execute(
        "UPDATE invocations SET status='running', epoch=epoch+1, attempts=attempts+1, "
        "modified_at=? WHERE id=? AND status='ready'",
        (now, invocation_id),
    )
    if cur.rowcount == 0:
        return None
    inv = _get(conn, invocation_id)
    commands, completions = _journal(conn, invocation_id)
    state = _state(conn, inv.service, inv.key) if inv.key is not None else None
    return AttemptStart(inv, commands, completions, state)


def _fenced(conn: sqlite3.Connection, invocation_id: str, epoch: int) -> Invocation:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM invocations WHERE id=?", (invocation_id,)
    ).fetchone()
    inv = _invocation(row) if row else None
    if inv is None or inv.epoch != epoch or inv.status != "running":
        raise StaleEpoch(invocation_id, epoch, inv)
    return inv


def _journal(
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


def _state(conn: sqlite3.Connection, service: str, key: str) -> dict[str, Any]:
    rows = conn.execute("SELECT name, value FROM state WHERE service=? AND key=?", (service, key))
    return {r[0]: json.loads(r[1]) for r in rows}


def _set_status(conn: sqlite3.Connection, invocation_id: str, status: str, now: int) -> None:
    conn.execute(
        "UPDATE invocations SET status=?, modified_at=? WHERE id=?", (status, now, invocation_id)
    )


def _claim_idempotency(conn: sqlite3.Connection, new: NewInvocation, now: int) -> Invocation | None:
    """The invocation an idempotency key already names, or ``None`` after claiming it."""
    assert new.idempotency_key is not None
    scope = idempotency_scope(new.service, new.key, new.handler, new.idempotency_key)
    row = conn.execute(
        "SELECT invocation_id, request_hash, expires_at FROM idempotency WHERE scope=?", (scope,)
    ).fetchone()
    if row is not None:
        expired = row["expires_at"] is not None and row["expires_at"] <= now
        if not expired:
            existing = _get(conn, row["invocation_id"])
            if new.request_hash is not None and row["request_hash"] != new.request_hash:
                raise IdempotencyConflict(existing)
            return existing
        conn.execute("DELETE FROM idempotency WHERE scope=?", (scope,))
    conn.execute(
        "INSERT INTO idempotency (scope, invocation_id, request_hash, retention_ms) "
        "VALUES (?,?,?,?)",
        (scope, new.id, new.request_hash, new.retention_ms),
    )
    return None


def _insert(conn: sqlite3.Connection, new: NewInvocation, now: int, effects: Effects) -> None:
    delayed = new.start_at is not None and new.start_at > now
    cur = conn.execute(
        "INSERT INTO invocations (id, service, handler, key, exclusive, status, headers, "
        "idempotency_key, caller_id, caller_index, created_at, modified_at, scheduled_at, "
        "journal_length) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,1) ON CONFLICT (id) DO NOTHING",
        (
            new.id,
            new.service,
            new.handler,
            new.key,
            int(new.exclusive),
            "scheduled",
            _dumps(new.headers),
            new.idempotency_key,
            new.caller_id,
            new.caller_index,
            now,
            now,
            new.start_at if delayed else None,
        ),
    )
    if cur.rowcount == 0:  # created before (a call retried from the same journal entry)
        return
    conn.execute(
        "INSERT INTO journal (invocation_id, idx, command, created_at) VALUES (?,0,?,?)",
        (new.id, _dumps({"kind": "input", "value": new.input}), now),
    )
    if new.caller_id is not None and new.caller_index is not None:
        conn.execute(
            "INSERT OR IGNORE INTO callers VALUES (?,?,?)",
            (new.id, new.caller_id, new.caller_index),
        )
    if new.failure is not None:
        _complete(conn, _get(conn, new.id), {"failure": new.failure}, now, effects)
    elif delayed:
        assert new.start_at is not None
        effects.timers.append(_add_timer(conn, new.start_at, "start", new.id, 0))
    else:
        _enqueue(conn, _get(conn, new.id), now, effects)


def _enqueue(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    """Make a new (or delayed, now due) invocation ready, or queue it behind its object key."""
    if inv.exclusive and inv.key is not None:
        cur = conn.execute(
            "INSERT INTO locks (service, key, invocation_id) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            (inv.service, inv.key, inv.id),
        )
        if cur.rowcount == 0:
            _set_status(conn, inv.id, "pending", now)
            return
    _set_status(conn, inv.id, "ready", now)
    effects.ready.append(inv.id)


def _release(conn: sqlite3.Connection, inv: Invocation, now: int, effects: Effects) -> None:
    """Free the object key ``inv`` held and hand it to the next queued invocation (FIFO)."""
    conn.execute(
        "DELETE FROM locks WHERE service=? AND key=? AND invocation_id=?",
        (inv.service, inv.key, inv.id),
    )
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
        _set_status(conn, row[0], "ready", now)
        effects.ready.append(row[0])


def _add_timer(
    conn: sqlite3.Connection, fire_at: int, kind: str, invocation_id: str, index: int
) -> Timer:
    conn.execute(
        "INSERT OR REPLACE INTO timers (fire_at, kind, invocation_id, idx) VALUES (?,?,?,?)",
        (fire_at, kind, invocation_id, index),
    )
    return Timer(fire_at, kind, invocation_id, index)  # type: ignore[arg-type]


def _add_completion(
    conn: sqlite3.Connection,
    invocation_id: str,
    index: int,
    completion: Completion,
    now: int,
    effects: Effects,
) -> None:
    """Record a completion (the first one wins) and wake the invocation if it waits for it."""
    cur = conn.execute(
        "INSERT INTO completions (invocation_id, idx, completion, created_at) VALUES (?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        (invocation_id, index, _dumps(completion), now),
    )
    if cur.rowcount == 0:
        return
    row = conn.execute(
        "SELECT status, waiting_on FROM invocations WHERE id=?", (invocation_id,)
    ).fetchone()
    if row is not None and row[0] == "suspended" and index in json.loads(row[1]):
        conn.execute(
            "UPDATE invocations SET status='ready', waiting_on='[]', modified_at=? WHERE id=?",
            (now, invocation_id),
        )
        effects.ready.append(invocation_id)


def _attach(
    conn: sqlite3.Connection, inv: Invocation, caller_id: str, caller_index: int, now: int
) -> Effects:
    """Deliver ``inv``'s result to another awaiting journal entry (now, or when it completes)."""
    effects = Effects()
    if inv.completion is not None:
        _add_completion(conn, caller_id, caller_index, inv.completion, now, effects)
    else:
        conn.execute(
            "INSERT OR IGNORE INTO callers VALUES (?,?,?)", (inv.id, caller_id, caller_index)
        )
    return effects


def _complete(
    conn: sqlite3.Connection, inv: Invocation, completion: Completion, now: int, effects: Effects
) -> None:
    conn.execute(
        "UPDATE invocations SET status='completed', completion=?, completed_at=?, modified_at=?, "
        "waiting_on='[]' WHERE id=?",
        (_dumps(completion), now, now, inv.id),
    )
    for caller_id, caller_index in conn.execute(
        "SELECT caller_id, caller_index FROM callers WHERE invocation_id=?", (inv.id,)
    ).fetchall():
        _add_completion(conn, caller_id, caller_index, completion, now, effects)
    if inv.idempotency_key is not None:
        conn.execute(
            "UPDATE idempotency SET expires_at=?+retention_ms WHERE scope=?",
            (now, idempotency_scope(inv.service, inv.key, inv.handler, inv.idempotency_key)),
        )
    if inv.exclusive and inv.key is not None:
        _release(conn, inv, now, effects)
    effects.finished.append(_get(conn, inv.id))


def _apply(
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
    for offset, command in enumerate(commands):
        index = base + offset
        conn.execute(
            "INSERT INTO journal (invocation_id, idx, command, created_at) VALUES (?,?,?,?)",
            (inv.id, index, _dumps(command), now),
        )
        _PROCESSORS.get(command["kind"], _no_effect)(conn, inv, index, command, now, effects)
    if commands:
        conn.execute(
            "UPDATE invocations SET journal_length=? WHERE id=?", (base + len(commands), inv.id)
        )
    for key, completion in completions.items():
        _add_completion(conn, inv.id, int(key), completion, now, effects)
    for child in children:
        if child.idempotency_key is not None:
            existing = _claim_idempotency(conn, child, now)
            if existing is not None:
                if child.caller_id is not None and child.caller_index is not None:
                    effects.merge(_attach(conn, existing, child.caller_id, child.caller_index, now))
                continue
        _insert(conn, child, now, effects)
    return bool(commands or completions)


# One processor per command kind that has consequences in the store.


def _no_effect(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    return None


def _on_sleep(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    fx.timers.append(_add_timer(conn, command["wake_at"], "sleep", inv.id, index))


def _on_set_state(
    conn: sqlite3.Connection, inv: Invocation, index: int, command: Command, now: int, fx: Effects
) -> None:
    conn.execute(
        "INSERT INTO state (service, key, name, value) VALUES (?,?,?,?) "
        "ON CONFLICT DO UPDATE SET value=excluded.value",
        (inv.service, inv.key, command["name"], _dumps(command["value"])),
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


_Processor = Callable[[sqlite3.Connection, Invocation, int, Command, int, Effects], None]
_PROCESSORS: dict[str, _Processor] = {
    "sleep": _on_sleep,
    "set_state": _on_set_state,
    "clear_state": _on_clear_state,
    "clear_all_state": _on_clear_all_state,
}


__all__ = ["SQLiteStore", "idempotency_scope"]
