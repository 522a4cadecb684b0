"""SIGKILL the runtime and restart it on the same data dir: nothing accepted is lost."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    APPS,
    ROOT,
    TarryProcess,
    assert_steps_ran_once,
    step_lines,
    wait_for_steps,
)

pytestmark = pytest.mark.fault

GREETER = str(ROOT / "examples" / "greeter.py")


def test_durable_sleep_survives_sigkill(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(GREETER, *store_args).start()
    key = {"idempotency-key": "greet-ann"}
    body = {"name": "Ann", "seconds": 6}
    t0 = time.monotonic()
    sent = httpx.post(f"{p.ingress}/Greeter/greet_later/send", json=body, headers=key)
    assert sent.status_code == 202
    p.wait_status(sent.json()["invocationId"], "suspended")  # the sleep is journaled ...
    p.kill()  # ... and the process dies without any cleanup
    assert p.log().count("about to sleep") == 1

    p.start()
    reply = httpx.post(f"{p.ingress}/Greeter/greet_later", json=body, headers=key, timeout=30)
    elapsed = time.monotonic() - t0
    assert reply.status_code == 200
    assert reply.json() == "Hello Ann!"
    assert reply.headers["x-restate-id"] == sent.json()["invocationId"]
    assert elapsed >= 6
    assert "about to sleep" not in p.log()  # replayed, not re-run: the logger stayed quiet


def test_journaled_steps_never_run_again(
    tarry_dev: type[TarryProcess], store_args: list[str], tmp_path: Path
) -> None:
    steps_file = tmp_path / "steps.txt"
    env = {"STEPS_FILE": str(steps_file)}
    p = tarry_dev(str(APPS / "testapp.py"), *store_args, env=env).start()
    sent = httpx.post(f"{p.ingress}/Steps/chain/send", json=8).json()
    wait_for_steps(steps_file, 3)
    p.kill()
    done_before_kill = len(step_lines(steps_file))
    p.start()
    inv = p.wait_status(sent["invocationId"], "completed", timeout=30)
    assert inv["completion"] == {"value": [f"step-{i}" for i in range(8)]}
    assert_steps_ran_once(steps_file, done_before_kill)


V1 = """
from datetime import timedelta
from pathlib import Path
import tarry
svc = tarry.Service("Evolving")

def mark(what):
    Path(__file__).with_name(what).write_text(what)
    return what

@svc.handler()
async def work(ctx: tarry.Context) -> str:
    await ctx.run("charge card", mark, "charged")
    await ctx.sleep(timedelta(seconds=2))
    return "done"
"""

V2 = V1.replace(
    'ctx.run("charge card", mark, "charged")', 'ctx.run("reserve stock", mark, "reserved")'
)


def test_changed_code_fails_with_a_non_determinism_error(
    tarry_dev: type[TarryProcess], store_args: list[str], tmp_path: Path
) -> None:
    app = tmp_path / "evolving.py"
    app.write_text(V1)
    p = tarry_dev(str(app), *store_args).start()
    invocation_id = httpx.post(f"{p.ingress}/Evolving/work/send").json()["invocationId"]
    p.wait_status(invocation_id, "suspended")
    p.kill()
    app.write_text(V2)  # the handler changes while its invocation sleeps
    p.start()
    inv = p.wait_status(invocation_id, "paused")  # replayed when the sleep fired, and refused
    assert "non-deterministic replay at journal entry 1" in inv["last_failure"]
    assert "run('charge card')" in inv["last_failure"]
    assert "run('reserve stock')" in inv["last_failure"]
    assert [e["command"]["kind"] for e in inv["journal"]] == ["input", "run", "sleep"]
    assert (tmp_path / "charged").exists()
    assert not (tmp_path / "reserved").exists()  # nothing after the divergence took effect
    described = p.cli("invocations", "describe", invocation_id)
    assert "paused" in described.stdout
    assert "run('reserve stock')" in described.stdout

    # Put the old code back and resume: the invocation finishes from where it stopped.
    p.kill()
    app.write_text(V1)
    p.start()
    resumed = p.cli("invocations", "resume", invocation_id)
    assert resumed.returncode == 0, resumed.stderr
    inv = p.wait_status(invocation_id, "completed")
    assert inv["completion"] == {"value": "done"}
    again = p.cli("invocations", "resume", invocation_id)
    assert again.returncode == 1
    assert "not paused" in again.stderr
