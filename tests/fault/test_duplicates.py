"""Duplicate delivery (invariant 4): each request sent 2-5 times — one after another, all at
once, and across a SIGKILL of the runtime — to a service, an object, a send and a workflow's
run. One invocation each (the admin API's listing), and the same answer every time: status,
body (a nonce drawn in a journaled step: a second invocation would draw another) and
``x-restate-id``. The same idempotency key with another body is refused with 422 and creates
nothing.

What "the same answer" means where the ingress says more than the result: a repeated ``/send``
answers 202 with the same id, ``"status": "PreviouslyAccepted"`` instead of ``"Accepted"`` (as
Restate's ingress does); a workflow's run runs once per workflow key, whatever the body or the
Idempotency-Key, so a repeated call of it answers 409 naming where to attach, and the run's
result is the one its attach gives."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import APPS, TarryProcess

pytestmark = pytest.mark.fault

APP = str(APPS / "duplicates.py")


def post(p: TarryProcess, path: str, body: Any, idempotency_key: str | None) -> httpx.Response:
    headers = {"idempotency-key": idempotency_key} if idempotency_key is not None else {}
    return httpx.post(f"{p.ingress}/{path}", json=body, headers=headers, timeout=60)


def sent(
    p: TarryProcess, path: str, body: Any, key: str | None, times: int, at_once: bool
) -> list[httpx.Response]:
    """The same request ``times`` times: one after another, or all at once."""
    if not at_once:
        return [post(p, path, body, key) for _ in range(times)]
    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(lambda _: post(p, path, body, key), range(times)))


def answer(reply: httpx.Response) -> tuple[int, bytes, str | None]:
    return reply.status_code, reply.content, reply.headers.get("x-restate-id")


def the_same(replies: list[httpx.Response]) -> httpx.Response:
    """The one answer every reply gave (status, body, x-restate-id)."""
    assert len({answer(r) for r in replies}) == 1, [answer(r) for r in replies]
    return replies[0]


def invocations(p: TarryProcess, service: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{p.admin}/invocations", params={"service": service, "limit": 1000})
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["invocations"]
    return found


def only_invocation(p: TarryProcess, service: str, key: str | None, idem: str) -> dict[str, Any]:
    """The one invocation of ``service`` (object ``key``) with idempotency key ``idem``."""
    mine = [i for i in invocations(p, service) if i["key"] == key and i["idempotency_key"] == idem]
    assert len(mine) == 1, mine
    return mine[0]


def conflict_message(idem: str, target: str) -> dict[str, Any]:
    """The ingress's refusal of a known idempotency key with another body."""
    return {
        "code": 422,
        "message": f"the Idempotency-Key {idem!r} was used before for {target} with a "
        "different body; use a new key for a different request",
    }


def refused_and_nothing_made(
    p: TarryProcess, path: str, body: Any, idem: str, service: str, target: str
) -> None:
    before = invocations(p, service)
    reply = post(p, path, body, idem)
    assert reply.status_code == 422
    assert reply.json() == conflict_message(idem, target)
    assert "x-restate-id" not in reply.headers  # it names no invocation
    assert invocations(p, service) == before


def workflow_refusal(key: str) -> dict[str, Any]:
    return {
        "code": 409,
        "message": f"the workflow DupFlow already ran (or runs) for key {key!r}; get its "
        f"result at /restate/workflow/DupFlow/{key}/attach",
    }


def wait_for_files(paths: list[Path], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, [str(p) for p in paths if not p.exists()]
        time.sleep(0.02)


@pytest.mark.parametrize("at_once", [False, True], ids=["one-after-another", "at-once"])
def test_a_repeated_request_makes_one_invocation_and_gets_one_answer(
    tarry_dev: type[TarryProcess], store_args: list[str], at_once: bool
) -> None:
    p = tarry_dev(APP, *store_args).start()
    mode = "at-once" if at_once else "serial"
    body = {"n": 1, "mode": mode}

    # a service call, 2 times (5 at once)
    idem = f"echo-{mode}"
    reply = the_same(sent(p, "Dup/echo", body, idem, 5 if at_once else 2, at_once))
    assert reply.status_code == 200 and reply.json()["arg"] == body
    inv = only_invocation(p, "Dup", None, idem)
    assert (inv["id"], inv["status"]) == (reply.headers["x-restate-id"], "completed")
    # the same JSON written otherwise is the same body
    spaced = httpx.post(
        f"{p.ingress}/Dup/echo",
        content=b'{ "mode" : "%s", "n" : 1 }' % mode.encode(),
        headers={"idempotency-key": idem, "content-type": "application/json"},
    )
    assert answer(spaced) == answer(reply)
    refused_and_nothing_made(p, "Dup/echo", {**body, "n": 2}, idem, "Dup", "Dup/echo")

    # an object call, 3 times (4 at once): its state counts one run
    idem, key = f"bump-{mode}", f"o-{mode}"
    path = f"DupObject/{key}/bump"
    reply = the_same(sent(p, path, body, idem, 4 if at_once else 3, at_once))
    assert reply.status_code == 200 and reply.json()["count"] == 1
    inv = only_invocation(p, "DupObject", key, idem)
    assert inv["id"] == reply.headers["x-restate-id"]
    refused_and_nothing_made(p, path, {**body, "n": 2}, idem, "DupObject", "DupObject/bump")
    state = httpx.get(f"{p.admin}/state/DupObject/{key}").json()["state"]
    assert state == {"count": 1}

    # a send, 4 times (3 at once): accepted once, then previously accepted, with one id
    idem = f"send-{mode}"
    replies = sent(p, "Dup/echo/send", body, idem, 3 if at_once else 4, at_once)
    ids = {(r.status_code, r.headers["x-restate-id"], r.json()["invocationId"]) for r in replies}
    assert len(ids) == 1 and next(iter(ids))[0] == 202
    statuses = [r.json()["status"] for r in replies]
    assert sorted(statuses) == ["Accepted"] + ["PreviouslyAccepted"] * (len(replies) - 1)
    if not at_once:
        assert statuses[0] == "Accepted"
    invocation_id = replies[0].headers["x-restate-id"]
    assert only_invocation(p, "Dup", None, idem)["id"] == invocation_id
    done = p.wait_status(invocation_id, "completed")
    refused_and_nothing_made(p, "Dup/echo/send", {**body, "n": 2}, idem, "Dup", "Dup/echo")
    # a call with the send's key gets the send's result
    assert post(p, "Dup/echo", body, idem).json() == done["completion"]["value"]

    # a workflow's run, 5 times (2 at once): it runs once; the others are told where to attach
    key = f"w-{mode}"
    replies = sent(p, f"DupFlow/{key}/run", body, None, 2 if at_once else 5, at_once)
    ran = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert len(ran) == 1 and len(refused) == len(replies) - 1
    if not at_once:
        assert replies[0] is ran[0]
    assert {answer(r) for r in refused} == {(409, answer(refused[0])[1], None)}
    assert refused[0].json() == workflow_refusal(key)
    runs = [i for i in invocations(p, "DupFlow") if i["key"] == key]
    assert len(runs) == 1 and runs[0]["id"] == ran[0].headers["x-restate-id"]
    attached = httpx.get(f"{p.ingress}/restate/workflow/DupFlow/{key}/attach", timeout=30)
    assert answer(attached) == answer(ran[0])
    # sent again, with another body: previously accepted, nothing new
    again = post(p, f"DupFlow/{key}/run/send", {**body, "n": 2}, None)
    assert again.status_code == 202
    assert again.json() == {"invocationId": runs[0]["id"], "status": "PreviouslyAccepted"}
    assert [i for i in invocations(p, "DupFlow") if i["key"] == key] == runs


def test_a_request_repeated_across_a_sigkill_makes_one_invocation(
    tarry_dev: type[TarryProcess], store_args: list[str], tmp_path: Path
) -> None:
    """Each request is in flight, held at a gate, when the runtime is SIGKILLed; sent again
    after the restart (at once, then once more after the result): one invocation, one answer."""
    p = tarry_dev(APP, *store_args).start()
    gates = {name: tmp_path / f"gate-{name}" for name in ("echo", "bump", "send", "run")}
    body = {name: {"gate": str(gate)} for name, gate in gates.items()}
    requests = {  # name: (path, idempotency key)
        "echo": ("Dup/echo", "echo-kill"),
        "bump": ("DupObject/o-kill/bump", "bump-kill"),
        "send": ("Dup/echo/send", "send-kill"),
        "run": ("DupFlow/w-kill/run", None),
    }
    with ThreadPoolExecutor(16) as pool:
        first: dict[str, Future[httpx.Response]] = {
            name: pool.submit(post, p, path, body[name], idem)
            for name, (path, idem) in requests.items()
        }
        accepted = first["send"].result()
        assert accepted.status_code == 202 and accepted.json()["status"] == "Accepted"
        wait_for_files([Path(f"{gate}.entered") for gate in gates.values()])
        p.kill()  # every one of them mid-attempt, the calls waiting for their answers
        for name in ("echo", "bump", "run"):
            with pytest.raises(httpx.TransportError):
                first[name].result()
        for gate in gates.values():
            Path(f"{gate}.entered").unlink()
        p.start()

        # while they are still held: another body with a key in use is refused
        refused_and_nothing_made(p, "Dup/echo", {"other": 1}, "echo-kill", "Dup", "Dup/echo")
        # sent again, at once, while the attempts the restart resumed wait at their gates
        again = {
            name: [pool.submit(post, p, path, body[name], idem) for _ in range(times)]
            for (name, (path, idem)), times in zip(requests.items(), (4, 3, 2, 3), strict=True)
        }
        wait_for_files([Path(f"{gate}.entered") for gate in gates.values()])
        for gate in gates.values():
            gate.touch()
        replies = {name: [f.result() for f in futures] for name, futures in again.items()}

    for name in ("echo", "bump"):
        path, idem = requests[name]
        reply = the_same([*replies[name], post(p, path, body[name], idem)])  # and after it ended
        assert reply.status_code == 200 and reply.json()["arg"] == body[name]
        service = path.split("/")[0]
        key = "o-kill" if name == "bump" else None
        assert only_invocation(p, service, key, idem)["id"] == reply.headers["x-restate-id"]
    assert replies["bump"][0].json()["count"] == 1
    assert httpx.get(f"{p.admin}/state/DupObject/o-kill").json()["state"] == {"count": 1}

    send_id = accepted.headers["x-restate-id"]
    for reply in replies["send"]:
        assert reply.status_code == 202 and reply.headers["x-restate-id"] == send_id
        assert reply.json() == {"invocationId": send_id, "status": "PreviouslyAccepted"}
    assert only_invocation(p, "Dup", None, "send-kill")["id"] == send_id
    assert p.wait_status(send_id, "completed")["completion"]["value"]["arg"] == body["send"]

    assert {answer(r) for r in replies["run"]} == {(409, replies["run"][0].content, None)}
    assert replies["run"][0].json() == workflow_refusal("w-kill")
    runs = [i for i in invocations(p, "DupFlow") if i["key"] == "w-kill"]
    assert len(runs) == 1
    attached = httpx.get(f"{p.ingress}/restate/workflow/DupFlow/w-kill/attach", timeout=30)
    assert attached.status_code == 200 and attached.json()["arg"] == body["run"]
    assert attached.headers["x-restate-id"] == runs[0]["id"]
