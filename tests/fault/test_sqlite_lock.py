"""One runtime per SQLite file, however the file is named: a second runtime on a symlink or a
hard link to a database another runtime uses refuses to start, naming that runtime's pid; so
does a second store opened on it in the same process (before it opens the file: closing a
descriptor of it would drop the first store's SQLite locks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tarry.runtime.store import StoreError
from tarry.runtime.store.sqlite import SQLiteStore
from tests.conftest import ROOT, TarryProcess, free_port

GREETER = str(ROOT / "examples" / "greeter.py")


def _link(how: str, target: Path, where: Path) -> Path:
    where.mkdir()
    link = where / "elsewhere.db"
    if how == "symlink":
        link.symlink_to(target)
    else:
        os.link(target, link)
    return link


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_a_second_runtime_on_a_link_to_the_database_refuses_to_start(
    tarry_dev: type[TarryProcess], tmp_path: Path, how: str
) -> None:
    first = tarry_dev(GREETER).start()
    assert first.proc is not None
    link = _link(how, first.data_dir / "tarry.db", tmp_path / "other")
    second = subprocess.run(
        [sys.executable, "-m", "tarry.runtime.cli", "dev", GREETER,
         "--store", f"sqlite:///{link}",
         "--ingress-port", str(free_port()), "--admin-port", str(free_port())],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1, second.stderr
    [line] = second.stderr.strip().splitlines()
    assert "another tarry process is using the database" in line
    assert f"(pid {first.proc.pid})" in line
    assert line.startswith("Error: Invalid value for --store: ")  # the option the user gave
    assert httpx.post(f"{first.ingress}/Greeter/greet", json="A").json() == "Hello A!"


@pytest.mark.parametrize("how", ["symlink", "hard link"])
async def test_a_second_store_on_a_link_to_the_database_is_refused(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "tarry.db"
    first = SQLiteStore(db)
    link = _link(how, db, tmp_path / "other")
    try:
        with pytest.raises(StoreError) as caught:
            SQLiteStore(link)
        assert f"of this process (pid {os.getpid()}) is using the database {link}" in str(
            caught.value
        )
    finally:
        await first.close()
    second = SQLiteStore(link)  # once the first is closed, it may
    await second.close()
