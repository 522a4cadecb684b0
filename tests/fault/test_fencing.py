"""Fencing: the process running an attempt is frozen (SIGSTOP) in the middle of a step, past the
point where the runtime gives its attempt to another process, which finishes the invocation;
then it wakes up (SIGCONT) and its step returns. None of its writes lands — the store refuses
them by epoch — so the journal has each entry once and in order, the object's state changes
were applied once, and the caller gets one answer: the one the other process produced.

- DynamoDB: two `tarry dev` processes on one table with a 2 s lease; the frozen one's lease
  lapses and the other's sweep takes the attempt over (killed, not frozen, processes are in
  test_dynamodb_processes.py).
- SQLite (one runtime per file): `tarry serve` and two uvicorn processes of the deployment on
  one listening socket; the frozen handler's attempt outlives `--attempt-timeout`, the runtime
  retries it, and the other process accepts the retry (test_timeouts.py has a step that stalls
  in a live process; here the whole process is frozen and another one serves the retry).

The test app (tests/apps/fencing.py) notes every run of a step's body with its process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.fencing import STALLING, STEPS, runs
from tests.conftest import APPS, ROOT, TarryProcess, wait_for

pytestmark = pytest.mark.fault

FENCING = str(APPS / "fencing.py")
STALL = f"step-{STALLING}"


def until(what: str, condition: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll ``condition`` until it is true (bounded); its value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)
    return value


def stalled_in(fence_dir: Path) -> int:
    """The pid of the process whose first run of the stalling step has begun."""
    found = until(
        f"{STALL} began",
        lambda: [pid for step, n, pid in runs(fence_dir) if (step, n) == (STALL, 1)],
    )
    pid: int = found[0]
    return pid


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block; SIGCONT after it, also when it fails."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def what_is_stored(admin: str, invocation_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The invocation with its journal, and the object's state, as the admin API has them."""
    inv = httpx.get(f"{admin}/invocations/{invocation_id}", timeout=10).json()
    state = httpx.get(f"{admin}/state/Fence/k", timeout=10).json()["state"]
    return inv, state


def check_applied_once(stored: tuple[dict[str, Any], dict[str, Any]], frozen_pid: int) -> None:
    """One journal entry per step and state change, in order, and no result of the frozen
    process's stalled run among them (the other process's run of that step stands)."""
    inv, state = stored
    assert inv["status"] == "completed"
    journal = inv["journal"]
    assert [e["index"] for e in journal] == list(range(len(journal)))
    names = [(e["command"]["kind"], e["command"].get("name")) for e in journal[1:-1]]
    expected = []
    for i in range(STEPS):
        expected += [("run", f"step-{i}"), ("set_state", f"step-{i}")]
    expected += [("get_state", "completed"), ("set_state", "completed")]
    assert names == expected
    results = [e["completion"]["value"] for e in journal if e["command"]["kind"] == "run"]
    assert results[STALLING] != f"{STALL} run 1 in {frozen_pid}"
    assert inv["completion"] == {"value": results}
    assert state == {**{f"step-{i}": r for i, r in enumerate(results)}, "completed": 1}


def call(ingress: str) -> httpx.Response:
    return httpx.post(f"{ingress}/Fence/k/run", headers={"idempotency-key": "fenced"}, timeout=90)


def test_a_frozen_process_past_its_lease_writes_nothing_once_another_took_over(
    tarry_dev: type[TarryProcess], table: str, tmp_path: Path
) -> None:
    fence_dir = tmp_path / "fence"
    fence_dir.mkdir()
    store = f"dynamodb://{table}?lease=2s"
    env = {"FENCE_DIR": str(fence_dir)}
    a = tarry_dev(FENCING, "--store", store, env=env).start()
    b = tarry_dev(FENCING, "--store", store, env=env).start()
    assert a.proc is not None

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(call, a.ingress)  # a starts its attempt
        assert stalled_in(fence_dir) == a.proc.pid
        with frozen(a.proc.pid):
            (fence_dir / "go-2").touch()  # the next run of the step returns at once
            invocation_id = until(
                "b finished it",
                lambda: [
                    i["id"]
                    for i in httpx.get(f"{b.admin}/invocations").json()["invocations"]
                    if i["status"] == "completed"
                ],
            )[0]
            before = what_is_stored(b.admin, invocation_id)
            (fence_dir / "go-1").touch()  # a's step returns as soon as it runs again
        # a wakes up: its step's result, then its attempt's end, are refused by epoch
        until("a's attempt was refused", lambda: "attempt superseded" in a.log())
        assert "checkpoint failed: StaleEpoch" in a.log()
        reply = answer.result(timeout=60)
    assert reply.status_code == 200, reply.text
    assert what_is_stored(b.admin, invocation_id) == before  # nothing of a's landed
    check_applied_once(before, a.proc.pid)
    assert reply.json() == before[0]["completion"]["value"]  # one answer: b's
    assert call(b.ingress).json() == reply.json()
    assert sorted((step, n) for step, n, _ in runs(fence_dir)) == [
        ("step-0", 1), (STALL, 1), (STALL, 2), ("step-2", 1)
    ]  # fmt: skip


@contextlib.contextmanager
def handlers(count: int, tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """``count`` uvicorn processes of the test app accepting on one listening socket, as a
    process manager runs them: a new connection goes to whichever accepts it. Yields the URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            log = tmp_path / f"uvicorn-{n}.log"
            with log.open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "tests.apps.fencing:app",
                     "--fd", str(listener.fileno()), "--log-level", "warning"],
                    pass_fds=[listener.fileno()], stdout=out, stderr=subprocess.STDOUT,
                    cwd=ROOT, env={**os.environ, **env},
                ))  # fmt: skip
            wait_for(f"{url}/discover", procs[-1], log)
        yield url
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        listener.close()


def test_a_frozen_handler_past_its_attempt_timeout_cannot_checkpoint_on_sqlite(
    tmp_path: Path,
) -> None:
    fence_dir = tmp_path / "fence"
    fence_dir.mkdir()
    data = tmp_path / "serve"
    data.mkdir()
    store = f"sqlite:///{data / 'tarry.db'}"
    serve = TarryProcess(["serve", "--store", store, "--attempt-timeout", "2s"], data)
    try:
        serve.start()
        with handlers(2, tmp_path, {"FENCE_DIR": str(fence_dir)}) as url:
            registered = serve.cli("deployments", "register", url)
            assert registered.returncode == 0, registered.stderr
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(call, serve.ingress)
                stalled = stalled_in(fence_dir)
                with frozen(stalled):
                    (fence_dir / "go-2").touch()
                    # past the attempt timeout the runtime retries it; the other process
                    # accepts the retry and finishes it
                    reply = answer.result(timeout=60)
                    invocation_id = reply.headers["x-restate-id"]
                    before = what_is_stored(serve.admin, invocation_id)
                    (fence_dir / "go-1").touch()
                # the frozen handler wakes up: its step's result is refused
                until("its checkpoint was refused", lambda: "refused a checkpoint" in serve.log())
                after = what_is_stored(serve.admin, invocation_id)
    finally:
        serve.stop()
    assert reply.status_code == 200, reply.text
    assert after == before  # nothing of the frozen handler's landed
    check_applied_once(before, stalled)
    assert reply.json() == before[0]["completion"]["value"]
    retried = [pid for step, n, pid in runs(fence_dir) if (step, n) == (STALL, 2)]
    assert retried and retried[0] != stalled  # the other process ran the retry
    assert sorted((step, n) for step, n, _ in runs(fence_dir)) == [
        ("step-0", 1), (STALL, 1), (STALL, 2), ("step-2", 1)
    ]  # fmt: skip
