"""Attempt timeouts: an attempt that makes nothing durable for `--attempt-timeout` is abandoned
and retried from its journal; after `--max-attempts` the invocation is paused; the late writes
of an abandoned attempt are refused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS, TarryProcess, uvicorn_app

pytestmark = pytest.mark.fault


def _runs(stalls: Path, step: str) -> int:
    path = stalls / step
    return len(path.read_text().split()) if path.exists() else 0


def _wait_runs(stalls: Path, step: str, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _runs(stalls, step) < count:
        assert time.monotonic() < deadline, f"{step} ran {_runs(stalls, step)} times, not {count}"
        time.sleep(0.02)


def _let_go(stalls: Path, first: int, last: int = 9) -> None:
    """Let the runs ``first``..``last`` of the stalling step return."""
    for n in range(first, last + 1):
        (stalls / f"go-{n}").touch()


def test_a_stalled_attempt_is_retried_from_its_journal_then_paused(
    tarry_dev: type[TarryProcess], store_args: list[str], tmp_path: Path
) -> None:
    stalls = tmp_path / "stalls"
    stalls.mkdir()
    p = tarry_dev(
        str(APPS / "stalls.py"), *store_args, "--attempt-timeout", "1s", "--max-attempts", "2",
        env={"STALLS_DIR": str(stalls)},
    ).start()  # fmt: skip
    sent = httpx.post(f"{p.ingress}/Stalls/stall/send")
    assert sent.status_code == 202, sent.text
    invocation_id = sent.json()["invocationId"]

    inv = p.wait_status(invocation_id, "paused", timeout=30)  # two attempts, each abandoned
    assert "after 2 attempts" in inv["last_failure"]
    assert "attempt timeout" in inv["last_failure"]
    assert inv["attempts"] == 2
    # the step stored before the stall ran once; the stalled one was started by each attempt
    assert (_runs(stalls, "before"), _runs(stalls, "stall"), _runs(stalls, "after")) == (1, 2, 0)
    assert [e["command"]["name"] for e in inv["journal"][1:]] == ["before"]  # nothing else
    assert "paused" in p.cli("invocations", "describe", invocation_id).stdout

    _let_go(stalls, 3)
    resumed = p.cli("invocations", "resume", invocation_id)
    assert resumed.returncode == 0, resumed.stderr
    inv = p.wait_status(invocation_id, "completed", timeout=30)
    assert inv["completion"] == {"value": 3}  # the third run of the stalling step was stored
    assert (_runs(stalls, "before"), _runs(stalls, "stall"), _runs(stalls, "after")) == (1, 3, 1)


def test_an_abandoned_http_attempt_cannot_checkpoint(
    store_args: list[str], tmp_path: Path
) -> None:
    stalls = tmp_path / "stalls"
    stalls.mkdir()
    data = tmp_path / "serve"
    data.mkdir()
    store = store_args or ["--store", f"sqlite:///{data / 'tarry.db'}"]
    serve = TarryProcess(["serve", *store, "--attempt-timeout", "2s"], data)
    env = {"STALLS_DIR": str(stalls)}
    try:
        serve.start()
        with uvicorn_app("tests.apps.stalls:app", tmp_path, env) as url:
            registered = serve.cli("deployments", "register", url)
            assert registered.returncode == 0, registered.stderr
            sent = httpx.post(f"{serve.ingress}/Stalls/stall/send")
            invocation_id = sent.json()["invocationId"]
            # The first attempt was abandoned (its step goes on in the deployment); the
            # second is in the same step.
            _wait_runs(stalls, "stall", 2)
            _let_go(stalls, 1, 1)  # the abandoned attempt's step returns: its result ...
            deadline = time.monotonic() + 20
            while "refused a checkpoint" not in serve.log():  # ... is refused
                assert time.monotonic() < deadline, serve.log()
                time.sleep(0.02)
            _let_go(stalls, 2)
            inv = serve.wait_status(invocation_id, "completed", timeout=30)
    finally:
        serve.stop()
    value = inv["completion"]["value"]
    assert value >= 2  # a later attempt's run was stored, never the abandoned one's
    assert (_runs(stalls, "before"), _runs(stalls, "after")) == (1, 1)
    names = [e["command"]["name"] for e in inv["journal"][1:-1]]
    assert names == ["before", "stall", "after"]  # no gaps, no duplicates
    assert inv["journal"][2]["completion"] == {"value": value}
