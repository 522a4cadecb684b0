"""A runtime's identity file (runtime/store/identity.py): one live process holds it, SIGKILL
lets it go, and it names the same identity every time."""

from __future__ import annotations

import doctest
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tarry.runtime.store import identity
from tarry.runtime.store.identity import FILE, IdentityHeld, RuntimeIdentity

HOLD = """
import sys
from pathlib import Path
from tarry.runtime.store.identity import RuntimeIdentity
held = RuntimeIdentity.hold(Path(sys.argv[1]))
print(held.name, flush=True)
sys.stdin.read()
"""


def test_the_identity_is_made_once_and_kept(tmp_path: Path) -> None:
    held = RuntimeIdentity.hold(tmp_path / "data")  # the directory is made too
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}/[0-9a-f]{{16}}", held.name)
    held.close()
    again = RuntimeIdentity.hold(tmp_path / "data")
    assert again.name == held.name
    again.close()


def test_a_held_identity_is_refused_until_its_process_is_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c", HOLD, str(tmp_path)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            name = holder.stdout.readline().strip()
            with pytest.raises(IdentityHeld, match=f"another process \\(pid {holder.pid}\\) holds"):
                RuntimeIdentity.hold(tmp_path)
        finally:
            holder.send_signal(signal.SIGKILL)  # no cleanup: the kernel drops the lock
            holder.wait(10)
    held = RuntimeIdentity.hold(tmp_path)
    assert held.name == name  # the same identity, for the process that comes after
    held.close()


def test_a_torn_identity_file_is_replaced_by_a_new_identity(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"01234\xff")  # a crash while it was first written
    held = RuntimeIdentity.hold(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{16}\n", (tmp_path / FILE).read_text())
    assert held.name.endswith("/" + (tmp_path / FILE).read_text().strip())
    held.close()


def test_a_directory_that_cannot_be_used_is_said_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(IdentityHeld, match="cannot use"):
        RuntimeIdentity.hold(tmp_path / "file")
    assert os.listdir(tmp_path) == ["file"]


def test_docstring_examples() -> None:
    result = doctest.testmod(identity)
    assert result.attempted > 0 and result.failed == 0
