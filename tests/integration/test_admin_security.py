"""The admin API as an attacker finds it: a page in the user's browser, a neighbour on the
network, a name rebound to 127.0.0.1. It can register a deployment that takes over a service
and then reads and writes its state, so none of them may change anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess

APP = "tests/apps/testapp.py"
TOKEN = "a3f1c0ffee-admin-token-for-tests-0123456789"


def _deployments(p: TarryProcess, **headers: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{p.admin}/deployments", headers=headers)
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["deployments"]
    return found


def _counter(p: TarryProcess, key: str, **headers: str) -> dict[str, Any]:
    reply = httpx.get(f"{p.admin}/state/Counter/{key}", headers=headers)
    assert reply.status_code == 200, reply.text
    state: dict[str, Any] = reply.json()["state"]
    return state


def test_a_browser_cannot_forge_a_change(tarry_dev: Any, store_args: list[str]) -> None:
    p = tarry_dev(APP, *store_args).start()
    assert httpx.post(f"{p.ingress}/Counter/c/add", json=2).json() == 2
    before = _deployments(p)
    takeover = '{"uri": "http://attacker.example:9080"}'
    forged = [
        # a form or fetch with a "simple" content type: no preflight, so the browser sends it
        {"content-type": "text/plain", "origin": "https://evil.example"},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {},
        # JSON from another origin (a preflight the API never grants; refused anyway)
        {"content-type": "application/json", "origin": "https://evil.example"},
        {"content-type": "application/json", "origin": "null"},
        {"content-type": "application/json", "sec-fetch-site": "cross-site"},
        # a name the attacker controls, rebound to 127.0.0.1
        {"content-type": "application/json", "host": "evil.example"},
    ]
    for headers in forged:
        reply = httpx.post(f"{p.admin}/deployments", content=takeover, headers=headers)
        assert reply.status_code in (403, 415), (headers, reply.status_code, reply.text)
        assert reply.json()["code"] == reply.status_code and reply.json()["message"]
        edit = httpx.patch(
            f"{p.admin}/state/Counter/c", content='{"set": {"total": 1000}}', headers=headers
        )
        assert edit.status_code in (403, 415), (headers, edit.text)
        cancel = httpx.post(f"{p.admin}/invocations/inv_x/cancel", headers=headers)
        assert cancel.status_code in (403, 415), (headers, cancel.text)
    assert httpx.get(f"{p.admin}/deployments", headers={"host": "evil.example"}).status_code == 403
    assert _deployments(p) == before
    assert _counter(p, "c") == {"total": 2}

    # the same requests, as the CLI and a same-origin page send them, go through
    same_origin = {"content-type": "application/json", "origin": p.admin}
    edit = httpx.patch(f"{p.admin}/state/Counter/c", json={"set": {"total": 7}},
                       headers=same_origin)  # fmt: skip
    assert edit.status_code == 200, edit.text
    assert httpx.post(f"{p.ingress}/Counter/c/add", json=1).json() == 8


def _dev(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tarry.runtime.cli", "dev", APP, "--data-dir", str(tmp_path / "d"),
         *args],
        cwd=ROOT, env={**_env(), **(env or {})}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TARRY_ADMIN_TOKEN"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_an_admin_api_beyond_loopback_needs_a_token(tmp_path: Path, host: str) -> None:
    proc = _dev(tmp_path, "--admin-host", host, "--ingress-port", "0", "--admin-port", "0")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err
    assert f"--admin-host {host}" in err and "TARRY_ADMIN_TOKEN" in err, err
    assert not (tmp_path / "d" / "tarry.db").exists()  # refused before anything was opened


def test_a_weak_or_missing_token_file_is_refused(tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    weak.write_text("hunter2\n")
    for path, said in ((weak, "at least 16"), (tmp_path / "missing", "cannot read")):
        proc = _dev(tmp_path, "--admin-host", "0.0.0.0", "--admin-token-file", str(path))
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, (out, err)
        assert said in err and "Traceback" not in err, err


def test_with_a_token_every_admin_request_carries_it(
    tarry_dev: Any, store_args: list[str], tmp_path: Path
) -> None:
    p = tarry_dev(APP, *store_args, "--admin-host", "0.0.0.0",
                  env={"TARRY_ADMIN_TOKEN": TOKEN}).start()  # fmt: skip
    assert httpx.post(f"{p.ingress}/Counter/t/add", json=5).json() == 5
    bearer = {"authorization": f"Bearer {TOKEN}"}
    for headers in ({}, {"authorization": "Bearer wrong-token-wrong-token"},
                    {"authorization": TOKEN}, {"authorization": f"Basic {TOKEN}"}):  # fmt: skip
        for method, path in (("GET", "/deployments"), ("GET", "/state/Counter/t"),
                             ("GET", "/invocations")):  # fmt: skip
            reply = httpx.request(method, f"{p.admin}{path}", headers=headers)
            assert reply.status_code == 401, (headers, path, reply.text)
            assert reply.headers["www-authenticate"].startswith("Bearer")
        edit = httpx.patch(f"{p.admin}/state/Counter/t", json={"set": {"total": 0}},
                           headers=headers)  # fmt: skip
        assert edit.status_code == 401
    assert httpx.get(f"{p.admin}/health").status_code == 200  # a liveness probe needs no token
    # with the token, a request from any Host goes through (the token is the capability)
    assert _counter(p, "t", **bearer, host="tarry.internal:9070") == {"total": 5}

    # the CLI sends the token from the environment or from --admin-token-file
    no_token = _env()
    refused = subprocess.run(
        [sys.executable, "-m", "tarry.runtime.cli", "state", "get", "Counter", "t",
         "--admin-url", p.admin], capture_output=True, text=True, cwd=ROOT, env=no_token,
    )  # fmt: skip
    assert refused.returncode == 1 and "401" in refused.stderr, refused.stderr
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    for args, env in (([], {**no_token, "TARRY_ADMIN_TOKEN": TOKEN}),
                      (["--admin-token-file", str(token_file)], no_token)):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "tarry.runtime.cli", "state", "set", "Counter", "t", "total",
             "11", "--admin-url", p.admin, *args], capture_output=True, text=True, cwd=ROOT,
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert httpx.post(f"{p.ingress}/Counter/t/add", json=1).json() == 12


def test_the_cli_addresses_keys_made_of_dots(tarry_dev: Any, store_args: list[str]) -> None:
    p = tarry_dev(APP, *store_args).start()
    for key, count in ((".", 1), ("..", 2), ("...", 3)):
        done = p.cli("state", "set", "Counter", key, "total", str(count))
        assert done.returncode == 0, done.stderr
    for key, count in ((".", 1), ("..", 2), ("...", 3)):
        got = p.cli("state", "get", "Counter", key)
        assert got.returncode == 0, got.stderr
        assert '"total": ' + str(count) in got.stdout, (key, got.stdout)
    assert _counter(p, "%2E%2E") == {"total": 2}
    cleared = p.cli("state", "clear", "Counter", "..")
    assert cleared.returncode == 0, cleared.stderr
    assert _counter(p, "%2E%2E") == {} and _counter(p, "%2E") == {"total": 1}
