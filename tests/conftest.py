"""Shared fixtures: real `tarry` processes on free ports, driven over HTTP."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tarry.runtime.server import Runtime
from tests.dynamodb_local import dynamodb_local
from tests.ministack import lambda_client, ministack

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


# The SDK's testing mode that suspends at every await (tarry.endpoint.SUSPEND_EVERYWHERE): set
# by --suspend-everywhere, which runs the functional suite (FUNCTIONAL) again in it.
SUSPEND_EVERYWHERE = "TARRY_SUSPEND_EVERYWHERE"
FUNCTIONAL = (
    "tests/integration/test_every_operation.py",
    "tests/integration/test_examples.py",
    "tests/integration/test_ingress_api.py",
    "tests/integration/test_ingress.py::test_retries_show_in_describe_and_terminal_errors_do_not",
    "tests/integration/test_ingress.py::test_calls_sends_and_select_between_services",
    "tests/integration/test_http_deployment.py::test_steps_of_an_http_deployment",
    "tests/integration/test_control.py::test_cancel_reaches_the_call_it_waits_on",
    "tests/integration/test_control.py::test_a_paused_invocation_keeps_its_key_and_its_completions",
    "tests/integration/test_simulated_time.py",
)


def suspending() -> bool:
    """Whether the SDK suspends at every await in this run (``--suspend-everywhere``)."""
    return os.environ.get(SUSPEND_EVERYWHERE, "") not in ("", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--suspend-everywhere",
        action="store_true",
        help="run the functional suite only, with the SDK suspending at every await "
        f"({SUSPEND_EVERYWHERE}=1, in this process and the ones it starts)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # aiohttp (under aiobotocore) warns that a request body over 1 MB, sent as bytes, may hold
    # up the event loop; with warnings as errors that made every DynamoDB transaction over
    # 1 MB fail and be retried for ever. Python ignores ResourceWarning outside tests.
    config.addinivalue_line(
        "filterwarnings", "ignore:Sending a large body directly:ResourceWarning"
    )
    if config.getoption("--suspend-everywhere"):
        os.environ[SUSPEND_EVERYWHERE] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--suspend-everywhere"):
        return
    config.hook.pytest_deselected(items=[i for i in items if not i.nodeid.startswith(FUNCTIONAL)])
    items[:] = [i for i in items if i.nodeid.startswith(FUNCTIONAL)]


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after every test, so a client or session a test left open warns (and,
    warnings being errors, fails) in the test that leaked it, not in whichever test the
    collector happens to run in later."""
    yield
    gc.collect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    """Poll ``url`` until it answers 200 (bounded), failing early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{log.read_text()}")


class TarryProcess:
    """`tarry dev APP` or `tarry serve` as a real child process, killable with SIGKILL."""

    def __init__(self, args: list[str], data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> TarryProcess:
        log = self.data_dir / f"tarry-{len(self.logs)}.log"
        self.logs.append(log)
        cmd = [
            sys.executable, "-m", "tarry.runtime.cli", *self.args,
            "--ingress-port", str(self.ingress_port), "--admin-port", str(self.admin_port),
        ]  # fmt: skip
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
            )
        wait_for(f"{self.admin}/health", self.proc, log)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, like a machine losing power to the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self, n: int = -1) -> str:
        return self.logs[n].read_text()

    def invocation(self, invocation_id: str) -> dict[str, Any]:
        """The invocation as the admin API describes it (with its journal)."""
        reply = httpx.get(f"{self.admin}/invocations/{invocation_id}", timeout=10)
        assert reply.status_code == 200, reply.text
        data: dict[str, Any] = reply.json()
        return data

    def wait_status(self, invocation_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
        """Poll the admin API until the invocation reaches ``status`` (bounded); return it."""
        deadline = time.monotonic() + timeout
        inv = self.invocation(invocation_id)
        while inv["status"] != status:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{invocation_id} is {inv['status']}, not {status}, after {timeout} s"
                )
            time.sleep(0.02)
            inv = self.invocation(invocation_id)
        return inv

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tarry.runtime.cli", *args, "--admin-url", self.admin],
            capture_output=True, text=True, cwd=ROOT, env=self.env, timeout=30,
        )  # fmt: skip


def holding(p: TarryProcess, key: str, timeout: float = 15) -> str:
    """The id of the `Holder/{key}/hold` invocation, once it has suspended: found in the admin
    API's listing, as an operator would (an awakeable's id is opaque)."""
    deadline = time.monotonic() + timeout
    while True:
        params = {"service": "Holder", "status": "suspended"}
        found = httpx.get(f"{p.admin}/invocations", params=params).json()["invocations"]
        ids = [i["id"] for i in found if i["key"] == key and i["handler"] == "hold"]
        if ids:
            (invocation_id,) = ids
            assert isinstance(invocation_id, str)
            return invocation_id
        assert time.monotonic() < deadline, f"Holder/{key}/hold never suspended"
        time.sleep(0.02)


def held_awakeable(p: TarryProcess, key: str, timeout: float = 15) -> str:
    """The awakeable `Holder/{key}/hold` waits on, once its invocation has suspended on it: as
    a client learns it, from where the handler put it (its state)."""
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{p.admin}/state/Holder/{key}").json()["state"]
        if "awakeable" in state:
            awk: str = state["awakeable"]
            holding(p, key, max(0.0, deadline - time.monotonic()))
            return awk
        assert time.monotonic() < deadline, f"Holder/{key}/hold never suspended"
        time.sleep(0.02)


def call(pool: ThreadPoolExecutor, method: str, url: str, **kwargs: Any) -> Future[httpx.Response]:
    return pool.submit(httpx.request, method, url, timeout=30, **kwargs)


@contextlib.contextmanager
def uvicorn_app(app: str, tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`uvicorn APP` as a real process: an HTTP deployment. Yields its URL."""
    port = free_port()
    log = tmp_path / f"uvicorn-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/discover", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def clients(rt: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """HTTP clients of the runtime's ingress and admin API (loopback, as the CLI is)."""
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rt.ingress_app()), base_url="http://127.0.0.1",
            timeout=30,
        ) as ingress,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rt.admin_app()), base_url="http://127.0.0.1",
            timeout=30,
        ) as admin,
    ):  # fmt: skip
        yield ingress, admin


def step_lines(path: Path) -> list[str]:
    """The lines the testapp's ``Steps/chain`` appended to its steps file."""
    return path.read_text().split() if path.exists() else []


def wait_for_steps(path: Path, count: int, timeout: float = 10) -> int:
    """Wait (bounded) until ``count`` steps ran; return how many have."""
    deadline = time.monotonic() + timeout
    while len(step_lines(path)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} steps ran in {timeout} s"
        time.sleep(0.02)
    return len(step_lines(path))


def assert_steps_ran_once(path: Path, done_before_kill: int, steps: int = 8) -> None:
    """Every step ran once — or twice for the one step in flight at a kill (run, not yet
    journaled) — and the steps done before the kill were not run again."""
    lines = step_lines(path)
    assert lines[:done_before_kill] == [f"step-{i}" for i in range(done_before_kill)]
    for i in range(steps):
        assert lines.count(f"step-{i}") in (1, 2), lines
    assert len(lines) <= steps + 1, lines


@pytest.fixture
def tarry_dev(tmp_path: Path) -> Iterator[type[TarryProcess]]:
    """A factory for `tarry dev` processes; every one started is stopped at teardown."""
    started: list[TarryProcess] = []

    class Dev(TarryProcess):
        def __init__(self, app: str, *extra: str, env: dict[str, str] | None = None) -> None:
            data = tmp_path / f"dev{len(started)}"
            data.mkdir()
            super().__init__(["dev", app, "--data-dir", str(data), *extra], data, env)
            started.append(self)

    yield Dev
    for p in started:
        p.stop()


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh table, created by the CLI from infra/table.yaml."""
    dynamodb_local()
    name = f"tarry-test-{uuid.uuid4().hex[:12]}"
    cli = [sys.executable, "-m", "tarry.runtime.cli", "dynamodb", "create-table", name]
    made = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert made.returncode == 0, made.stderr
    assert f"table {name} created" in made.stdout
    again = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "exists already" in again.stdout  # idempotent
    yield name
    boto3.client("dynamodb").delete_table(TableName=name)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_args(request: pytest.FixtureRequest) -> list[str]:
    """`tarry dev` arguments for each store the project has: the embedded SQLite store, or a
    fresh DynamoDB table (with a short lease, so a restarted process takes over its attempts
    within seconds)."""
    if request.param == "sqlite":
        return []
    name = request.getfixturevalue("table")
    return ["--store", f"dynamodb://{name}?lease=2s"]


@pytest.fixture(scope="session")
def ministack_url() -> str:
    """MiniStack's endpoint (scripts/test.sh starts it); skips, or fails under CI=true,
    without one."""
    return ministack()


@pytest.fixture
def lam(ministack_url: str) -> Any:
    """A boto3 Lambda client on MiniStack."""
    return lambda_client(ministack_url)


@pytest.fixture
def function_name(lam: Any) -> Iterator[str]:
    """A function name of the test's own; the function (and its workers) goes at teardown."""
    name = f"tarry-test-{uuid.uuid4().hex[:12]}"
    yield name
    for suffix in ("", "-wf"):
        with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
            lam.delete_function(FunctionName=name + suffix)
