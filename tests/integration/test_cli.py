"""What `tarry dev` says when it cannot start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess, free_port

pytestmark = pytest.mark.integration

GREETER = str(ROOT / "examples" / "greeter.py")


def _dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tarry.runtime.cli", "dev", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )  # fmt: skip


def test_a_second_runtime_on_the_same_data_dir_refuses_to_start(
    tarry_dev: type[TarryProcess],
) -> None:
    first = tarry_dev(GREETER).start()
    second = _dev(
        GREETER, "--data-dir", str(first.data_dir),
        "--ingress-port", str(free_port()), "--admin-port", str(free_port()),
    )  # fmt: skip
    assert second.returncode != 0
    assert "another tarry process is using" in second.stderr
    assert httpx.post(f"{first.ingress}/Greeter/greet", json="A").json() == "Hello A!"


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _dev(
            GREETER, "--data-dir", str(tmp_path),
            "--ingress-port", str(port), "--admin-port", str(free_port()),
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--ingress-port" in result.stderr
    assert "tarry: ingress on" not in result.stderr  # no banner for a runtime that is not up


def test_an_app_without_services_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    result = _dev(str(empty), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "defines no Service, VirtualObject or Workflow" in result.stderr
    missing = _dev(str(tmp_path / "nope.py"), "--data-dir", str(tmp_path / "d"))
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("import tarry\ndef broken(:\n", "line 2: invalid syntax: fix the syntax error"),
        ("import tarry\nimport no_such_module_here\n",
         "at app.py:2: No module named 'no_such_module_here' (pip install the package"),
        ("import tarry\n\n\nraise RuntimeError('boom')\n",
         "at app.py:4: RuntimeError: boom (-v shows the traceback)"),
    ],
)  # fmt: skip
def test_an_app_that_fails_to_load_gets_one_line(tmp_path: Path, source: str, said: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(source)
    result = _dev(str(app), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert said in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    verbose = _dev(str(app), "--data-dir", str(tmp_path / "d"), "-v")
    assert "Traceback" in verbose.stderr and said in verbose.stderr  # -v shows where


def test_a_module_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = _dev("examples.no_such_example", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "no file or module named 'examples.no_such_example'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ingress-port", "70000"], "'--ingress-port': 70000 is not in the range 0<=x<=65535"),
        (["--admin-port", "-1"], "'--admin-port': -1 is not in the range"),
        (["--host", "999.1.1.1"], "(give --host an address of this machine"),
        (["--host", "192.0.2.77"], "(give --host an address of this machine"),
        (["--shutdown-grace", "soon"], "--shutdown-grace"),
    ],
)
def test_a_bad_listen_option_names_itself(tmp_path: Path, args: list[str], said: str) -> None:
    result = _dev(GREETER, "--data-dir", str(tmp_path / "d"), *args)
    assert result.returncode in (1, 2)
    assert said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "choose another" not in result.stderr or "port" in args[0]


def test_the_lock_message_names_the_option_given(
    tarry_dev: type[TarryProcess], tmp_path: Path
) -> None:
    first = tarry_dev(GREETER).start()
    ports = ["--ingress-port", str(free_port()), "--admin-port", str(free_port())]
    by_dir = _dev(GREETER, "--data-dir", str(first.data_dir), *ports)
    assert "Invalid value for --data-dir" in by_dir.stderr, by_dir.stderr
    by_url = _dev(GREETER, "--store", f"sqlite:///{first.data_dir / 'tarry.db'}", *ports)
    assert "Invalid value for --store" in by_url.stderr, by_url.stderr


def test_dev_serves_exactly_the_services_of_the_files_app(
    tarry_dev: type[TarryProcess], tmp_path: Path
) -> None:
    """As uvicorn would: a file that makes `app = tarry.app([...])` is served as that app."""
    app = tmp_path / "two.py"
    app.write_text(
        "import tarry\n"
        "public = tarry.Service('Public')\n"
        "internal = tarry.Service('Internal')\n"
        "@public.handler()\nasync def hi(ctx: tarry.Context) -> str:\n    return 'hi'\n"
        "@internal.handler()\nasync def secret(ctx: tarry.Context) -> str:\n    return 'no'\n"
        "app = tarry.app([public])\n"
    )
    p = tarry_dev(str(app)).start()
    assert httpx.post(f"{p.ingress}/Public/hi").json() == "hi"
    assert httpx.post(f"{p.ingress}/Internal/secret").status_code == 404
    listed = p.cli("services", "ls")
    assert "Public" in listed.stdout and "Internal" not in listed.stdout


def test_serve_says_why_the_services_of_a_stopped_dev_answer_404(
    tarry_dev: type[TarryProcess], tmp_path: Path
) -> None:
    dev = tarry_dev(GREETER).start()
    assert httpx.post(f"{dev.ingress}/Greeter/greet", json="A").json() == "Hello A!"
    dev.stop()
    serve = TarryProcess(["serve", "--store", f"sqlite:///{dev.data_dir / 'tarry.db'}"],
                         dev.data_dir)  # fmt: skip
    serve.start()
    try:
        assert "registered by a `tarry dev` that is not running" in serve.log()
        assert "Greeter" in serve.log()
        reply = httpx.post(f"{serve.ingress}/Greeter/greet", json="A")
        assert reply.status_code == 404
        assert "was served by `tarry dev`" in reply.json()["message"], reply.text
    finally:
        serve.stop()


def test_a_dynamodb_store_without_the_aws_extra_says_what_to_install(tmp_path: Path) -> None:
    """As if `pip install tarry` without [aws]: the AWS SDKs cannot be imported."""
    without_aws = (
        "import sys\n"
        "for name in ('aioboto3', 'aiobotocore', 'boto3', 'botocore'):\n"
        "    sys.modules[name] = None\n"
        "from tarry.runtime.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", without_aws, "dev", GREETER, "--data-dir", str(tmp_path),
         "--store", "dynamodb://t"],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs the aws extra: pip install 'tarry[aws]'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
