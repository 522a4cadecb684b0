"""One writer thread with group commit: the SQLite store's engine.

Each operation is a function of the connection, run inside a savepoint; the thread commits every
operation queued at once in one transaction (one fsync for many invocations), then hands each
its own result. An operation that raises is rolled back alone. Operations take effect in the
order they were submitted. Before each commit the thread runs ``check``, which may refuse the
whole batch (the database file is no longer the one opened). A commit that fails (a full disk)
fails every operation of its batch, and the thread goes on with the next.

A commit can also fail after it was carried out (an I/O error reported once the transaction
reached the file): each batch marks the database with a number of its own, and a commit that
failed is read back for it. A batch whose mark is there is answered as committed — its
operations' results stand, what they made ready is acted on — instead of failing writes that
every later read would find done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("tarry.runtime.store.sqlite")

# One row: the mark of the last batch committed.
_MARKS = (
    "CREATE TABLE IF NOT EXISTS writer_mark (id INTEGER PRIMARY KEY CHECK (id = 0), mark INTEGER)"
)


class Writer(threading.Thread):
    """Runs operations on one connection; commits everything queued at once together."""

    def __init__(
        self,
        path: str,
        setup: Callable[[sqlite3.Connection], None],
        check: Callable[[], None] = lambda: None,
        factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        super().__init__(name="tarry-sqlite", daemon=True)
        self._factory = factory
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._path = path
        self._setup = setup
        self._check = check
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, factory=self._factory
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._setup(conn)
            conn.execute(_MARKS)
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
            mark: int | None = None  # set once the batch is about to commit
            try:
                if conn.in_transaction:  # the last batch's rollback failed: try it again
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                changes = conn.total_changes
                for fn, fut in work:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(conn)
                    except BaseException as exc:
                        if not conn.in_transaction:
                            # SQLite rolled the whole transaction back itself (SQLITE_FULL,
                            # SQLITE_IOERR): the batch fails with what broke it
                            raise
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((fut, exc, False))
                    else:
                        conn.execute("RELEASE op")
                        results.append((fut, value, True))
                self._check()
                if conn.total_changes != changes:  # a batch that only read has nothing to lose
                    mark = secrets.randbits(62)
                    conn.execute(
                        "INSERT INTO writer_mark (id, mark) VALUES (0, ?) "
                        "ON CONFLICT (id) DO UPDATE SET mark=excluded.mark",
                        (mark,),
                    )
                conn.execute("COMMIT")
            except BaseException as exc:  # the batch, or its commit, failed
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if mark is not None and _committed(conn, mark):
                    log.warning("a commit reported %r, but it was stored: answered as stored", exc)
                else:  # nothing of the batch holds
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


def _committed(conn: sqlite3.Connection, mark: int) -> bool:
    """Whether the batch marked ``mark`` was stored, though its commit failed: the database, read
    now, holds its mark (False if it cannot be read)."""
    try:
        row = conn.execute("SELECT mark FROM writer_mark WHERE id = 0").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == mark


def _settle(fut: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


__all__ = ["Writer"]
