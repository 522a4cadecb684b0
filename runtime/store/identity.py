"""A runtime's identity on a store several processes share: a name one live process holds at a
time and keeps across its restarts, so that a restarted process takes over the attempts its
killed predecessor was running at once, instead of waiting for their leases to lapse.

What was decided, and why:

- **Held exclusively.** The identity is a random name kept in a file in the runtime's data dir
  (``tarry dev --data-dir``), on which the process holds an exclusive ``flock`` for as long as
  it runs. The kernel drops the lock when the process ends, however it ends (SIGKILL included),
  so while one process holds the lock no other live process has the identity: an attempt owned
  by another *incarnation* of it was started by a process that is gone.
- **Owner = identity # incarnation.** The DynamoDB store leases each attempt to
  ``IDENTITY#INCARNATION`` (the incarnation is host, pid and a random part, the whole owner of
  a process without an identity). At recovery, and in its sweeps for one lease's length after,
  a process makes ready every running attempt of its identity but of another incarnation, as
  it would one whose lease lapsed. It never takes its own incarnation's attempts.
- **Fencing is unchanged.** Taking over is the same versioned write a lapsed lease gets, and
  the next attempt has a higher epoch: a write the old incarnation had in flight when it died,
  landing late, is rejected (:class:`~.base.StaleEpoch`), as after any take-over.
- **The host is part of it.** A data dir copied to another machine (an image, a restored
  backup) would otherwise give two live processes one identity, each holding its own machine's
  lock. Were it to happen anyway (two machines of one hostname), a live attempt would be taken
  over early: its writes fenced off and the attempt run again from its journal, as when a
  paused process outlives its lease; no invariant depends on the identity being unique.
- **Otherwise, as before.** Where no identity can be held (``tarry serve``, a Lambda worker,
  a data dir another running process holds, one that cannot be written), the process has none:
  what it leaves running is taken over when its leases lapse.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> held = RuntimeIdentity.hold(d)
>>> RuntimeIdentity.hold(d)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tarry.runtime.store.identity.IdentityHeld: another process (pid ...) holds the identity in ...
>>> held.close(); again = RuntimeIdentity.hold(d); again.name == held.name
True
>>> again.close()
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import socket
from pathlib import Path

from .sqlite_file import _lock_holder

FILE = "runtime-identity"  # in the data dir
_NAME = re.compile(r"[0-9a-f]{16}")


class IdentityHeld(Exception):
    """No identity could be held in the directory: another process has it, or the file cannot
    be made. The message says which."""


class RuntimeIdentity:
    """The identity in a directory, held (locked) until :meth:`close` or the process ends."""

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self.name = name

    @classmethod
    def hold(cls, directory: Path) -> RuntimeIdentity:
        """Lock ``directory``'s identity file (made, with a new name, if there is none);
        :class:`IdentityHeld` if another process holds it or it cannot be used."""
        path = directory / FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise IdentityHeld(f"cannot use {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(os.fstat(fd)) if isinstance(exc, BlockingIOError) else None
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                by = f" (pid {holder})" if holder is not None else ""
                raise IdentityHeld(f"another process{by} holds the identity in {path}") from None
            raise IdentityHeld(f"cannot lock {path}: {exc.strerror}") from None
        try:
            name = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if not _NAME.fullmatch(name):  # new, or torn by a crash while it was written
                name = secrets.token_hex(8)
                os.ftruncate(fd, 0)
                os.pwrite(fd, name.encode() + b"\n", 0)
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise IdentityHeld(f"cannot use {path}: {exc.strerror}") from None
        host = socket.gethostname().replace("#", "_")
        return cls(fd, f"{host}/{name}")

    def close(self) -> None:
        """Let the identity go (another process may hold it from now on)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = ["FILE", "IdentityHeld", "RuntimeIdentity"]
