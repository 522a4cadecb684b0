"""Stopping when told: SIGTERM or Ctrl-C while callers wait on long invocations ends the process
within its grace period; the callers get 503 with Retry-After, the invocations go on after a
restart, and a second signal ends at once."""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import TarryProcess

APP = "tests/apps/testapp.py"
NAP_S = 90
GRACE_S = 3


def _stopped_within(p: TarryProcess, seconds: float) -> float:
    """Seconds from now until the process exited (fails past ``seconds``)."""
    assert p.proc is not None
    began = time.monotonic()
    try:
        p.proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {seconds} s after the signal:\n{p.log()}")
    return time.monotonic() - began


def _wait_suspended(p: TarryProcess, key: str) -> str:
    """The invocation with idempotency key ``key``, once suspended on its sleep."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.post(f"{p.ingress}/restate/lookup", timeout=5,
                           json={"target": "idempotentInvocation", "service": "Naps",
                                 "handler": "nap", "idempotencyKey": key})  # fmt: skip
        if found.status_code == 200:
            invocation_id: str = found.json()["invocationId"]
            if p.invocation(invocation_id)["status"] == "suspended":
                return invocation_id
        time.sleep(0.05)
    raise AssertionError(f"the nap {key} never suspended:\n{p.log()}")


def _stop_twice_and_resume(p: TarryProcess) -> None:
    """For SIGTERM and SIGINT (Ctrl-C) in turn: two callers wait on a 90 s sleep; the process
    ends within the grace period, each caller gets 503 (not a reset connection), no traceback.
    Then one restart takes the sleeps up again, and the callers, retrying with their
    idempotency keys, get the results."""
    keys = {signal.SIGTERM: ["term-a", "term-b"], signal.SIGINT: ["int-a", "int-b"]}
    with ThreadPoolExecutor(4) as pool:
        for sig, batch in keys.items():
            p.start()
            calls = {
                key: pool.submit(httpx.post, f"{p.ingress}/Naps/nap", json=NAP_S, timeout=60,
                                 headers={"idempotency-key": key})
                for key in batch
            }
            ids = {key: _wait_suspended(p, key) for key in batch}
            assert p.proc is not None
            p.proc.send_signal(sig)
            _stopped_within(p, GRACE_S + 5)
            assert p.proc.returncode == 0, p.log()
            for key, reply in calls.items():
                got = reply.result(5)
                assert got.status_code == 503, got.text
                assert got.headers["retry-after"].isdigit()
                assert got.headers["x-restate-id"] == ids[key]
                assert "stopping" in got.json()["message"]
            assert "Traceback" not in p.log(), p.log()
        # the restart can take the store (the lock was released) and resumes both sleeps
        p.start()
        answers = [
            pool.submit(httpx.post, f"{p.ingress}/Naps/nap", json=NAP_S, timeout=NAP_S + 60,
                        headers={"idempotency-key": key})
            for batch in keys.values()
            for key in batch
        ]
        for answer in answers:
            got = answer.result(NAP_S + 60)
            assert got.status_code == 200, got.text
            assert got.json() == f"slept {NAP_S} s"
    # one invocation per idempotency key: the retries attached to the first
    listed = httpx.get(f"{p.admin}/invocations", params={"service": "Naps"}).json()
    assert len(listed["invocations"]) == 4


def test_a_signal_stops_the_runtime_while_callers_wait(tarry_dev: Any, table: str) -> None:
    """On SQLite and on DynamoDB Local, side by side (each waits out a 90 s sleep)."""
    grace = ["--shutdown-grace", f"{GRACE_S}s"]
    runtimes = [
        tarry_dev(APP, *grace),
        tarry_dev(APP, *grace, "--store", f"dynamodb://{table}?lease=2s"),
    ]
    with ThreadPoolExecutor(len(runtimes)) as pool:
        for done in [pool.submit(_stop_twice_and_resume, p) for p in runtimes]:
            done.result()


def test_a_second_signal_stops_at_once(tarry_dev: Any) -> None:
    """An attempt in flight (a 60 s step) holds the grace period open; a second SIGTERM ends
    the process at once, and the step's invocation is taken up again after a restart."""
    p = tarry_dev(APP, "--shutdown-grace", "60s").start()
    sent = httpx.post(f"{p.ingress}/Naps/busy/send", json=60).json()["invocationId"]
    p.wait_status(sent, "running")
    assert p.proc is not None
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert p.proc.poll() is None  # the step may still end: the grace period is a minute
    p.proc.send_signal(signal.SIGTERM)
    _stopped_within(p, 5)
    assert "Traceback" not in p.log(), p.log()
    p.start()
    p.wait_status(sent, "running")  # taken up again: its step runs anew
