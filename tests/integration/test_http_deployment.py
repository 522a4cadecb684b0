"""`tarry serve` with handlers in a separate HTTP deployment (uvicorn serving tarry.app)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[str]:
    """`uvicorn tests.apps.testapp:app` and `examples.greeter:app`... one process: the test app."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.greeter:app", "--port", str(port),
             "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/discover", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


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
