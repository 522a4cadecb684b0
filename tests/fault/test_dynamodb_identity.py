"""A `tarry dev --store dynamodb://TABLE` SIGKILLed mid-attempt and restarted on its data dir
takes over its own attempts at once: with a lease of ten minutes, far longer than any wait here,
the work can only finish by that take-over. Another runtime (another data dir: another
identity) leaves the unexpired lease alone; a second runtime on a data dir in use runs without
an identity, as before."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS, TarryProcess

pytestmark = pytest.mark.fault

APP = str(APPS / "duplicates.py")
LEASE = "10m"


def killed_mid_attempt(
    tarry_dev: type[TarryProcess], table: str, gate: Path
) -> tuple[TarryProcess, str]:
    """A runtime on ``table`` (a ten-minute lease), SIGKILLed while `Dup/echo` runs, held in
    its step until ``gate`` exists; the runtime and the invocation's id."""
    p = tarry_dev(APP, "--store", f"dynamodb://{table}?lease={LEASE}").start()
    sent = httpx.post(f"{p.ingress}/Dup/echo/send", json={"gate": str(gate)}, timeout=30)
    assert sent.status_code == 202, sent.text
    entered = Path(f"{gate}.entered")
    deadline = time.monotonic() + 30
    while not entered.exists():
        assert time.monotonic() < deadline, "the attempt never reached its gate"
        time.sleep(0.02)
    invocation_id: str = sent.json()["invocationId"]
    assert p.invocation(invocation_id)["status"] == "running"
    p.kill()
    return p, invocation_id


def test_a_restarted_runtime_takes_over_its_own_attempt_at_once(
    tarry_dev: type[TarryProcess], table: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    p, invocation_id = killed_mid_attempt(tarry_dev, table, gate)
    p.start()
    gate.touch()
    done = p.wait_status(invocation_id, "completed", timeout=60)  # << the lease's 10 minutes
    assert (done["attempts"], done["epoch"]) == (2, 2)
    assert done["completion"]["value"]["arg"] == {"gate": str(gate)}


def test_another_runtime_leaves_an_unexpired_lease_alone(
    tarry_dev: type[TarryProcess], table: str, tmp_path: Path
) -> None:
    a, invocation_id = killed_mid_attempt(tarry_dev, table, tmp_path / "gate")
    b = tarry_dev(APP, "--store", f"dynamodb://{table}?lease={LEASE}").start()  # another identity
    # b recovered before it answered: it left the attempt with its lease, as it was
    inv = b.invocation(invocation_id)
    assert (inv["status"], inv["attempts"], inv["epoch"]) == ("running", 1, 1)
    a.start()  # a's identity again: it takes its attempt over
    (tmp_path / "gate").touch()
    done = b.wait_status(invocation_id, "completed", timeout=60)
    assert (done["attempts"], done["epoch"]) == (2, 2)
    assert "holds the identity" not in a.log() + b.log()


def test_a_second_runtime_on_a_data_dir_in_use_runs_without_an_identity(
    tarry_dev: type[TarryProcess], table: str, tmp_path: Path
) -> None:
    store = ["--store", f"dynamodb://{table}?lease={LEASE}"]
    a = tarry_dev(APP, *store).start()
    logs = tmp_path / "second"
    logs.mkdir()
    second = TarryProcess(["dev", APP, "--data-dir", str(a.data_dir), *store], logs)
    try:
        second.start()
        reply = httpx.post(f"{second.ingress}/Dup/echo", json="hi", timeout=30)
        assert reply.status_code == 200 and reply.json()["arg"] == "hi"
        assert f"pid {a.proc.pid if a.proc else '?'}) holds the identity in" in second.log()
        assert "runs without one" in second.log()
    finally:
        second.stop()
