"""Two `tarry serve --store dynamodb://TABLE` processes with one HTTP deployment (uvicorn), as
the runtime will run on AWS: either takes invocations, and when one is killed with SIGKILL the
other finishes everything it had — timers and attempts — exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TarryProcess, uvicorn_app

pytestmark = pytest.mark.fault

LEASE_MS = 2_000


def _serve(tmp_path: Path, name: str, table: str) -> TarryProcess:
    data = tmp_path / name
    data.mkdir()
    return TarryProcess(["serve", "--store", f"dynamodb://{table}?lease={LEASE_MS}ms"], data)


@pytest.fixture
def pair(tmp_path: Path, table: str) -> Iterator[list[TarryProcess]]:
    processes = [_serve(tmp_path, name, table) for name in ("a", "b")]
    yield processes
    for p in processes:
        p.stop()


def _register(pair: list[TarryProcess], deployment: str, probe: str, body: Any) -> None:
    """Register the deployment through the first process; wait (bounded) until the second has
    it from the table too."""
    a, b = pair
    registered = a.cli("deployments", "register", deployment)
    assert registered.returncode == 0, registered.stderr
    deadline = time.monotonic() + 15
    while httpx.post(f"{b.ingress}/{probe}", json=body, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the second process never routed to the deployment"
        time.sleep(0.1)


def test_sleeps_of_a_killed_process_complete_once_through_the_other(
    tmp_path: Path, pair: list[TarryProcess]
) -> None:
    a, b = (p.start() for p in pair)
    with uvicorn_app("examples.greeter:app", tmp_path) as deployment:
        _register(pair, deployment, "Greeter/greet", "probe")
        assert httpx.post(f"{a.ingress}/Greeter/greet", json="A").json() == "Hello A!"
        assert httpx.post(f"{b.ingress}/Greeter/greet", json="B").json() == "Hello B!"

        names = [f"n{i}" for i in range(6)]
        sent = [
            httpx.post(f"{a.ingress}/Greeter/greet_later/send", json={"name": n, "seconds": 3})
            for n in names
        ]
        ids = [r.json()["invocationId"] for r in sent]
        for invocation_id in ids:
            a.wait_status(invocation_id, "suspended")  # each sleeps, its timer armed in a
        a.kill()

        for name, invocation_id in zip(names, ids, strict=True):
            inv = b.wait_status(invocation_id, "completed", timeout=30)
            assert inv["completion"] == {"value": f"Hello {name}!"}
            kinds = [e["command"]["kind"] for e in inv["journal"]]
            assert kinds == ["input", "sleep", "output"]  # exactly once: one sleep, one output
            wake_at = inv["journal"][1]["command"]["wake_at"]
            assert inv["completed_at"] >= wake_at  # never before its deadline
            # ... and soon after it: the lease lapses, then the next sweep fires the timer
            assert inv["completed_at"] <= wake_at + LEASE_MS + 5_000, inv


def test_fifty_keys_count_exactly_while_each_process_is_killed_and_restarted(
    tmp_path: Path, pair: list[TarryProcess]
) -> None:
    for p in pair:
        p.start()
    keys, adds = 50, 20
    done = 0
    lock = threading.Lock()

    def add(job: tuple[int, int]) -> tuple[int, int]:
        """One add(1), retried with its idempotency key (against either process) until it
        answers: what a client does when the process it talked to dies."""
        nonlocal done
        key, n = job
        headers = {"idempotency-key": f"add-{key}-{n}"}
        for attempt in range(100):
            p = pair[(key + n + attempt) % 2]
            try:
                reply = httpx.post(
                    f"{p.ingress}/Counter/k{key}/add", json=1, headers=headers, timeout=30
                )
                if reply.status_code == 200:
                    with lock:
                        done += 1
                    return key, reply.json()
            except httpx.HTTPError:
                pass  # the process is down: try the other one
            time.sleep(0.1)
        raise AssertionError(f"add {n} on key {key} never answered")

    def when_done(count: int) -> None:
        deadline = time.monotonic() + 120
        while done < count:
            assert time.monotonic() < deadline, f"stuck at {done} adds"
            time.sleep(0.02)

    with uvicorn_app("examples.counter:app", tmp_path) as deployment:
        _register(pair, deployment, "Counter/probe/get", None)
        jobs = [(key, n) for n in range(adds) for key in range(keys)]
        with ThreadPoolExecutor(24) as clients:
            results = clients.map(add, jobs)
            for victim, after in ((pair[0], 250), (pair[1], 600)):
                when_done(after)
                victim.kill()  # with invocations in flight on it
                victim.start()  # and back, on the same table
            totals: dict[int, list[int]] = {}
            for key, total in results:
                totals.setdefault(key, []).append(total)

        # Every add counted once: each key's adds saw the totals 1..20, each exactly once.
        assert {key: sorted(seen) for key, seen in totals.items()} == {
            key: list(range(1, adds + 1)) for key in range(keys)
        }
        for key in range(keys):
            p = pair[key % 2]
            assert httpx.post(f"{p.ingress}/Counter/k{key}/get").json() == adds

    # No duplicate journal entries: every add's journal is one read, one write, one output.
    listed = httpx.get(
        f"{pair[0].admin}/invocations", params={"service": "Counter", "limit": 5000}
    ).json()["invocations"]
    add_ids = [i["id"] for i in listed if i["handler"] == "add"]
    assert len(add_ids) == keys * adds
    with ThreadPoolExecutor(8) as pool:
        journals = list(pool.map(lambda i: pair[0].invocation(i)["journal"], add_ids))
    for journal in journals:
        assert [e["command"]["kind"] for e in journal] == [
            "input", "get_state", "set_state", "output"
        ]  # fmt: skip
