"""The ingress's own API under `/restate/`: awakeables, and results by id, idempotency key or
JSON target, against real `tarry dev` processes."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS, TarryProcess, call, held_awakeable, holding

pytestmark = pytest.mark.integration

TESTAPP = str(APPS / "testapp.py")
UNKNOWN_INVOCATION = "inv_" + "0" * 32


def assert_error(reply: httpx.Response, status: int, words: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["code"] == status
    assert words in body["message"], body


def test_awakeables_complete_over_http_and_from_handlers(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    with ThreadPoolExecutor(4) as pool:
        # resolve with a JSON body: the call waiting on the handler gets the value
        waiting = call(pool, "POST", f"{p.ingress}/Holder/a/hold")
        awk = held_awakeable(p, "a")
        holder = holding(p, "a")
        resolved = httpx.post(f"{p.ingress}/restate/awakeables/{awk}/resolve", json="blue")
        assert resolved.status_code == 202, resolved.text
        reply = waiting.result()
        assert reply.status_code == 200, reply.text
        assert reply.json() == "blue"
        assert reply.headers["x-restate-id"] == holder

        # the short alias
        waiting = call(pool, "POST", f"{p.ingress}/Holder/b/hold")
        alias = held_awakeable(p, "b")
        assert httpx.post(f"{p.ingress}/restate/a/{alias}/resolve", json="green").status_code == 202
        assert waiting.result().json() == "green"

        # reject with a text body: the handler sees a TerminalError with that message
        waiting = call(pool, "POST", f"{p.ingress}/Holder/c/hold")
        rejected = held_awakeable(p, "c")
        reply = httpx.post(
            f"{p.ingress}/restate/awakeables/{rejected}/reject", content=b"no thanks"
        )
        assert reply.status_code == 202, reply.text
        assert_error(waiting.result(), 500, "no thanks")

    # a second completion is refused and the first one stands
    assert_error(httpx.post(f"{p.ingress}/restate/a/{awk}/resolve", json="red"), 409, "already")
    assert_error(httpx.post(f"{p.ingress}/restate/a/{awk}/reject", content=b"x"), 409, "already")
    assert httpx.get(f"{p.ingress}/restate/output/{holder}").json() == "blue"
    assert httpx.get(f"{p.admin}/state/Holder/a").json()["state"]["value"] == "blue"

    # unknown awakeables: 404 with a JSON error
    altered = awk[:-3] + ("B" if awk[-3] == "A" else "A") + awk[-2:]
    for unknown in ("garbage", awk[:-1], altered):
        reply = httpx.post(f"{p.ingress}/restate/awakeables/{unknown}/resolve", json="x")
        assert_error(reply, 404, unknown)

    # from a handler: the first resolution completes it, a second one reports 409
    waiting_id = httpx.post(f"{p.ingress}/Holder/d/hold/send").json()["invocationId"]
    from_handler = held_awakeable(p, "d")
    ok = httpx.post(f"{p.ingress}/Caller/resolve", json=[from_handler, "from a handler"])
    assert ok.json() == "ok"
    done = p.wait_status(waiting_id, "completed")
    assert done["completion"] == {"value": "from a handler"}
    again = httpx.post(f"{p.ingress}/Caller/resolve", json=[from_handler, "too late"]).json()
    assert again.startswith("409: "), again
    assert "already completed" in again
    unknown = httpx.post(f"{p.ingress}/Caller/resolve", json=["garbage", "x"]).json()
    assert unknown.startswith("404: "), unknown


def derived(invocation_id: str, index: int) -> str:
    """An awakeable id as anyone holding the invocation id could make it before ids carried a
    MAC (the ``awk_1`` format: the invocation id and the journal index, base64-encoded)."""
    raw = f"{invocation_id}:{index}".encode()
    return "awk_1" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_knowing_an_invocation_id_is_not_enough_to_resolve_its_awakeable(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    # The caller who started it has its id (the 202 body, x-restate-id), as anyone it shares
    # the id with; the awakeable's id went elsewhere (here: into the object's state).
    started = httpx.post(f"{p.ingress}/Holder/x/hold/send")
    invocation_id = started.json()["invocationId"]
    assert started.headers["x-restate-id"] == invocation_id
    awk = held_awakeable(p, "x")

    for index in range(4):
        for verb, body in (("resolve", b'"forged"'), ("reject", b"forged")):
            forged = derived(invocation_id, index)
            for path in (f"awakeables/{forged}", f"a/{forged}"):
                reply = httpx.post(f"{p.ingress}/restate/{path}/{verb}", content=body)
                assert_error(reply, 404, forged)
                assert set(reply.json()) == {"code", "message"}
    assert p.invocation(invocation_id)["status"] == "suspended"
    assert "value" not in httpx.get(f"{p.admin}/state/Holder/x").json()["state"]

    # whoever holds the real id can
    assert httpx.post(f"{p.ingress}/restate/a/{awk}/resolve", json="real").status_code == 202
    assert p.wait_status(invocation_id, "completed")["completion"] == {"value": "real"}


def test_a_resolution_before_the_entry_is_stored_is_kept(
    tarry_dev: type[TarryProcess], store_args: list[str], tmp_path: Path
) -> None:
    leaked, go = tmp_path / "awakeable.txt", tmp_path / "go"
    p = tarry_dev(
        TESTAPP, *store_args, env={"AWAKEABLE_FILE": str(leaked), "GO_FILE": str(go)}
    ).start()
    invocation_id = httpx.post(f"{p.ingress}/Waits/early/send").json()["invocationId"]
    deadline = time.monotonic() + 15
    while not (leaked.exists() and leaked.read_text()):
        assert time.monotonic() < deadline, "Waits/early never wrote its awakeable id"
        time.sleep(0.02)
    awk = leaked.read_text()
    # the attempt is still in its step: only the input is stored, not the awakeable entry
    inv = p.invocation(invocation_id)
    assert inv["status"] == "running"
    assert [e["command"]["kind"] for e in inv["journal"]] == ["input"]

    resolved = httpx.post(f"{p.ingress}/restate/awakeables/{awk}/resolve", json="early")
    assert resolved.status_code == 202, resolved.text
    go.touch()
    done = p.wait_status(invocation_id, "completed")
    assert done["completion"] == {"value": "early"}
    assert [e["command"]["kind"] for e in done["journal"]] == [
        "input",
        "awakeable",
        "run",
        "output",
    ]


def test_results_by_id_idempotency_key_and_json_target(
    tarry_dev: type[TarryProcess], store_args: list[str]
) -> None:
    p = tarry_dev(TESTAPP, *store_args).start()
    running = httpx.post(f"{p.ingress}/Holder/o/hold/send").json()["invocationId"]
    awk = held_awakeable(p, "o")

    not_ready = httpx.get(f"{p.ingress}/restate/invocation/{running}/output")
    assert_error(not_ready, 470, "not ready")
    assert not_ready.headers["x-restate-id"] == running
    assert httpx.get(f"{p.ingress}/restate/output/{running}").status_code == 470
    with ThreadPoolExecutor(4) as pool:
        attached = call(pool, "GET", f"{p.ingress}/restate/invocation/{running}/attach")
        short = call(pool, "GET", f"{p.ingress}/restate/attach/{running}")
        from_handler = call(pool, "POST", f"{p.ingress}/Caller/attach", json=running)
        by_target = call(pool, "POST", f"{p.ingress}/restate/attach",
                         json={"target": "invocation", "invocationId": running})  # fmt: skip
        # all four wait for the result (it needs the awakeable, resolved only below)
        assert p.invocation(running)["status"] == "suspended"
        assert not any(f.done() for f in (attached, short, from_handler, by_target))
        assert httpx.post(f"{p.ingress}/restate/a/{awk}/resolve", json="out").status_code == 202
        for waiting in (attached, short, from_handler, by_target):
            reply = waiting.result()
            assert reply.status_code == 200, reply.text
            assert reply.json() == "out"
        assert attached.result().headers["x-restate-id"] == running

    for path in (f"invocation/{running}/output", f"output/{running}", f"attach/{running}"):
        reply = httpx.get(f"{p.ingress}/restate/{path}")
        assert reply.status_code == 200, (path, reply.text)
        assert reply.json() == "out"
    target = {"target": "invocation", "invocationId": running}
    assert httpx.post(f"{p.ingress}/restate/output", json=target).json() == "out"
    assert httpx.post(f"{p.ingress}/restate/lookup", json=target).json() == {
        "invocationId": running
    }
    assert httpx.post(f"{p.ingress}/Caller/attach", json=running).json() == "out"

    # by idempotency key
    added = httpx.post(f"{p.ingress}/Counter/ik/add", json=3, headers={"Idempotency-Key": "i1"})
    assert added.json() == 3
    added_id = added.headers["x-restate-id"]
    for verb in ("output", "attach"):
        reply = httpx.get(f"{p.ingress}/restate/invocation/Counter/ik/add/i1/{verb}")
        assert reply.status_code == 200, reply.text
        assert reply.json() == 3
        assert reply.headers["x-restate-id"] == added_id
    idempotent = {"target": "idempotentInvocation", "service": "Counter", "key": "ik",
                  "handler": "add", "idempotencyKey": "i1"}  # fmt: skip
    assert httpx.post(f"{p.ingress}/restate/output", json=idempotent).json() == 3
    assert httpx.post(f"{p.ingress}/restate/attach", json=idempotent).json() == 3
    assert httpx.post(f"{p.ingress}/restate/lookup", json=idempotent).json() == {
        "invocationId": added_id
    }
    assert httpx.post(f"{p.ingress}/Counter/ik/get").json() == 3  # looking did not add again

    # unknown invocations: 404
    unknown = [
        httpx.get(f"{p.ingress}/restate/invocation/{UNKNOWN_INVOCATION}/output"),
        httpx.get(f"{p.ingress}/restate/attach/{UNKNOWN_INVOCATION}"),
        httpx.get(f"{p.ingress}/restate/invocation/Counter/ik/add/nope/attach"),
        httpx.post(f"{p.ingress}/restate/lookup", json={**idempotent, "idempotencyKey": "nope"}),
        httpx.post(f"{p.ingress}/restate/output",
                   json={"target": "invocation", "invocationId": UNKNOWN_INVOCATION}),
    ]  # fmt: skip
    for reply in unknown:
        assert_error(reply, 404, "not found")
    failed = httpx.post(f"{p.ingress}/Caller/attach", json=UNKNOWN_INVOCATION)
    assert failed.status_code == 404, failed.text
    assert failed.json()["code"] == 404

    # targets that are not understood: 400
    bad = [
        httpx.post(f"{p.ingress}/restate/lookup", json={"target": "bogus"}),
        httpx.post(f"{p.ingress}/restate/output", json=["invocation"]),
        httpx.post(f"{p.ingress}/restate/attach", json={"target": "invocation"}),
        httpx.post(f"{p.ingress}/restate/lookup", content=b"{nope",
                   headers={"content-type": "application/json"}),
    ]  # fmt: skip
    for reply in bad:
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == 400
    assert "'bogus'" in bad[0].json()["message"]
    assert "invocationId" in bad[2].json()["message"]
    assert "not valid JSON" in bad[3].json()["message"]
    assert_error(httpx.get(f"{p.ingress}/restate/lookup"), 405, "POST")
    assert_error(httpx.get(f"{p.ingress}/restate/a/{awk}/resolve"), 405, "POST")
