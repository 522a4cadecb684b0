"""The SQLite store's file: one runtime per file whatever name it is reached by, the file stays
the one opened, and what SQLite says when the disk fails, in the store's own errors.

- **One runtime per file.** The store holds an exclusive ``flock`` on the database file itself,
  not on a lock file named after the path: a symlink or a hard link to the file reaches the same
  inode, so the same lock. (SQLite's own locks are POSIX record locks, which ``flock`` does not
  touch on Linux or macOS.)
- **The file stays the file.** Before every commit the store compares what the path names now
  with the file it opened (device and inode). A file deleted, or another moved over it, would
  take every later write with it: the store refuses them, and everything else, with
  :class:`~.base.StoreLost` until the runtime is restarted.
- **Faults.** A full or read-only disk, an I/O error, a corrupt file: SQLite's error becomes
  :class:`~.base.StoreUnavailable` naming the problem (HTTP 503 with ``Retry-After``); a lock
  held by a connection from outside tarry, :class:`~.base.StoreBusy`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from .base import StoreBusy, StoreError, StoreLost, StoreUnavailable

log = logging.getLogger("tarry.runtime.store")

# What each of SQLite's primary result codes means for the runtime's user.
_FAULTS: dict[int, str] = {
    sqlite3.SQLITE_FULL: "the disk the database is on is full",
    sqlite3.SQLITE_IOERR: "the disk failed to read or write the database (an I/O error)",
    sqlite3.SQLITE_READONLY: "the database cannot be written (it or its disk is read-only)",
    sqlite3.SQLITE_PERM: "the database cannot be written (permission denied)",
    sqlite3.SQLITE_CANTOPEN: "the database's files cannot be opened",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt",
    sqlite3.SQLITE_NOTADB: "the database file is not a SQLite database (overwritten?)",
}
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

# The files (device, inode) a store of this process has open. A second store on one of them is
# refused before it opens the file: closing any descriptor of a file drops every POSIX lock this
# process holds on it, SQLite's own included (see "How To Corrupt An SQLite Database File").
_OPEN: set[tuple[int, int]] = set()


def store_error(exc: sqlite3.Error) -> StoreError | None:
    """The store's error for what SQLite raised, if it is a fault of the disk or the file
    (``None`` for anything else: a mistake in a statement is not the disk's)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in _BUSY:
        return StoreBusy(f"the database is locked by a connection from outside tarry ({exc})")
    fault = _FAULTS.get(primary)
    if fault is None:
        return None
    return StoreUnavailable(f"{fault} (SQLite: {exc})")


def opening_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one-line error for a database SQLite could not open or set up."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    fault = _FAULTS.get(primary, "SQLite could not open it")
    if primary in _BUSY:
        fault = "another program holds a lock on it"
    return StoreError(f"cannot use the database {path}: {fault} (SQLite: {exc})")


class DatabaseFile:
    """The database file, opened and locked for this runtime alone; :meth:`check` before each
    commit says whether the path still names it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(OSError):
            there = os.stat(path)
            if (there.st_dev, there.st_ino) in _OPEN:
                raise StoreError(
                    f"another store of this process (pid {os.getpid()}) is using the database "
                    f"{path}; close it first"
                )
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except IsADirectoryError:
            raise StoreError(f"cannot use the database {path}: it is a directory") from None
        except OSError as exc:
            raise StoreError(f"cannot open the database {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(os.fstat(self._fd))
            os.close(self._fd)
            by = f" (pid {holder})" if holder is not None else ""
            raise StoreError(
                f"another tarry process is using the database {path}{by}; stop it first"
            ) from None
        except OSError as exc:
            os.close(self._fd)
            raise StoreError(f"cannot lock the database {path}: {exc.strerror}") from None
        opened = os.fstat(self._fd)
        self._identity = (opened.st_dev, opened.st_ino)
        _OPEN.add(self._identity)
        self._lost: str | None = None

    def check(self) -> None:
        """:class:`StoreLost` if the path no longer names the file opened (deleted, or another
        moved over it); once lost, always lost."""
        if self._lost is None:
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                self._lost = "removed"
            except OSError:
                return  # the path cannot be looked at now (its directory?); the file stands
            else:
                if (now.st_dev, now.st_ino) != self._identity:
                    self._lost = "replaced by another file"
            if self._lost is None:
                return
            log.error(
                "the database %s was %s while the runtime ran; nothing more is stored until "
                "the runtime is restarted", self.path, self._lost,
            )  # fmt: skip
        raise StoreLost(
            f"the database file was {self._lost} while the runtime ran: what it stored now "
            "would be lost, so it stores nothing; restart the runtime"
        )

    def close(self) -> None:
        """Close the file, and with it the lock (again: nothing)."""
        if self._fd >= 0:
            _OPEN.discard(self._identity)
            os.close(self._fd)
            self._fd = -1


def _lock_holder(st: os.stat_result) -> int | None:
    """The process holding the ``flock`` on the file ``st`` describes, as Linux's /proc/locks
    tells (``None`` elsewhere, or if it does not say). Its lines read
    ``1: FLOCK  ADVISORY  WRITE 4242 fe:01:1234567 0 EOF`` (device in hex, inode in decimal)."""
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file:  # not "->" waiters
            try:
                return int(fields[4])
            except ValueError:
                return None
    return None


__all__ = ["DatabaseFile", "opening_error", "store_error"]
