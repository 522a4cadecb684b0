"""Real faults under a SQLite store, for the fault tests: a full disk, a database that cannot be
written, a corrupt file. Each is what SQLite itself reports, not an exception raised in its
place:

- a **full disk**: a tmpfs of a few MiB filled to the last block (real ENOSPC; needs root to
  mount, skipped elsewhere), or SQLite's ``max_page_count`` held at the size the database has
  (SQLITE_FULL from SQLite's own allocator, on any machine: only writes that grow the file fail);
- **read-only**: ``PRAGMA query_only`` on the store's connection (SQLITE_READONLY on every write;
  root ignores file modes, and a filesystem with files open for writing cannot be remounted
  read-only, so this is how a running store is made unwritable);
- **corrupt**: pages of a closed database overwritten with noise (SQLITE_CORRUPT when read).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tarry.runtime.store.sqlite import SQLiteStore


@contextlib.contextmanager
def small_disk(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only: the test skips elsewhere)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Fill the filesystem ``disk`` is on to its last block; the filler, to remove."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                out.write(block)
    assert os.statvfs(disk).f_bavail == 0
    return filler


async def writer_connection(store: SQLiteStore) -> sqlite3.Connection:
    """The store's own connection, its writer's: the one that reads and writes. A PRAGMA on
    it from the test's thread is safe (SQLite serializes calls on one connection), and works
    where an operation of the store no longer can (one that is read-only begins no write)."""

    def op(conn: sqlite3.Connection) -> sqlite3.Connection:
        return conn

    return await store._do(op)


def hold_size(conn: sqlite3.Connection) -> int:
    """Let the database grow no more: SQLite answers SQLITE_FULL to a write that needs a page.
    Returns the limit it had, for :func:`let_grow`."""
    limit: int = conn.execute("PRAGMA max_page_count").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    return limit


def let_grow(conn: sqlite3.Connection, limit: int) -> None:
    conn.execute(f"PRAGMA max_page_count={limit}")


def corrupt_table(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in the (closed) database with noise."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE type='table' AND name=?", (table,)
        ).fetchone()[0]
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
