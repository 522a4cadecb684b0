"""What `tarry dev` says when it cannot start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess, free_port

pytestmark = pytest.mark.integration

GREETER = str(ROOT / "examples" / "greeter.py")


def _dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tarry.runtime.cli", "dev", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )  # fmt: skip


def test_a_second_runtime_on_the_same_data_dir_refuses_to_start(
    tarry_dev: type[TarryProcess],
) -> None:
    first = tarry_dev(GREETER).start()
    second = _dev(
        GREETER, "--data-dir", str(first.data_dir),
        "--ingress-port", str(free_port()), "--admin-port", str(free_port()),
    )  # fmt: skip
    assert second.returncode != 0
    assert "another tarry process is using" in second.stderr
    assert httpx.post(f"{first.ingress}/Greeter/greet", json="A").json() == "Hello A!"


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _dev(
            GREETER, "--data-dir", str(tmp_path),
            "--ingress-port", str(port), "--admin-port", str(free_port()),
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--ingress-port" in result.stderr
    assert "tarry: ingress on" not in result.stderr  # no banner for a runtime that is not up


def test_an_app_without_services_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    result = _dev(str(empty), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "defines no Service, VirtualObject or Workflow" in result.stderr
    missing = _dev(str(tmp_path / "nope.py"), "--data-dir", str(tmp_path / "d"))
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
