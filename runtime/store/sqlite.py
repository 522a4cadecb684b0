"""The embedded store: SQLite in WAL mode with ``synchronous=FULL`` (a commit survives power
loss), one writer thread with group commit (:mod:`.sqlite_writer`); the schema and the
in-transaction operations are in :mod:`.sqlite_tx`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tarry.protocol import Command, Completion

from . import sqlite_tx as tx
from .base import (
    UNFINISHED,
    AttemptEnd,
    AttemptStart,
    AwakeableOutcome,
    Created,
    Deployment,
    Effects,
    Invocation,
    JournalEntry,
    NewInvocation,
    StoreError,
    Timer,
)
from .sqlite_file import DatabaseFile, opening_error, store_error
from .sqlite_tx import idempotency_scope
from .sqlite_writer import Writer

T = TypeVar("T")


class SQLiteStore:
    """The :class:`~tarry.runtime.store.Store` on one SQLite file."""

    ordered_writes = True  # one writer thread takes operations first come, first served

    @property
    def journal_table(self) -> str | None:
        return None  # deployments reach it only through the runtime

    def __init__(
        self, path: str | Path, factory: type[sqlite3.Connection] = sqlite3.Connection
    ) -> None:
        """Open (or create) the database at ``path``; :class:`StoreError` with a one-line
        message if it cannot be used, or another runtime uses it (:mod:`.sqlite_file`).
        ``factory``: the class of its connection (``sqlite3.connect``'s)."""
        path = Path(path).absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot make the directory {path.parent}: {exc.strerror}") from None
        self.path = str(path)
        # One runtime per database: two would each drive the same invocations and timers.
        self._file = DatabaseFile(path)
        self._writer = Writer(self.path, tx.setup, self._file.check, factory)
        self._writer.start()
        try:
            self._writer.wait_ready()
        except sqlite3.Error as exc:
            self._file.close()
            raise opening_error(path, exc) from None
        except BaseException:
            self._file.close()
            raise

    async def _do(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._writer.submit(fn)
        except sqlite3.Error as exc:
            fault = store_error(exc)
            if fault is None:
                raise
            raise fault from exc

    async def close(self) -> None:
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)
        self._file.close()

    # -- invocations -------------------------------------------------------------------------

    async def create(self, new: NewInvocation, now: int, start: bool = False) -> Created:
        def op(conn: sqlite3.Connection) -> Created:
            effects = Effects()
            existing = tx.create(conn, new, now, effects)
            if existing is not None:
                return Created(existing, True, effects)
            if start and new.id in effects.ready:
                effects.ready.remove(new.id)
                started = tx.start(conn, new.id, now)
                assert started is not None
                return Created(started.invocation, False, effects, started)
            return Created(tx.load(conn, new.id), False, effects)

        return await self._do(op)

    async def start_attempt(self, invocation_id: str, now: int) -> AttemptStart | None:
        return await self._do(lambda conn: tx.start(conn, invocation_id, now))

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
            inv = tx.fenced(conn, invocation_id, epoch)
            effects = Effects()
            tx.apply(conn, inv, commands, completions, children, now, effects)
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
            inv = tx.fenced(conn, invocation_id, epoch)
            effects = Effects()
            grew = tx.apply(conn, inv, commands, completions, children, now, effects)
            if grew:
                conn.execute("UPDATE invocations SET retry_count=0 WHERE id=?", (invocation_id,))
            if end.kind == "completed":
                assert end.completion is not None
                tx.complete(conn, tx.load(conn, invocation_id), end.completion, now, effects)
            elif inv.interrupt == "pause":
                tx.park(conn, inv, now, effects)
            elif inv.interrupt == "cancel" and end.kind == "suspended":
                tx.set_status(conn, invocation_id, "ready", now)
                effects.ready.append(invocation_id)
                tx.deliver_cancel(conn, inv, list(end.waiting_on), now, effects)
            elif end.kind == "suspended":
                if tx.any_completed(conn, invocation_id, list(end.waiting_on)):
                    tx.set_status(conn, invocation_id, "ready", now)
                    effects.ready.append(invocation_id)
                else:
                    conn.execute(
                        "UPDATE invocations SET status='suspended', waiting_on=?, modified_at=? "
                        "WHERE id=?",
                        (tx.dumps(list(end.waiting_on)), now, invocation_id),
                    )
            elif end.kind == "ready":
                tx.set_status(conn, invocation_id, "ready", now)
                effects.ready.append(invocation_id)
            elif end.kind == "backing-off":
                assert end.retry_at is not None
                conn.execute(
                    "UPDATE invocations SET status='backing-off', next_retry_at=?, "
                    "retry_count=retry_count+1, last_failure=?, modified_at=? WHERE id=?",
                    (end.retry_at, end.failure, now, invocation_id),
                )
                effects.timers.append(tx.add_timer(conn, end.retry_at, "retry", invocation_id, 0))
            elif end.kind == "paused":
                conn.execute(
                    "UPDATE invocations SET status='paused', retry_count=retry_count+1, "
                    "last_failure=?, modified_at=? WHERE id=?",
                    (end.failure, now, invocation_id),
                )  # it keeps its object key (see tx.park)
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
                tx.add_completion(
                    conn, timer.invocation_id, timer.index, {"value": None}, now, effects
                )
            elif timer.kind == "start":
                inv = tx.load(conn, timer.invocation_id)
                if inv.status == "scheduled":
                    tx.enqueue(conn, inv, now, effects)
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
                inv = tx.load(conn, invocation_id)
            except KeyError:
                return None
            if inv.status == "paused":
                conn.execute("UPDATE invocations SET retry_count=0 WHERE id=?", (invocation_id,))
                tx.enqueue(conn, inv, now, effects)
            elif inv.interrupt == "pause":  # resumed before the pause took effect
                conn.execute("UPDATE invocations SET interrupt=NULL WHERE id=?", (invocation_id,))
            return tx.load(conn, invocation_id), effects

        return await self._do(op)

    async def _control(
        self,
        invocation_id: str,
        now: int,
        act: Callable[[sqlite3.Connection, Invocation, int, Effects], None],
    ) -> tuple[Invocation, Effects] | None:
        def op(conn: sqlite3.Connection) -> tuple[Invocation, Effects] | None:
            try:
                inv = tx.load(conn, invocation_id)
            except KeyError:
                return None
            effects = Effects()
            act(conn, inv, now, effects)
            return tx.load(conn, invocation_id), effects

        return await self._do(op)

    async def cancel(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        return await self._control(invocation_id, now, tx.cancel)

    async def kill(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        return await self._control(invocation_id, now, tx.kill)

    async def pause(self, invocation_id: str, now: int) -> tuple[Invocation, Effects] | None:
        return await self._control(invocation_id, now, tx.pause)

    async def purge(self, invocation_id: str, now: int) -> Invocation | None:
        def op(conn: sqlite3.Connection) -> Invocation | None:
            try:
                inv = tx.load(conn, invocation_id)
            except KeyError:
                return None
            tx.purge(conn, inv)
            return inv

        return await self._do(op)

    async def complete_awakeable(
        self, awakeable_id: str, completion: Completion, now: int
    ) -> tuple[AwakeableOutcome, Effects]:
        def op(conn: sqlite3.Connection) -> tuple[AwakeableOutcome, Effects]:
            effects = Effects()
            outcome = tx.complete_awakeable(conn, awakeable_id, completion, now, effects)
            return outcome, effects

        return await self._do(op)

    async def find(
        self, service: str, key: str | None, handler: str, idempotency_key: str, now: int
    ) -> Invocation | None:
        return await self._do(
            lambda conn: tx.find(conn, service, key, handler, idempotency_key, now)
        )

    async def timeline(self, invocation_id: str) -> list[JournalEntry]:
        return await self._do(lambda conn: tx.timeline(conn, invocation_id))

    async def edit_state(
        self,
        service: str,
        key: str,
        set_values: dict[str, Any],
        clear: list[str],
        clear_all: bool,
        now: int,
    ) -> dict[str, Any]:
        return await self._do(
            lambda conn: tx.edit_state(conn, service, key, set_values, clear, clear_all)
        )

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
                f"SELECT {tx.COLUMNS} FROM invocations WHERE id=?", (invocation_id,)
            ).fetchone()
            return tx.invocation(row) if row else None

        return await self._do(op)

    async def list_invocations(
        self, service: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Invocation]:
        def op(conn: sqlite3.Connection) -> list[Invocation]:
            where, args = [], []
            if service is not None:
                where.append("service=?")
                args.append(service)
            if status in ("succeeded", "failed"):
                where.append("status='completed'")
                where.append(
                    f"json_extract(completion, '$.failure') IS {'NOT ' * (status == 'failed')}NULL"
                )
            elif status is not None:
                where.append("status=?")
                args.append(status)
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = conn.execute(
                f"SELECT {tx.COLUMNS} FROM invocations {clause} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            )
            return [tx.invocation(r) for r in rows]

        return await self._do(op)

    async def journal(self, invocation_id: str) -> tuple[list[Command], dict[str, Completion]]:
        return await self._do(lambda conn: tx.load_journal(conn, invocation_id))

    async def state(self, service: str, key: str) -> dict[str, Any]:
        return await self._do(lambda conn: tx.load_state(conn, service, key))

    async def put_deployment(self, deployment: Deployment) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO deployments (id, uri, services, created_at, registered_at, "
                "assume_role_arn) VALUES (?,?,?,?,?,?) ON CONFLICT (uri) DO UPDATE SET "
                "services=excluded.services, registered_at=excluded.registered_at, "
                "assume_role_arn=excluded.assume_role_arn",
                (
                    deployment.id,
                    deployment.uri,
                    tx.dumps(deployment.services),
                    deployment.created_at,
                    deployment.registered_at,
                    deployment.assume_role_arn,
                ),
            )

        await self._do(op)

    async def deployments(self) -> list[Deployment]:
        def op(conn: sqlite3.Connection) -> list[Deployment]:
            rows = conn.execute(
                "SELECT id, uri, services, created_at, registered_at, assume_role_arn "
                "FROM deployments ORDER BY registered_at, created_at"
            )
            return [Deployment(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in rows]

        return await self._do(op)

    async def delete_deployment(self, deployment_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM deployments WHERE id=?", (deployment_id,))
            return cur.rowcount > 0

        return await self._do(op)

    async def deployment_usage(self) -> dict[str, int]:
        marks = ",".join("?" * len(UNFINISHED))

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT deployment_id, count(*) FROM invocations "  # by the status index
                f"WHERE status IN ({marks}) AND deployment_id IS NOT NULL GROUP BY deployment_id",
                UNFINISHED,
            )
            return {r[0]: r[1] for r in rows}

        return await self._do(op)


__all__ = ["SQLiteStore", "idempotency_scope"]
