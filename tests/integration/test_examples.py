"""The examples, end to end, as a new user runs them: real `tarry dev` processes, HTTP, the
CLI, and SIGKILL while an invocation waits for the outside world."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TarryProcess

SIGNUP = str(ROOT / "examples" / "signup.py")
REGISTRATION = str(ROOT / "examples" / "registration.py")
TECHNOLOGIES = str(ROOT / "examples" / "technologies.py")

ADA = {"username": "ada", "name": "Ada", "surname": "Lovelace", "password": "s3cret-pw",
       "email": "ada@example.com"}  # fmt: skip


def _start(
    tarry_dev: type[TarryProcess], app: str, env: dict[str, str], store_args: list[str]
) -> TarryProcess:
    p = tarry_dev(app, *store_args, env=env)
    p.env["TARRY_INGRESS_URL"] = p.ingress  # the links in the emails point at this runtime
    return p.start()


def _mails(outbox: Path, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The first ``count`` emails in an outbox file, waiting (bounded) for them to be sent."""
    deadline = time.monotonic() + timeout
    while True:
        lines = outbox.read_text().splitlines() if outbox.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, f"{count} emails expected, {len(lines)} sent"
        time.sleep(0.02)


class Call(threading.Thread):
    """A blocking HTTP call made in the background; ``reply()`` waits for its response."""

    def __init__(self, url: str, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.headers = url, body, headers or {}
        self.response: httpx.Response | None = None
        self.error: httpx.HTTPError | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = httpx.post(self.url, json=self.body, headers=self.headers, timeout=60)
        except httpx.HTTPError as exc:
            self.error = exc

    def reply(self) -> httpx.Response:
        self.join(60)
        assert self.response is not None, f"the call did not return: {self.error!r}"
        return self.response

    def broken(self) -> bool:
        """Whether the call ended without a response (its connection died)."""
        self.join(60)
        return self.error is not None


def _signup_id(p: TarryProcess) -> str:
    """The id of the newest Signup invocation, once it waits (suspended) for its click."""
    deadline = time.monotonic() + 15
    while True:
        found = httpx.get(f"{p.admin}/invocations", params={"service": "Signup"}).json()
        if found["invocations"]:
            invocation_id: str = found["invocations"][0]["id"]
            p.wait_status(invocation_id, "suspended")
            return invocation_id
        assert time.monotonic() < deadline, "no Signup invocation appeared"
        time.sleep(0.02)


def _user(p: TarryProcess, username: str) -> Any:
    reply = httpx.post(f"{p.ingress}/User/{username}/get")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_signup_waits_for_the_click_and_a_second_signup_is_refused(
    tarry_dev: type[TarryProcess], tmp_path: Path, store_args: list[str]
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    p = _start(tarry_dev, SIGNUP, {"SIGNUP_OUTBOX": str(outbox)}, store_args)
    call = Call(f"{p.ingress}/Signup/signup", ADA)
    [mail] = _mails(outbox, 1)
    assert mail["username"] == "ada"
    assert _user(p, "ada")["activated"] is False

    clicked = httpx.post(mail["link"])
    assert clicked.status_code == 202
    reply = call.reply()
    assert reply.status_code == 200
    assert reply.json() == "The new user ada is signed up and activated"
    user = _user(p, "ada")
    assert user["activated"] is True
    assert "s3cret-pw" not in json.dumps(user)  # never the password itself
    assert "password_hash" not in user  # nor its hash, to any caller
    stored = httpx.get(f"{p.admin}/state/User/ada").json()["state"]["user"]
    assert stored["password_hash"].startswith("scrypt$")  # which the object keeps

    again = httpx.post(f"{p.ingress}/Signup/signup", json={**ADA, "name": "Eve"}, timeout=30)
    assert again.status_code == 409
    assert "already exists" in again.json()["message"]
    assert _user(p, "ada") == user  # changed nothing
    assert len(_mails(outbox, 1)) == 1  # and sent no email


@pytest.mark.fault
def test_signup_survives_sigkill_while_waiting_for_the_click(
    tarry_dev: type[TarryProcess], tmp_path: Path, store_args: list[str]
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    p = _start(tarry_dev, SIGNUP, {"SIGNUP_OUTBOX": str(outbox)}, store_args)
    key = {"idempotency-key": "signup-ada"}
    call = Call(f"{p.ingress}/Signup/signup", ADA, key)
    [mail] = _mails(outbox, 1)
    invocation_id = _signup_id(p)
    p.kill()
    assert call.broken()  # the client's connection died with the process

    p.start()
    assert p.invocation(invocation_id)["status"] == "suspended"
    assert httpx.post(mail["link"]).status_code == 202
    # The client retries with its idempotency key and gets the original invocation's result.
    reply = httpx.post(f"{p.ingress}/Signup/signup", json=ADA, headers=key, timeout=30)
    assert reply.status_code == 200
    assert reply.json() == "The new user ada is signed up and activated"
    assert reply.headers["x-restate-id"] == invocation_id
    assert _user(p, "ada")["activated"] is True
    assert len(_mails(outbox, 1)) == 1  # the email step was journaled: not sent again


def test_cancelled_signup_removes_the_user_and_the_username_is_free_again(
    tarry_dev: type[TarryProcess], tmp_path: Path, store_args: list[str]
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    p = _start(tarry_dev, SIGNUP, {"SIGNUP_OUTBOX": str(outbox)}, store_args)
    call = Call(f"{p.ingress}/Signup/signup", ADA)
    invocation_id = _signup_id(p)
    assert _user(p, "ada") is not None

    cancelled = p.cli("invocations", "cancel", invocation_id)
    assert cancelled.returncode == 0, cancelled.stderr
    reply = call.reply()
    assert reply.status_code == 409
    assert reply.json()["message"] == "cancelled"
    assert _user(p, "ada") is None  # the compensation ran
    described = p.cli("invocations", "describe", invocation_id)
    assert "cancelled (409)" in described.stdout
    assert "User/ada/remove" in described.stdout
    # The link of the cancelled signup is dead now ...
    [old_mail] = _mails(outbox, 1)
    assert httpx.post(old_mail["link"]).status_code == 409

    # ... and a new signup for the same username works.
    retry = Call(f"{p.ingress}/Signup/signup", ADA)
    new_mail = _mails(outbox, 2)[1]
    assert new_mail["awakeable_id"] != old_mail["awakeable_id"]
    assert httpx.post(new_mail["link"]).status_code == 202
    assert retry.reply().json() == "The new user ada is signed up and activated"
    assert _user(p, "ada")["activated"] is True


@pytest.mark.fault
def test_registration_waits_on_its_promise_across_sigkill(
    tarry_dev: type[TarryProcess], tmp_path: Path, store_args: list[str]
) -> None:
    outbox = tmp_path / "registration.jsonl"
    p = _start(tarry_dev, REGISTRATION, {"REGISTRATION_OUTBOX": str(outbox)}, store_args)
    who = {"email": "ada@example.com", "name": "Ada"}
    sent = httpx.post(f"{p.ingress}/Registration/ada-1/run/send", json=who)
    assert sent.status_code == 202
    assert sent.json()["status"] == "Accepted"
    run_id = sent.json()["invocationId"]
    [mail] = _mails(outbox, 1)
    p.wait_status(run_id, "suspended")
    status = httpx.post(f"{p.ingress}/Registration/ada-1/status")
    assert status.json() == "waiting for email verification"
    output = httpx.get(f"{p.ingress}/restate/workflow/Registration/ada-1/output")
    assert output.status_code == 470

    p.kill()
    p.start()
    wrong = httpx.post(mail["link"], json="not-the-token")
    assert wrong.status_code == 400
    verified = httpx.post(mail["link"], json=mail["token"])
    assert verified.status_code == 200, verified.text
    attached = httpx.get(f"{p.ingress}/restate/workflow/Registration/ada-1/attach", timeout=30)
    assert attached.status_code == 200
    assert attached.json() == "activated"
    output = httpx.get(f"{p.ingress}/restate/workflow/Registration/ada-1/output")
    assert (output.status_code, output.json()) == (200, "activated")
    assert output.headers["x-restate-id"] == run_id
    mails = _mails(outbox, 2)
    assert mails[1]["welcome"] == "Welcome, Ada!"
    assert len(mails) == 2  # one verification, one welcome: no step ran twice

    again = httpx.post(f"{p.ingress}/Registration/ada-1/run", json=who, timeout=30)
    assert again.status_code == 409
    resent = httpx.post(f"{p.ingress}/Registration/ada-1/run/send", json=who)
    assert resent.json() == {"invocationId": run_id, "status": "PreviouslyAccepted"}
    assert httpx.post(f"{p.ingress}/Registration/ada-1/status").json() == "activated"


def _rows(db: Path) -> list[tuple[str, str, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "technologies" not in tables:
            return []
        return list(conn.execute("SELECT id, row, writes FROM technologies"))


def test_technologies_validates_then_writes_once_per_idempotency_key(
    tarry_dev: type[TarryProcess], tmp_path: Path, store_args: list[str]
) -> None:
    db = tmp_path / "technologies.db"
    p = _start(tarry_dev, TECHNOLOGIES, {"TECHNOLOGIES_DB": str(db)}, store_args)
    invalid = httpx.post(
        f"{p.ingress}/Technologies/create",
        json={"id": "python", "name": "Python", "category": "snake"},
    )
    assert invalid.status_code == 400
    assert "category" in invalid.json()["message"]
    assert _rows(db) == []  # nothing written

    item = {"id": "python", "name": "Python", "category": "language", "since": 1991}
    key = {"idempotency-key": "create-python"}
    first = httpx.post(f"{p.ingress}/Technologies/create", json=item, headers=key)
    second = httpx.post(f"{p.ingress}/Technologies/create", json=item, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == item
    assert first.headers["x-restate-id"] == second.headers["x-restate-id"]
    [(row_id, row, writes)] = _rows(db)
    assert (row_id, json.loads(row), writes) == ("python", item, 1)  # written once

    got = httpx.post(f"{p.ingress}/Technologies/get", json="python")
    assert got.json() == item
    missing = httpx.post(f"{p.ingress}/Technologies/get", json="cobol")
    assert missing.status_code == 404
    team = httpx.post(f"{p.ingress}/Teams/create", json={"id": "core", "members": ["ada"]})
    assert team.status_code == 200  # the second table, from the same factory
