"""SIGKILL the handler's process in the middle of a step, start it again, and check each step
against what it must have done: a step whose result was stored never runs again; a plain step
interrupted before its result was stored runs again; an at-most-once step interrupted so does
not, and its handler sees StepInterrupted.

Each test stops six steps at once (plain and at most once, at each of three points: while the
body runs, after it returned and before its result is appended, after the append), kills the
process once they all stand there, and restarts it. The points are exact: the test app
(tests/apps/killpoints.py) waits at each until the kill. Behind HTTP the handler is a uvicorn
process and the runtime (`tarry serve`) stays up; in-process (`tarry dev`) both die together.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS, ROOT, TarryProcess, wait_for

pytestmark = pytest.mark.fault

POINTS = ("body", "before-store", "after-store")
# What each step must have done, (point, at most once) -> (its handler's answer, body runs).
EXPECTED = {
    ("body", False): ("stored", 2),  # killed mid-body: run again
    ("before-store", False): ("stored", 2),  # ran, result lost: run again
    ("after-store", False): ("stored", 1),  # stored: never again
    ("body", True): ("interrupted", 1),  # not run again: the handler is told
    ("before-store", True): ("interrupted", 1),
    ("after-store", True): ("stored", 1),
}


class Uvicorn(TarryProcess):
    """The test app behind HTTP, as a real process on a port of its own, killable (SIGKILL)
    and restartable on the same port (the runtime knows the deployment by its URL)."""

    @property
    def url(self) -> str:
        return self.ingress

    def start(self) -> Uvicorn:
        log = self.data_dir / f"uvicorn-{len(self.logs)}.log"
        self.logs.append(log)
        cmd = [sys.executable, "-m", "uvicorn", "tests.apps.killpoints:app",
               "--port", str(self.ingress_port), "--log-level", "warning"]  # fmt: skip
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env=self.env)  # fmt: skip
        wait_for(f"{self.url}/discover", self.proc, log)
        return self


@pytest.fixture
def kill_dir(tmp_path: Path) -> Path:
    path = tmp_path / "kill"
    path.mkdir()
    (path / "armed").touch()
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def start_steps(runtime: TarryProcess) -> dict[tuple[str, bool], str]:
    """Send the six steps; their invocation ids."""
    ids = {}
    for point in POINTS:
        for once in (False, True):
            sent = httpx.post(f"{runtime.ingress}/KillPoints/step/send",
                              json={"point": point, "once": once}, timeout=10)  # fmt: skip
            assert sent.status_code == 202, sent.text
            ids[point, once] = sent.json()["invocationId"]
    return ids


def wait_stopped(kill_dir: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(lines(kill_dir / "stopped")) < count:
        assert time.monotonic() < deadline, f"stopped: {lines(kill_dir / 'stopped')}"
        time.sleep(0.02)


def assert_outcomes(
    runtime: TarryProcess, kill_dir: Path, ids: dict[tuple[str, bool], str]
) -> None:
    bodies = lines(kill_dir / "bodies")
    for (point, once), invocation_id in ids.items():
        answer, runs = EXPECTED[point, once]
        inv = runtime.wait_status(invocation_id, "completed", timeout=45)
        label = f"{point}/{'once' if once else 'plain'}"
        assert inv["completion"] == {"value": answer}, (label, inv)
        assert lines(kill_dir / "bodies").count(label) == runs, (label, bodies)


@pytest.fixture
def serve_store(store_args: list[str], tmp_path: Path) -> list[str]:
    """`tarry serve`'s store: the SQLite file it needs named, or the DynamoDB table."""
    return store_args or ["--store", f"sqlite:///{tmp_path / 'serve.db'}"]


def test_a_handler_behind_http_killed_mid_step(
    serve_store: list[str], kill_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "serve"
    data.mkdir()
    runtime = TarryProcess(["serve", *serve_store, "--max-attempts", "1000"], data)
    handler = Uvicorn([], tmp_path, {"KILL_DIR": str(kill_dir)})
    try:
        runtime.start()
        handler.start()
        registered = runtime.cli("deployments", "register", handler.url)
        assert registered.returncode == 0, registered.stderr
        ids = start_steps(runtime)
        wait_stopped(kill_dir, len(ids))
        handler.kill()  # the runtime stays up: its attempts fail, and it retries them
        (kill_dir / "armed").unlink()
        handler.start()
        assert_outcomes(runtime, kill_dir, ids)
    finally:
        handler.stop()
        runtime.stop()


def test_tarry_dev_killed_mid_step(
    tarry_dev: type[TarryProcess], store_args: list[str], kill_dir: Path
) -> None:
    """Runtime and handler in one process: the kill takes both, the restart resumes both."""
    p = tarry_dev(str(APPS / "killpoints.py"), *store_args, env={"KILL_DIR": str(kill_dir)})
    p.start()
    ids = start_steps(p)
    wait_stopped(kill_dir, len(ids))
    p.kill()
    (kill_dir / "armed").unlink()
    p.start()
    assert_outcomes(p, kill_dir, ids)


@pytest.fixture(autouse=True)
def _no_stray(kill_dir: Path) -> Iterator[None]:
    yield
    (kill_dir / "armed").unlink(missing_ok=True)  # a failed test leaves no step waiting
