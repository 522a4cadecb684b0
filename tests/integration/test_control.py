"""Controlling invocations and object state through the `tarry` CLI (cancel, kill, pause,
resume, purge, ls, describe; state get/set/clear), checked over the admin and ingress APIs of
real `tarry dev` processes."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import APPS, TarryProcess, call, held_awakeable, holding

pytestmark = pytest.mark.integration

TESTAPP = str(APPS / "testapp.py")
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"


def send(p: TarryProcess, path: str, body: Any = None) -> str:
    reply = httpx.post(f"{p.ingress}/{path}/send", json=body)
    assert reply.status_code == 202, reply.text
    invocation_id: str = reply.json()["invocationId"]
    return invocation_id


def hold(p: TarryProcess, key: str) -> tuple[str, str]:
    """Start `Holder/{key}/hold` and wait until it suspends: (its id, its awakeable)."""
    invocation_id = send(p, f"Holder/{key}/hold")
    return invocation_id, held_awakeable(p, key)


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    out: str = result.stdout
    return out


def failure(inv: dict[str, Any]) -> dict[str, Any]:
    assert inv["status"] == "completed", inv
    found: dict[str, Any] = inv["completion"]["failure"]
    return found


def test_kill_completes_at_once_and_releases_the_key(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    a, _ = hold(p, "k")
    b = send(p, "Holder/k/note", "after")
    p.wait_status(b, "pending")  # behind A on the key
    with ThreadPoolExecutor(2) as pool:
        attached = call(pool, "GET", f"{p.ingress}/restate/invocation/{a}/attach")
        assert f"killed {a}" in ok(p.cli("invocations", "kill", a))
        reply = attached.result()
    assert reply.status_code == 409, reply.text
    assert reply.json() == {"code": 409, "message": "killed"}
    assert failure(p.invocation(a)) == {"code": 409, "message": "killed"}
    assert p.wait_status(b, "completed")["completion"] == {"value": "after"}
    described = ok(p.cli("invocations", "describe", a))
    assert re.search(r"^status\s+killed \(409\)$", described, re.M), described
    assert "value" not in httpx.get(f"{p.admin}/state/Holder/k").json()["state"]

    # killing a caller kills the call it waits on, and frees that key too
    with ThreadPoolExecutor(1) as pool:
        waiting = call(pool, "POST", f"{p.ingress}/Caller/call_hold", json="k2")
        child = holding(p, "k2")
        parent = p.invocation(child)["caller_id"]
        p.wait_status(parent, "suspended")
        ok(p.cli("invocations", "kill", parent))
        assert waiting.result().json() == {"code": 409, "message": "killed"}
    assert failure(p.wait_status(child, "completed")) == {"code": 409, "message": "killed"}
    assert httpx.post(f"{p.ingress}/Holder/k2/note", json="free", timeout=15).json() == "free"

    missing = p.cli("invocations", "kill", "inv_nope")
    assert missing.returncode == 1
    assert "404" in missing.stderr and "inv_nope" in missing.stderr


def test_a_paused_invocation_keeps_its_key_and_its_completions(
    tarry_dev: type[TarryProcess],
    store_args: list[str],
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    a, awk = hold(p, "p")
    not_paused = p.cli("invocations", "resume", a)
    assert not_paused.returncode == 1
    assert f"409: {a} is suspended, not paused" in not_paused.stderr
    assert f"paused {a}: now paused" in ok(p.cli("invocations", "pause", a))
    assert p.invocation(a)["status"] == "paused"
    b = send(p, "Holder/p/note", "behind")
    p.wait_status(b, "pending")

    resolved = httpx.post(f"{p.ingress}/restate/awakeables/{awk}/resolve", json="while paused")
    assert resolved.status_code == 202, resolved.text
    described = ok(p.cli("invocations", "describe", a))
    assert re.search(r"^status\s+paused$", described, re.M), described
    assert p.invocation(a)["status"] == "paused"
    assert p.invocation(b)["status"] == "pending"  # A keeps its place on the key

    assert f"resumed {a}" in ok(p.cli("invocations", "resume", a))
    done_a = p.wait_status(a, "completed")
    assert done_a["completion"] == {"value": "while paused"}
    done_b = p.wait_status(b, "completed")
    assert done_b["completion"] == {"value": "behind"}
    assert done_a["completed_at"] <= done_b["completed_at"]
    state = httpx.get(f"{p.admin}/state/Holder/p").json()["state"]
    assert state["value"] == "while paused" and state["note"] == "behind"

    again = p.cli("invocations", "resume", a)
    assert again.returncode == 1
    assert f"{a} is completed, not paused" in again.stderr


def test_cancel_reaches_the_call_it_waits_on(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    with ThreadPoolExecutor(1) as pool:
        waiting = call(pool, "POST", f"{p.ingress}/Caller/call_hold", json="c")
        child = holding(p, "c")
        parent = p.invocation(child)["caller_id"]
        p.wait_status(parent, "suspended")
        assert f"cancel requested for {parent}" in ok(p.cli("invocations", "cancel", parent))
        reply = waiting.result()
    assert reply.status_code == 409, reply.text
    assert reply.json() == {"code": 409, "message": "cancelled"}
    assert failure(p.wait_status(child, "completed")) == {"code": 409, "message": "cancelled"}
    assert failure(p.invocation(parent)) == {"code": 409, "message": "cancelled"}
    freed = httpx.post(f"{p.ingress}/Holder/c/note", json="free", timeout=15)
    assert freed.json() == "free"
    listed = ok(p.cli("invocations", "ls", "--service", "Holder"))
    assert re.search(rf"^{child}\s+Holder/c/hold\s+cancelled \(409\)", listed, re.M), listed

    # a paused invocation is resumed to receive the cancellation
    paused, _ = hold(p, "cp")
    ok(p.cli("invocations", "pause", paused))
    behind = send(p, "Holder/cp/note", "next")
    p.wait_status(behind, "pending")
    ok(p.cli("invocations", "cancel", paused))
    assert failure(p.wait_status(paused, "completed")) == {"code": 409, "message": "cancelled"}
    assert p.wait_status(behind, "completed")["completion"] == {"value": "next"}


def test_a_completed_invocation_cannot_be_cancelled_or_killed(
    tarry_dev: type[TarryProcess],
    store_args: list[str],
) -> None:
    """As in Restate's admin API: 409, "already completed" (purge it instead)."""
    p = tarry_dev(TESTAPP, *store_args).start()
    done = httpx.post(f"{p.ingress}/Counter/dk/add", json=1).headers["x-restate-id"]
    for action in ("cancel", "kill"):
        refused = p.cli("invocations", action, done)
        assert refused.returncode == 1, (action, refused.stdout)
        assert f"409: {done} is completed" in refused.stderr
    assert p.invocation(done)["completion"] == {"value": 1}


def test_purge(tarry_dev: type[TarryProcess], store_args: list[str]) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    added = httpx.post(f"{p.ingress}/Counter/pz/add", json=1)
    done = added.headers["x-restate-id"]
    assert f"purged {done}" in ok(p.cli("invocations", "purge", done))
    assert httpx.get(f"{p.admin}/invocations/{done}").status_code == 404
    described = p.cli("invocations", "describe", done)
    assert described.returncode == 1
    assert f"404: no invocation {done}" in described.stderr
    assert httpx.post(f"{p.ingress}/Counter/pz/get").json() == 1  # the object's state stays

    running, _ = hold(p, "pr")
    refused = p.cli("invocations", "purge", running)
    assert refused.returncode == 1
    assert "only a completed invocation can be purged" in refused.stderr
    assert p.invocation(running)["status"] == "suspended"

    key = {"Idempotency-Key": "once"}
    first = httpx.post(f"{p.ingress}/Counter/pi/add", json=5, headers=key)
    again = httpx.post(f"{p.ingress}/Counter/pi/add", json=5, headers=key)
    assert first.json() == again.json() == 5
    assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    ok(p.cli("invocations", "purge", first.headers["x-restate-id"]))
    fresh = httpx.post(f"{p.ingress}/Counter/pi/add", json=5, headers=key)
    assert fresh.json() == 10  # a new invocation ran
    assert fresh.headers["x-restate-id"] != first.headers["x-restate-id"]


def test_ls_filters_and_describe_shows_the_timeline(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    held, awk = hold(p, "l")
    counted = httpx.post(f"{p.ingress}/Counter/l/add", json=1).headers["x-restate-id"]

    suspended = ok(p.cli("invocations", "ls", "--service", "Holder", "--status", "suspended"))
    assert held in suspended and counted not in suspended
    assert ok(p.cli("invocations", "ls", "--service", "Counter")).count("inv_") == 1
    assert counted not in ok(p.cli("invocations", "ls", "--status", "suspended"))
    assert held not in ok(p.cli("invocations", "ls", "--status", "completed"))
    assert "inv_" not in ok(p.cli("invocations", "ls", "--service", "Holder", "--status", "paused"))
    assert counted in ok(p.cli("invocations", "ls", "--status", "succeeded"))
    assert counted not in ok(p.cli("invocations", "ls", "--status", "failed"))
    bogus = p.cli("invocations", "ls", "--status", "bogus")
    assert bogus.returncode == 2
    assert "Invalid value for '--status'" in bogus.stderr
    assert "'bogus' is not one of" in bogus.stderr

    waiting = ok(p.cli("invocations", "describe", held))
    assert re.search(rf"^1\s+awakeable\s+{awk}\s+\(waiting\)\s+{WHEN}$", waiting, re.M), waiting

    assert httpx.post(f"{p.ingress}/restate/a/{awk}/resolve", json="seen").status_code == 202
    journal = p.wait_status(held, "completed")["journal"]
    described = ok(p.cli("invocations", "describe", held))
    rows = described.split("\n\n", 1)[1].splitlines()
    assert rows[0].split() == ["#", "ENTRY", "NAME", "RESULT", "WHEN"]
    kinds = ["input", "awakeable", "set_state", "set_state", "output"]
    assert [e["command"]["kind"] for e in journal] == kinds
    assert len(rows) == 1 + len(kinds)
    for index, (row, kind) in enumerate(zip(rows[1:], kinds, strict=True)):
        assert re.match(rf"{index}\s+{kind}\s.*{WHEN}", row), row
    # the awakeable's row: created, then completed later with the value
    assert re.search(rf'=> "seen"\s+{WHEN} → {WHEN}$', rows[2]), rows[2]
    assert '"seen"' in rows[5]
    assert re.search(rf"^completed\s+{WHEN}$", described, re.M)


def test_state_cli(tarry_dev: type[TarryProcess], store_args: list[str]) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    assert '"total": 5' in ok(p.cli("state", "set", "Counter", "k", "total", "5"))
    assert ok(p.cli("state", "get", "Counter", "k")).strip() == '{\n  "total": 5\n}'
    assert httpx.post(f"{p.ingress}/Counter/k/get").json() == 5
    assert httpx.post(f"{p.ingress}/Counter/k/add", json=1).json() == 6
    ok(p.cli("state", "set", "Counter", "k", "label", "not json"))
    state = httpx.get(f"{p.admin}/state/Counter/k").json()["state"]
    assert state == {"total": 6, "label": "not json"}

    assert ok(p.cli("state", "clear", "Counter", "k", "label")).strip() == '{\n  "total": 6\n}'
    assert ok(p.cli("state", "clear", "Counter", "k")).strip() == "{}"
    assert httpx.get(f"{p.admin}/state/Counter/k").json()["state"] == {}
    assert httpx.post(f"{p.ingress}/Counter/k/get").json() == 0

    held, awk = hold(p, "s")
    for edit in (("set", "Holder", "s", "note", "x"), ("clear", "Holder", "s")):
        refused = p.cli("state", *edit)
        assert refused.returncode == 1
        assert f"409: Holder/s is in use by invocation {held}" in refused.stderr
    assert httpx.get(f"{p.admin}/state/Holder/s").json()["state"] == {"awakeable": awk}

    service = p.cli("state", "set", "Caller", "k", "a", "1")
    assert service.returncode == 1
    assert "Caller is a service; only objects and workflows have state" in service.stderr
    for edit in (("set", "Nope", "k", "a", "1"), ("clear", "Nope", "k"), ("get", "Nope", "k")):
        unknown = p.cli("state", *edit)
        assert unknown.returncode == 1, (edit, unknown.stdout)
        assert "no service named 'Nope'" in unknown.stderr
