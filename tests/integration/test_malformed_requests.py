"""A corpus of malformed requests thrown at every ingress route and every admin route of a real
`tarry dev` process, one over SQLite and one over DynamoDB Local.

For each request: no 5xx, a 4xx whose body is ``{"code", "message"}`` (code = the status, a
message that says something), and nothing stored — the admin API's invocation list, the state of
the objects the corpus aims at and the deployments are the same after the corpus as before. And
the runtime still answers a good request afterwards.

What it tries, route by route (:data:`CORPUS` has them all):

- **paths**: unknown services and handlers, keyed services called without a key and services
  with one, invalid percent-encoding (``%ZZ``, ``%``, ``%C3`` alone, an encoded surrogate) in a
  service, key, handler, awakeable id, workflow key or idempotency key, keys and idempotency
  keys over the limits (257 bytes, and in UTF-8 bytes), service names of kilobytes, unknown
  routes on the admin API;
- **methods**: GET, PUT, DELETE, PATCH and OPTIONS where a route takes POST, and the reverse;
- **bodies**: not JSON, truncated JSON, ``NaN``/``Infinity``/``1e400``, nesting past 128 levels
  (and 100 000 open brackets), a lone surrogate, invalid UTF-8, 5000-digit numbers, a body that
  does not match the handler's schema, a body for a handler that takes none, one over the size
  limit;
- **headers**: an empty, duplicated, over-long or non-UTF-8 ``Idempotency-Key``; content types
  that are not JSON (``text/plain``, forms, multipart, XML, a charset other than UTF-8) — 415;
- **delays**: non-ASCII digits, thousands of digits, beyond the 100-year maximum, negative,
  unknown units, ``delaySec`` that is not a number, a delay on a call (not a send);
- **awakeables**: ids that are garbage, forged, of an unknown invocation, kilobytes long,
  badly encoded; resolve bodies that are not JSON or not sent as JSON;
- **results**: attach/output/lookup of unknown, over-long and malformed invocation ids,
  idempotency keys and workflow keys, and JSON targets that are not targets;
- **checkpoints**: no token, another scheme, a forged token, with well- and badly-formed
  bodies (a malformed body with a *valid* token is refused in
  ``tests/contract/test_bad_input.py``, in-process on every store, as a token is only had by an
  attempt in flight);
- **admin**: registrations that are not JSON, not objects, with neither or both of uri and arn,
  an over-long URI, a role without an ARN; unknown deployments; bad ``?limit=``, ``?status=``,
  ``?service=`` and ``?mode=``; unknown and over-long invocation ids, unknown actions; state of
  unknown services, of services, of keys badly encoded or too long; state edits whose bodies are
  not JSON, not objects, with unknown fields, bad names, names too long, NaN values; changes sent
  without ``Content-Type: application/json`` or from another origin.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest

from tarry.limits import MAX_IDEMPOTENCY_KEY_BYTES, MAX_KEY_BYTES
from tests.conftest import APPS, ROOT, TarryProcess
from tests.dynamodb_local import dynamodb_local

pytestmark = pytest.mark.integration

UNKNOWN = "inv_" + "0" * 32
JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


@dataclass(frozen=True)
class Case:
    api: str  # "ingress" or "admin"
    method: str
    path: str
    body: bytes | None = None
    headers: Any = field(default_factory=dict)  # a dict, or (name, value) pairs
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        body = "" if self.body is None else f" {self.body[:40]!r}"
        return f"{self.api} {self.method} {self.path[:80]}{body}"


def ingress(method: str, path: str, body: bytes | None = None, **kw: Any) -> Case:
    headers = kw.pop("headers", JSON if body is not None else {})
    return Case("ingress", method, path, body, headers, **kw)


def admin(method: str, path: str, body: bytes | None = None, **kw: Any) -> Case:
    headers = kw.pop("headers", JSON)  # what the admin API asks of a change
    return Case("admin", method, path, body, headers, **kw)


LONG_KEY = "k" * (MAX_KEY_BYTES + 1)
LONG_IDEM = "i" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)
BAD_ENCODINGS = ["%ZZ", "a%", "%C3", "%ED%A0%80", "%FF"]
BAD_JSON = [
    b"{nope", b"[1, 2", b"NaN", b"[Infinity]", b"-Infinity", b"1e400", b"[" * 129 + b"]" * 129,
    b"[" * 100_000, b'"\\ud800"', b'"\xff\xfe"', b"9" * 5000, b"\x00",
]  # fmt: skip
BAD_DELAYS = ["\u0661\u0660s", "\uff11s", "9" * 5000, "99999999999999999999d",
              "P99999999999999999999D", "36501d", "-1s", "10 parsecs", "", "1e400s"]  # fmt: skip
NOT_JSON_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                  "application/xml", "application/json; charset=latin-1"]  # fmt: skip


def corpus() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # -- invoking handlers -------------------------------------------------------------------
    for path in ("/", "/Nope/greet", "/Nope", "/Counter/add", "/Counter/k/nope", "/Flaky",
                 "/Flaky/k/conflict", "/Counter/k/add/x/y", "/restate/call", "/restate/send/Nope/x",
                 f"/{'S' * 5000}/h", "/Counter/k/add/send/send", "/Flaky/nope/send"):  # fmt: skip
        add(ingress("POST", path, b"1"))
    for bad in BAD_ENCODINGS:
        for path in (f"/Counter/{bad}/add", f"/{bad}/add", f"/Counter/k/{bad}",
                     f"/restate/send/Counter/{bad}/add", f"/Counter/{bad}/add/send"):  # fmt: skip
            add(ingress("POST", path, b"1"))
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        add(ingress(method, "/Counter/k/add", b"1" if method != "GET" else None))
        add(ingress(method, "/Counter/k/add/send", None))
    add(ingress("POST", f"/Counter/{LONG_KEY}/add", b"1"))
    add(ingress("POST", f"/Counter/{'é' * 129}/add/send", b"1"))
    add(ingress("POST", f"/restate/send/Counter/{LONG_KEY}/add", b"1"))
    add(ingress("POST", f"/Holder/{LONG_KEY}/hold/send"))
    for body in [*BAD_JSON, b'"one"', b"1.5", b"", b"null", b"[1]", b'{"delta": 1}']:
        add(ingress("POST", "/Counter/k/add", body))
        add(ingress("POST", "/Counter/k/add/send", body))
        add(ingress("POST", "/Flaky/twice_then_ok", body if body != b'"one"' else b"1"))
    add(ingress("POST", "/Holder/k/hold", b'"unexpected"'))  # takes no input
    add(ingress("POST", "/Counter/k/add", b'"' + b"x" * 1_000_000 + b'"'))  # quoted back whole?
    add(ingress("POST", "/Counter/k/add", b"1" * (11 * 1024 * 1024)))  # over the 10 MiB limit
    for content_type in NOT_JSON_TYPES:
        add(ingress("POST", "/Counter/k/add", b"1", headers={"content-type": content_type}))
        add(ingress("POST", "/Counter/k/add/send", b"1", headers={"content-type": content_type}))
    for headers in ([*JSON.items(), ("idempotency-key", "a"), ("idempotency-key", "b")],
                    {**JSON, "idempotency-key": ""},
                    {**JSON, "idempotency-key": LONG_IDEM},
                    {**JSON, "idempotency-key": ("é" * 129).encode()},
                    {**JSON, "idempotency-key": b"\xff\xfe"}):  # fmt: skip
        add(ingress("POST", "/Counter/k/add", b"1", headers=headers))
        add(ingress("POST", "/Counter/k/add/send", b"1", headers=headers))
    for delay in BAD_DELAYS:
        add(ingress("POST", "/Counter/k/add/send", b"1", params={"delay": delay}))
    for seconds in ("nan", "inf", "-1", "1e11", "abc", "\u0661", "9" * 100):
        add(ingress("POST", "/Counter/k/add/send", b"1", params={"delaySec": seconds}))
    add(ingress("POST", "/Counter/k/add", b"1", params={"delay": "10s"}))  # a call has no delay
    # -- awakeables --------------------------------------------------------------------------
    forged = "awk_2" + base64.urlsafe_b64encode(bytes(16) + f"{UNKNOWN}:1".encode()).decode()
    for awk in ("garbage", "awk_1AAAA", forged, "awk_2" + "A" * 5000, "%ZZ", "%C3"):
        for prefix in ("awakeables", "a"):
            add(ingress("POST", f"/restate/{prefix}/{awk}/resolve", b'"x"'))
            add(ingress("POST", f"/restate/{prefix}/{awk}/reject", b"no", headers=TEXT))
    for method in ("GET", "PUT", "DELETE"):
        add(ingress(method, f"/restate/awakeables/{forged}/resolve"))
    for body in BAD_JSON:
        add(ingress("POST", f"/restate/a/{forged}/resolve", body))
    add(ingress("POST", f"/restate/a/{forged}/resolve", b'"x"', headers=TEXT))
    # -- results: attach, output, lookup -----------------------------------------------------
    for verb in ("attach", "output"):
        for ref in (UNKNOWN, "garbage", "inv_" + "0" * 300, "%ZZ", "%C3"):
            add(ingress("GET", f"/restate/invocation/{ref}/{verb}"))
            add(ingress("GET", f"/restate/{verb}/{ref}"))
        for path in ("Counter/k/add/nope", "Counter/add/nope", f"Counter/{LONG_KEY}/add/i",
                     f"Counter/k/add/{LONG_IDEM}", "Counter/k/add/%ZZ", "Nope/k/h/i"):  # fmt: skip
            add(ingress("GET", f"/restate/invocation/{path}/{verb}"))
        for path in ("Nope/k", "Counter/k", f"Registration/{LONG_KEY}", "Registration/%C3"):
            add(ingress("GET", f"/restate/workflow/{path}/{verb}"))
        add(ingress("POST", f"/restate/invocation/{UNKNOWN}/{verb}", b"{}"))  # GET only
        add(ingress("GET", f"/restate/{verb}"))  # POST only
    targets: list[Any] = [
        {"target": "bogus"}, ["invocation"], {"target": "invocation"}, {"target": "invocation",
        "invocationId": 5}, {"target": "invocation", "invocationId": UNKNOWN},
        {"target": "invocation", "invocationId": "inv_" + "0" * 300},
        {"target": "idempotentInvocation", "service": "Counter", "handler": "add"},
        {"target": "idempotentInvocation", "service": "Counter", "key": LONG_KEY, "handler": "add",
         "idempotencyKey": "i"},
        {"target": "workflow", "service": "Nope", "key": "k"}, {"target": "workflow"}, None, 1,
        {"target": "t" * 10_000},
    ]  # fmt: skip
    for verb in ("attach", "output", "lookup"):
        for target in targets:
            add(ingress("POST", f"/restate/{verb}", _json(target)))
        for body in BAD_JSON:
            add(ingress("POST", f"/restate/{verb}", body))
        add(ingress("POST", f"/restate/{verb}", b'{"target": "workflow"}', headers=TEXT))
    add(ingress("POST", "/restate/health"))
    # -- checkpoints -------------------------------------------------------------------------
    for auth in ({}, {"authorization": "Basic x"}, {"authorization": "Bearer forged.token"},
                 {"authorization": "Bearer " + "A" * 5000},
                 {"authorization": "Bearer"}):  # fmt: skip
        for body in (b'{"commands": [], "completions": {}}', b"{nope", b"NaN", b"[]"):
            add(ingress("POST", "/tarry/checkpoint", body, headers={**JSON, **auth}))
        add(ingress("GET", "/tarry/checkpoint", headers=auth))
    # -- the admin API -----------------------------------------------------------------------
    registrations: list[Any] = [
        [], "x", {}, {"uri": 5}, {"uri": "ftp://x"}, {"uri": "http://x", "arn": "arn:x"},
        {"uri": "http://x/" + "a" * 2000}, {"uri": "http://x", "assume_role_arn": "arn:r"},
        {"arn": "arn:aws:lambda:us-east-1:1:function:f:1", "latest": "yes"},
        {"arn": "not-an-arn"}, {"arn": "arn:aws:lambda:us-east-1:1:function:f"},
    ]  # fmt: skip
    for body in [*(_json(r) for r in registrations), *BAD_JSON]:
        add(admin("POST", "/deployments", body))
    add(admin("POST", "/deployments", b'{"uri": "http://127.0.0.1:9"}', headers=TEXT))
    add(admin("POST", "/deployments", b'{"uri": "http://127.0.0.1:9"}',
              headers={**JSON, "origin": "https://evil.example"}))  # fmt: skip
    for dep in ("dp_nope", "%ZZ", "x" * 3000):
        add(admin("DELETE", f"/deployments/{dep}"))
        add(admin("DELETE", f"/deployments/{dep}", params={"force": "true"}))
    for name in ("Nope", "%C3", "S" * 3000):
        add(admin("GET", f"/services/{name}"))
    for params in ({"limit": "abc"}, {"limit": "-5"}, {"limit": "0"}, {"limit": "10001"},
                   {"limit": "9" * 30}, {"limit": "\u0661"}, {"status": "bogus"},
                   {"service": "S" * 3000}):  # fmt: skip
        add(admin("GET", "/invocations", params=params))
    for ref in (UNKNOWN, "garbage", "inv_" + "0" * 300, "%ZZ"):
        add(admin("GET", f"/invocations/{ref}"))
        for action in ("cancel", "kill", "pause", "resume", "purge", "bogus"):
            add(admin("PATCH", f"/invocations/{ref}/{action}"))
            add(admin("POST", f"/invocations/{ref}/{action}"))
        for mode in ("cancel", "kill", "purge", "bogus", ""):
            add(admin("DELETE", f"/invocations/{ref}", params={"mode": mode}))
    for path in ("/state/Nope/k", "/state/Flaky/k", f"/state/Counter/{LONG_KEY}",
                 *(f"/state/Counter/{bad}" for bad in BAD_ENCODINGS), "/state/%ZZ/k"):  # fmt: skip
        add(admin("GET", path))
        add(admin("PATCH", path, b'{"set": {"total": 1}}'))
        add(admin("DELETE", path))
    edits: list[Any] = [
        [], "x", None, {"set": []}, {"clear": "total"}, {"other": 1}, {"set": {"": 1}},
        {"clear": [1]}, {"clear": [""]}, {"set": {"n" * 300: 1}}, {"clear": ["n" * 300]},
    ]  # fmt: skip
    for body in [*(_json(e) for e in edits), *BAD_JSON, b'{"set": {"total": NaN}}']:
        add(admin("PATCH", "/state/Counter/corpus", body))
    for headers in (TEXT, {}, {**JSON, "origin": "https://evil.example"},
                    {**JSON, "sec-fetch-site": "cross-site"}):  # fmt: skip
        add(admin("PATCH", "/state/Counter/corpus", b'{"set": {"total": 1}}', headers=headers))
        add(admin("DELETE", "/state/Counter/corpus", headers=headers))
        add(admin("POST", "/deployments", b'{"uri": "http://127.0.0.1:9"}', headers=headers))
    for method, path in (("GET", "/nope"), ("PUT", "/invocations"), ("DELETE", "/services"),
                         ("POST", "/health"), ("PUT", "/state/Counter/corpus"),
                         ("OPTIONS", "/deployments")):  # fmt: skip
        add(admin(method, path, b"{}" if method != "GET" else None))
    return cases


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


CORPUS = corpus()
WATCHED_STATE = ["Counter/corpus", "Counter/k", "Holder/k", "Blob/k"]


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TarryProcess]:  # fmt: skip
    """One `tarry dev` of the test app for the whole corpus, on each store."""
    data = tmp_path_factory.mktemp(f"corpus-{request.param}")
    args = ["dev", str(APPS / "testapp.py"), "--data-dir", str(data)]
    table = None
    if request.param == "dynamodb":
        dynamodb_local()
        table = f"tarry-test-{uuid.uuid4().hex[:12]}"
        made = subprocess.run(
            [sys.executable, "-m", "tarry.runtime.cli", "dynamodb", "create-table", table],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        args += ["--store", f"dynamodb://{table}"]
    p = TarryProcess(args, data)
    p.start()
    try:
        yield p
    finally:
        p.stop()
        if table is not None:
            boto3.client("dynamodb").delete_table(TableName=table)


def snapshot(p: TarryProcess) -> dict[str, Any]:
    """What the store holds, as the admin API shows it."""
    invocations = httpx.get(f"{p.admin}/invocations", params={"limit": "10000"}).json()
    return {
        "invocations": sorted(
            (i["id"], i["status"], i["attempts"]) for i in invocations["invocations"]
        ),
        "deployments": sorted(
            d["id"] for d in httpx.get(f"{p.admin}/deployments").json()["deployments"]
        ),
        **{s: httpx.get(f"{p.admin}/state/{s}").json()["state"] for s in WATCHED_STATE},
    }


def test_every_malformed_request_gets_a_clear_4xx_and_stores_nothing(server: TarryProcess) -> None:
    p = server
    # something stored already, so "nothing changed" is not trivially true
    assert httpx.post(f"{p.ingress}/Counter/corpus/add", json=3).json() == 3
    before = snapshot(p)
    failures: list[str] = []
    with httpx.Client(timeout=30) as client:
        for case in CORPUS:
            base = p.ingress if case.api == "ingress" else p.admin
            try:
                reply = client.request(case.method, base + case.path, content=case.body,
                                       headers=case.headers, params=case.params)  # fmt: skip
            except httpx.TransportError as exc:
                failures.append(f"{case}: no answer ({exc!r})")
                continue
            problem = _problem(reply)
            if problem is not None:
                failures.append(f"{case}: {problem}")
    assert not failures, f"{len(failures)} of {len(CORPUS)}:\n" + "\n".join(failures)
    assert snapshot(p) == before
    # and the runtime still serves
    assert httpx.post(f"{p.ingress}/Counter/corpus/add", json=1).json() == 4
    assert httpx.get(f"{p.admin}/state/Counter/corpus").json()["state"] == {"total": 4}


def _problem(reply: httpx.Response) -> str | None:
    """What is wrong with the answer to a malformed request, or ``None``."""
    if not 400 <= reply.status_code < 500:
        return f"answered {reply.status_code}: {reply.text[:200]}"
    try:
        body = reply.json()
    except ValueError:
        return f"{reply.status_code} with a body that is not JSON: {reply.text[:200]!r}"
    if not isinstance(body, dict) or set(body) != {"code", "message"}:
        return f"{reply.status_code} with {body!r:.200}"
    if body["code"] != reply.status_code or not isinstance(body["message"], str):
        return f"{reply.status_code} with {body!r:.200}"
    if len(body["message"]) < 8 or "Traceback" in body["message"]:
        return f"{reply.status_code}: an unhelpful message {body['message']!r:.200}"
    if len(body["message"]) > 2000:
        return f"{reply.status_code}: a message of {len(body['message'])} characters"
    return None
