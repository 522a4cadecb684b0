"""`tarry dev --store dynamodb://TABLE` as real processes on DynamoDB Local: 200 concurrent
calls on one key, DynamoDB's item limit, and two processes on one table that share the work,
keep object keys exclusive, and finish what the other left when it died. (SIGKILL and restart of
one process runs on every store in test_restart.py.) The table comes from
`tarry dynamodb create-table`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest

from tests.conftest import (
    APPS,
    ROOT,
    TarryProcess,
    assert_steps_ran_once,
    free_port,
    step_lines,
    wait_for_steps,
)
from tests.dynamodb_local import dynamodb_local

pytestmark = pytest.mark.fault

GREETER = str(ROOT / "examples" / "greeter.py")
COUNTER = str(ROOT / "examples" / "counter.py")


def add_one(ingress: str) -> int:
    """``Counter/k/add(1)`` through the process at ``ingress``: the count it returns."""
    reply = httpx.post(f"{ingress}/Counter/k/add", json=1, timeout=60)
    assert reply.status_code == 200, reply.text
    result: int = reply.json()
    return result


def test_200_concurrent_adds_on_one_key_count_once_each(
    tarry_dev: type[TarryProcess], table: str
) -> None:
    p = tarry_dev(COUNTER, "--store", f"dynamodb://{table}").start()

    with ThreadPoolExecutor(200) as pool:
        results = sorted(pool.map(add_one, [p.ingress] * 200))
    assert results == list(range(1, 201))  # one at a time: every add saw the one before
    assert httpx.post(f"{p.ingress}/Counter/k/get").json() == 200


def test_a_state_value_over_the_item_limit_fails_the_invocation_and_writes_nothing(
    tarry_dev: type[TarryProcess], table: str
) -> None:
    p = tarry_dev(str(APPS / "testapp.py"), "--store", f"dynamodb://{table}").start()
    big = httpx.post(f"{p.ingress}/Blob/k/put", json=500_000, timeout=30)
    assert big.status_code == 413
    assert "400 KB" in big.json()["message"]
    inv = p.invocation(big.headers["x-restate-id"])
    assert inv["completion"]["failure"]["code"] == 413
    assert inv["attempts"] == 1  # failed at once, not retried
    state = httpx.get(f"{p.admin}/state/Blob/k").json()["state"]
    assert state == {}  # not even the small value set before it
    # the same limit through the state CLI (the value from stdin: it is too long for argv)
    edit = subprocess.run(
        [sys.executable, "-m", "tarry.runtime.cli", "state", "set", "Blob", "k", "blob", "-",
         "--admin-url", p.admin],
        input="y" * 500_000, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert edit.returncode == 1
    assert "413" in edit.stderr and "400 KB" in edit.stderr
    assert httpx.get(f"{p.admin}/state/Blob/k").json()["state"] == {}
    small = httpx.post(f"{p.ingress}/Blob/k/put", json=10, timeout=30)
    assert small.status_code == 200  # the key was released
    assert httpx.get(f"{p.admin}/state/Blob/k").json()["state"] == {
        "small": "written first",
        "blob": "x" * 10,
    }


def test_an_input_over_dynamodbs_item_limit_is_refused_with_413(
    tarry_dev: type[TarryProcess], table: str
) -> None:
    p = tarry_dev(GREETER, "--store", f"dynamodb://{table}").start()
    big = httpx.post(f"{p.ingress}/Greeter/greet", json="x" * 500_000, timeout=30)
    assert big.status_code == 413
    assert "400 KB" in big.json()["message"]
    assert httpx.get(f"{p.admin}/invocations").json()["invocations"] == []  # nothing stored
    assert httpx.post(f"{p.ingress}/Greeter/greet", json="Ann").json() == "Hello Ann!"


def test_another_process_finishes_what_a_killed_one_was_running(
    tarry_dev: type[TarryProcess], tmp_path: Path, table: str
) -> None:
    steps_file = tmp_path / "steps.txt"
    app, store = str(APPS / "testapp.py"), f"dynamodb://{table}?lease=1500ms"
    env = {"STEPS_FILE": str(steps_file)}
    a = tarry_dev(app, "--store", store, env=env).start()
    b = tarry_dev(app, "--store", store, env=env).start()
    sent = httpx.post(f"{a.ingress}/Steps/chain/send", json=8).json()  # a drives it
    wait_for_steps(steps_file, 3)
    a.kill()  # mid-chain: running a step (its lease lapses) or asleep (its timer is orphaned)
    done_before_kill = len(step_lines(steps_file))
    inv = b.wait_status(sent["invocationId"], "completed", timeout=30)
    assert inv["completion"] == {"value": [f"step-{i}" for i in range(8)]}
    assert_steps_ran_once(steps_file, done_before_kill)


def test_two_processes_keep_one_key_exclusive_and_answer_every_call(
    tarry_dev: type[TarryProcess], table: str
) -> None:
    store = f"dynamodb://{table}?lease=1500ms"
    processes = [tarry_dev(COUNTER, "--store", store).start() for _ in range(2)]

    # 200 at once, alternating between the processes: both write the key's turn item, each
    # racing the other, the key passes from one to the other, and a caller waiting in one
    # process gets a result the other process produced
    ingresses = [processes[n % 2].ingress for n in range(200)]
    with ThreadPoolExecutor(200) as pool:
        results = sorted(pool.map(add_one, ingresses))
    assert results == list(range(1, 201))  # one at a time: every add saw the one before
    for p in processes:
        assert httpx.post(f"{p.ingress}/Counter/k/get").json() == 200


def test_a_missing_table_or_an_unreachable_endpoint_is_named_at_startup(tmp_path: Path) -> None:
    dynamodb_local()

    def dev(store: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tarry.runtime.cli", "dev", GREETER, "--store", store,
             "--data-dir", str(tmp_path), "--ingress-port", "0", "--admin-port", "0"],
            capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, **env},
        )  # fmt: skip

    missing = dev("dynamodb://no-such-table")
    assert missing.returncode == 1
    assert "the table no-such-table does not exist" in missing.stderr
    assert "tarry dynamodb create-table no-such-table" in missing.stderr
    assert "Traceback" not in missing.stderr
    gone = dev("dynamodb://t", AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1
    assert "cannot reach DynamoDB at http://127.0.0.1:" in gone.stderr
    assert "Traceback" not in gone.stderr

    # A table made before invocations were pinned to deployments: its by_status index does not
    # carry the deployment, so counting what runs on one would be wrong. Refused, with why.
    from tarry.runtime.store.dynamodb_table import create_table_request

    name = f"tarry-old-{uuid.uuid4().hex[:8]}"
    params, _ = create_table_request(name)
    for index in params["GlobalSecondaryIndexes"]:
        if index["IndexName"] == "by_status":
            index["Projection"] = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["lease_until"]}
    client = boto3.client("dynamodb")
    client.create_table(**params)
    try:
        old = dev(f"dynamodb://{name}")
        assert old.returncode == 1
        assert f"the table {name} was made by an earlier tarry" in old.stderr
        assert "Traceback" not in old.stderr
    finally:
        client.delete_table(TableName=name)
