"""The ingress and admin API over real HTTP, against `tarry dev` processes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import APPS, ROOT, TarryProcess

pytestmark = pytest.mark.integration

GREETER = str(ROOT / "examples" / "greeter.py")
COUNTER = str(ROOT / "examples" / "counter.py")
TESTAPP = str(APPS / "testapp.py")


def invocation_count(p: TarryProcess) -> int:
    return len(httpx.get(f"{p.admin}/invocations", params={"limit": 10_000}).json()["invocations"])


def test_greet_answers_with_the_invocation_id(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(GREETER, *store_args).start()
    reply = httpx.post(f"{p.ingress}/Greeter/greet", json="World")
    assert reply.status_code == 200
    assert reply.json() == "Hello World!"
    inv = httpx.get(f"{p.admin}/invocations/{reply.headers['x-restate-id']}").json()
    assert inv["status"] == "completed"
    assert [e["command"]["kind"] for e in inv["journal"]] == ["input", "output"]


def test_restate_call_and_send_prefixes(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(COUNTER, *store_args).start()
    assert httpx.post(f"{p.ingress}/restate/call/Counter/k/add", json=2).json() == 2
    sent = httpx.post(f"{p.ingress}/restate/send/Counter/k/add", json=3)
    assert sent.status_code == 202
    assert sent.json()["status"] == "Accepted"
    assert sent.headers["x-restate-id"] == sent.json()["invocationId"]


def test_counter_is_exclusive_per_key(tarry_dev: type[TarryProcess], store_args: list[str]) -> None:
    p = tarry_dev(COUNTER, *store_args).start()

    async def run() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def add(key: str) -> int:
                reply = await client.post(f"{p.ingress}/Counter/{key}/add", json=1)
                assert reply.status_code == 200, reply.text
                value: int = reply.json()
                return value

            values = await asyncio.gather(*(add(k) for _ in range(200) for k in ("a", "b")))
            return list(values[0::2]), list(values[1::2])

    a, b = asyncio.run(run())
    assert sorted(a) == list(range(1, 201))
    assert sorted(b) == list(range(1, 201))
    for key in ("a", "b"):
        assert httpx.post(f"{p.ingress}/Counter/{key}/get").json() == 200


def test_bad_input_is_refused_and_nothing_is_stored(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(COUNTER, *store_args, "--max-body-bytes", "1000").start()
    before = invocation_count(p)
    cases = [
        (httpx.post(f"{p.ingress}/Counter/a/add", content=b"{nope",
                    headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (httpx.post(f"{p.ingress}/Counter/a/add", json="seven"), 400, "schema"),
        (httpx.post(f"{p.ingress}/Counter/a/add"), 400, "no body; Counter/add expects integer"),
        (httpx.post(f"{p.ingress}/Nope/a/add", json=1), 404, "no service named 'Nope'"),
        (httpx.post(f"{p.ingress}/Counter/a/nope", json=1), 404, "no handler named 'nope'"),
        (httpx.post(f"{p.ingress}/Counter/a/add", json="x" * 2000), 413, "limit"),
        (httpx.post(f"{p.ingress}/Counter/a/get", json=5), 400, "takes no input"),
        (httpx.post(f"{p.ingress}/Counter/a/add/send?delay=soon", json=1), 400, "duration"),
        (httpx.post(f"{p.ingress}/Counter/a/add/send?delaySec=x", json=1), 400, "delaySec"),
        (httpx.post(f"{p.ingress}/Counter/a/add?delay=1s", json=1), 400, "only allowed with"),
        (httpx.post(f"{p.ingress}/Counter/add", json=1), 404, "keyed"),
    ]  # fmt: skip
    for reply, status, words in cases:
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert body["code"] == status
        assert words in body["message"]
    assert invocation_count(p) == before


def test_retries_show_in_describe_and_terminal_errors_do_not_retry(
    tarry_dev: type[TarryProcess],
    store_args: list[str],
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    ok = httpx.post(f"{p.ingress}/Flaky/twice_then_ok", json="x", timeout=30)
    assert ok.json() == "ok x"
    described = p.cli("invocations", "describe", ok.headers["x-restate-id"])
    assert described.returncode == 0, described.stderr
    assert "attempts          3" in described.stdout
    assert "transient failure 2" in described.stdout  # the last failure before success
    assert "completed" in described.stdout

    conflict = httpx.post(f"{p.ingress}/Flaky/conflict", json="ann")
    assert conflict.status_code == 409
    assert conflict.json() == {"code": 409, "message": "ann already exists"}
    inv = httpx.get(f"{p.admin}/invocations/{conflict.headers['x-restate-id']}").json()
    assert inv["attempts"] == 1
    listed = p.cli("invocations", "ls", "--service", "Flaky").stdout
    assert f"{inv['id']}  Flaky/conflict       failed (409)" in listed


def test_idempotency_key(tarry_dev: type[TarryProcess], store_args: list[str]) -> None:
    p = tarry_dev(COUNTER, *store_args).start()
    h = {"idempotency-key": "k1"}
    first = httpx.post(f"{p.ingress}/Counter/i/add/send", json=5, headers=h)
    again = httpx.post(f"{p.ingress}/Counter/i/add/send", json=5, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["status"] == "Accepted"
    assert again.json() == {"invocationId": first.json()["invocationId"],
                            "status": "PreviouslyAccepted"}  # fmt: skip
    call = httpx.post(f"{p.ingress}/Counter/i/add", json=5, headers=h)
    assert call.json() == 5  # the stored response, not a second add
    assert call.headers["x-restate-id"] == first.json()["invocationId"]
    assert httpx.post(f"{p.ingress}/Counter/i/get").json() == 5
    other = httpx.post(f"{p.ingress}/Counter/i/add", json=6, headers=h)
    assert other.status_code == 422
    assert "different request" in other.json()["message"]


def test_delayed_send_starts_no_earlier_than_asked(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(COUNTER, *store_args).start()
    sent = httpx.post(f"{p.ingress}/restate/send/Counter/d/add?delay=PT0.8S", json=1).json()
    assert "executionTime" in sent
    inv = httpx.get(f"{p.admin}/invocations/{sent['invocationId']}").json()
    assert inv["status"] == "scheduled"
    attached = asyncio.run(_wait_completed(p, sent["invocationId"]))
    assert attached["completed_at"] - attached["created_at"] >= 800


async def _wait_completed(p: TarryProcess, invocation_id: str, timeout: float = 15) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            inv = (await client.get(f"{p.admin}/invocations/{invocation_id}")).json()
            if inv["status"] == "completed":
                return inv  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)
    raise AssertionError(f"{invocation_id} did not complete in {timeout} s")


def test_calls_sends_and_select_between_services(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    assert httpx.post(f"{p.ingress}/Caller/add_twice", json="c").json() == [1, 2]
    child = httpx.post(f"{p.ingress}/Caller/send_later", json="c").json()
    inv = asyncio.run(_wait_completed(p, child))
    assert inv["completed_at"] - inv["created_at"] >= 500
    assert httpx.post(f"{p.ingress}/Counter/c/get").json() == 12
    assert httpx.post(f"{p.ingress}/Caller/race", json=50, timeout=20).json() == "fast"
    assert httpx.post(f"{p.ingress}/Caller/unknown").json().startswith("404: no handler Nope")
    dropped = httpx.post(f"{p.ingress}/Caller/send_unknown").json()
    failed = httpx.get(f"{p.admin}/invocations/{dropped}").json()  # visible, not dropped
    assert failed["status"] == "completed"
    assert failed["completion"]["failure"]["code"] == 404


def test_cli_lists_and_describes(tarry_dev: type[TarryProcess], store_args: list[str]) -> None:
    p = tarry_dev(GREETER, *store_args).start()
    reply = httpx.post(f"{p.ingress}/Greeter/greet", json="Ann")
    listed = p.cli("invocations", "ls")
    assert reply.headers["x-restate-id"] in listed.stdout
    assert "Greeter/greet" in listed.stdout
    services = p.cli("services", "ls")
    assert "Greeter" in services.stdout and "greet_later" in services.stdout
    deployments = p.cli("deployments", "ls")
    assert "inprocess:" in deployments.stdout
    missing = p.cli("invocations", "describe", "inv_nope")
    assert missing.returncode == 1
    assert "404" in missing.stderr


def test_cli_says_when_the_runtime_is_not_running(tarry_dev: type[TarryProcess]) -> None:
    p = tarry_dev(GREETER)  # never started
    result = p.cli("invocations", "ls")
    assert result.returncode == 1
    assert "cannot reach the tarry admin API" in result.stderr
