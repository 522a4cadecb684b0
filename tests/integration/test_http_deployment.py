"""`tarry serve` with handlers in a separate HTTP deployment (uvicorn serving tarry.app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TarryProcess, free_port, suspending, uvicorn_app

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[str]:
    with uvicorn_app("examples.greeter:app", tmp_path) as url:
        yield url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[TarryProcess]:
    data = tmp_path / "serve"
    data.mkdir()
    p = TarryProcess(["serve", "--store", f"sqlite:///{data / 'tarry.db'}"], data)
    yield p.start()
    p.stop()


def test_register_and_invoke_an_http_deployment(deployment: str, serve: TarryProcess) -> None:
    registered = serve.cli("deployments", "register", deployment)
    assert registered.returncode == 0, registered.stderr
    assert "Greeter" in registered.stdout
    assert "Greeter" in serve.cli("services", "ls").stdout
    assert deployment in serve.cli("deployments", "ls").stdout

    assert httpx.post(f"{serve.ingress}/Greeter/greet", json="Bo").json() == "Hello Bo!"
    later = httpx.post(
        f"{serve.ingress}/Greeter/greet_later", json={"name": "Cy", "seconds": 0.3}, timeout=20
    )
    assert later.json() == "Hello Cy!"
    inv = httpx.get(f"{serve.admin}/invocations/{later.headers['x-restate-id']}").json()
    kinds = [e["command"]["kind"] for e in inv["journal"]]
    assert kinds == ["input", "sleep", "output"]
    assert inv["attempts"] == 2  # suspended on the sleep, invoked again when it fired


def test_registration_survives_a_restart(deployment: str, serve: TarryProcess) -> None:
    assert serve.cli("deployments", "register", deployment).returncode == 0
    serve.kill()
    serve.start()
    assert httpx.post(f"{serve.ingress}/Greeter/greet", json="Di").json() == "Hello Di!"


def test_registering_an_unreachable_deployment_fails_clearly(serve: TarryProcess) -> None:
    result = serve.cli("deployments", "register", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "discovery failed" in result.stderr
    assert "cannot reach" in result.stderr


@pytest.mark.parametrize(
    ("flags", "attempts"),
    [
        # steps are posted back to the runtime mid-request: an attempt per sleep, plus the last
        ((), 4),
        # request/response: also an attempt per step result (the SDK flushes by returning)
        (("--no-http-checkpoints",), 7),
    ],
)
def test_steps_of_an_http_deployment(tmp_path: Path, flags: tuple[str, ...], attempts: int) -> None:
    data = tmp_path / "serve"
    data.mkdir()
    serve = TarryProcess(["serve", "--store", f"sqlite:///{data / 'tarry.db'}", *flags], data)
    steps_file = tmp_path / "steps.txt"
    try:
        serve.start()
        env = {"STEPS_FILE": str(steps_file)}
        with uvicorn_app("tests.apps.testapp:app", tmp_path, env) as url:
            assert serve.cli("deployments", "register", url).returncode == 0
            reply = httpx.post(f"{serve.ingress}/Steps/chain", json=3, timeout=30)
            assert reply.json() == ["step-0", "step-1", "step-2"]
            assert steps_file.read_text().split() == ["step-0", "step-1", "step-2"]
            inv = httpx.get(f"{serve.admin}/invocations/{reply.headers['x-restate-id']}").json()
            kinds = [e["command"]["kind"] for e in inv["journal"]]
            assert kinds == ["input", "run", "sleep", "run", "sleep", "run", "sleep", "output"]
            # suspending everywhere: an attempt per await, the steps' too, plus the first
            assert inv["attempts"] == (7 if suspending() else attempts)
    finally:
        serve.stop()


def test_checkpoints_need_the_token_of_an_attempt_in_flight(serve: TarryProcess) -> None:
    body = {"commands": [], "completions": {}}
    anonymous = httpx.post(f"{serve.ingress}/tarry/checkpoint", json=body)
    assert anonymous.status_code == 404
    forged = httpx.post(
        f"{serve.ingress}/tarry/checkpoint", json=body, headers={"authorization": "Bearer x"}
    )
    assert forged.status_code == 404
    assert "no attempt in flight" in forged.json()["message"]


def test_ctx_logger_lines_show_under_uvicorn(
    deployment: str, serve: TarryProcess, tmp_path: Path
) -> None:
    """uvicorn sets up its own loggers only; a handler's ctx.logger.info must show anyway."""
    assert serve.cli("deployments", "register", deployment).returncode == 0
    reply = httpx.post(f"{serve.ingress}/Greeter/greet_later",
                       json={"name": "Lu", "seconds": 0}, timeout=20)  # fmt: skip
    assert reply.json() == "Hello Lu!"
    log = tmp_path / f"uvicorn-{deployment.rsplit(':', 1)[1]}.log"
    lines = [line for line in log.read_text().splitlines() if "about to sleep" in line]
    assert len(lines) == 1, log.read_text()  # once: not again when the replay passes it
    assert "INFO" in lines[0] and "[Greeter/greet_later]" in lines[0]
