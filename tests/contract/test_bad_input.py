"""Bad input on every store: a clear 4xx with nothing stored, limits that fit every store, and a
runtime that keeps serving. The ingress and the admin API run in-process over the store
(SQLite, DynamoDB Local); what a handler passes is checked the same way on both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import tarry
from tarry import Context, ObjectContext, WorkflowContext
from tarry.limits import MAX_DELAY_MS, MAX_IDEMPOTENCY_KEY_BYTES, MAX_KEY_BYTES
from tarry.protocol import CheckpointChannel, Discovery, InvokeRequest, InvokeResponse
from tarry.runtime.deployments import InProcessDeployment
from tarry.runtime.server import Runtime
from tarry.runtime.store import Invocation, Store

counter = tarry.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    total: int = (await ctx.get("total")) or 0
    ctx.set("total", total + delta)
    return total + delta


@counter.handler()
async def hold(ctx: ObjectContext) -> Any:
    awakeable_id, done = ctx.awakeable()
    ctx.set("awakeable", awakeable_id)
    return await done


echo = tarry.Service("Echo")


@echo.handler()
async def back(ctx: Context, value: Any) -> Any:
    return value


@echo.handler()
async def nothing(ctx: Context) -> str:
    return "ok"


@echo.handler()
async def far_call(ctx: Context, key: str) -> int:
    """Calls Counter/add for ``key`` without catching what that raises."""
    result: int = await ctx.object_call(add, key=key, arg=1)
    return result


GATES: dict[str, asyncio.Event] = {}


@echo.handler()
async def gated(ctx: Context, gate: str) -> str:
    """A step that waits for ``GATES[gate]``: an attempt in flight, for checkpoint tests."""

    async def wait() -> str:
        await GATES[gate].wait()
        return "opened"

    first: str = await ctx.run("gate", wait)
    return first


flow = tarry.Workflow("Flow")


@flow.main()
async def run(ctx: WorkflowContext, n: int) -> int:
    return n


SERVICES = [counter, echo, flow]


@asynccontextmanager
async def serving(
    store: Store, deployment: Callable[[tarry.Endpoint], Any] | None = None
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, httpx.AsyncClient]]:
    """The runtime on ``store`` with the services above; clients of its ingress and admin API."""
    rt = Runtime(store)
    try:
        if deployment is None:
            await rt.start(SERVICES)
        else:
            await rt.start()
            await rt.catalog.add(deployment(tarry.Endpoint(SERVICES, rt.clock)))
        ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rt.ingress_app()), base_url="http://tarry"
        )
        admin = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rt.admin_app()), base_url="http://127.0.0.1"
        )
        async with ingress, admin:
            yield rt, ingress, admin
    finally:
        await rt.stop()


async def invocations(store: Store) -> list[str]:
    return sorted(i.id for i in await store.list_invocations(limit=1000))


def refused(reply: httpx.Response, status: int, words: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body == {"code": status, "message": body["message"]}
    assert words in body["message"], body


async def wait_status(store: Store, invocation_id: str, status: str) -> Invocation:
    for _ in range(1000):
        inv = await store.get(invocation_id)
        if inv is not None and inv.status == status:
            return inv
        await asyncio.sleep(0.01)
    raise AssertionError(f"{invocation_id} never became {status}")


async def test_delays_are_refused_past_the_maximum_and_nothing_is_stored(store: Store) -> None:
    async with serving(store) as (rt, ingress, _):
        bad = {
            "\u0661\u0660s": "ASCII digits",  # Arabic-Indic: str.isdigit and float() take them
            "\uff11\uff10s": "ASCII digits",  # fullwidth
            "9" * 5000: "too long",  # more digits than int() converts (a 500 before)
            "99999999999999999999d": "over the maximum of 100 years",  # overflowed SQLite
            "P99999999999999999999D": "over the maximum of 100 years",  # DynamoDB took it
            f"{MAX_DELAY_MS + 1}": "over the maximum of 100 years",
            "-1s": "cannot read",
        }
        for delay, words in bad.items():
            reply = await ingress.post("/Counter/a/add/send", params={"delay": delay}, json=1)
            refused(reply, 400, words)
        for seconds, words in [("nan", "finite"), ("1e11", "maximum"), ("-1", "negative"),
                               ("\u0661", "delaySec must be a number")]:  # fmt: skip
            reply = await ingress.post("/Counter/a/add/send", params={"delaySec": seconds}, json=1)
            refused(reply, 400, words)
        assert await invocations(store) == []
        # the maximum itself is taken, on every store
        reply = await ingress.post("/Counter/a/add/send", params={"delay": "36500d"}, json=1)
        assert reply.status_code == 202, reply.text
        inv = await store.get(reply.json()["invocationId"])
        assert inv is not None and inv.scheduled_at == reply.json()["executionTime"]
        assert inv.scheduled_at >= rt.clock.now_ms() + MAX_DELAY_MS - 60_000


async def test_distinct_raw_keys_are_distinct_objects_or_refused(store: Store) -> None:
    async with serving(store) as (_, ingress, admin):
        # Before, unquote() made "%ZZ" and "%25ZZ" one key, and "%C3" and "%C4" both U+FFFD.
        raw_keys = {"%25ZZ": "%ZZ", "%25C3": "%C3", "a%2Fb": "a/b", "a%252Fb": "a%2Fb",
                    "%C3%A9": "é", "%EF%BF%BD": "\ufffd"}  # fmt: skip
        for n, raw in enumerate(raw_keys, start=1):
            reply = await ingress.post(f"/Counter/{raw}/add", json=n)
            assert reply.json() == n, (raw, reply.text)
        for n, key in enumerate(raw_keys.values(), start=1):
            assert await store.state("Counter", key) == {"total": n}, key
        before = await invocations(store)
        for raw in ("%ZZ", "%C3", "%C4", "a%", "%FF%FE"):
            reply = await ingress.post(f"/Counter/{raw}/add", json=1)
            refused(reply, 400, "percent-encoding" if "%Z" in raw or raw == "a%" else "UTF-8")
            refused(await admin.get(f"/state/Counter/{raw}"), 400, "")
            reply = await admin.patch(f"/state/Counter/{raw}", json={"set": {"total": 7}})
            refused(reply, 400, "")
        assert await invocations(store) == before
        assert await store.state("Counter", "\ufffd") == {"total": 6}  # not edited
        # the admin API reads the same objects the ingress wrote
        assert (await admin.get("/state/Counter/%25ZZ")).json()["state"] == {"total": 1}
        assert (await admin.get("/state/Counter/a%2Fb")).json()["state"] == {"total": 3}
        assert (await admin.get("/state/Counter/a/b")).json()["state"] == {"total": 3}


async def test_keys_over_the_limits_are_refused_and_keys_at_them_fit_every_store(
    store: Store,
) -> None:
    async with serving(store) as (_, ingress, admin):
        long_key = "k" * (MAX_KEY_BYTES + 1)
        long_idem = {"idempotency-key": "i" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)}
        refused(await ingress.post(f"/Counter/{long_key}/add", json=1), 400, "the key is 257")
        refused(await ingress.post("/Counter/é" + "é" * 128 + "/add", json=1), 400, "258 bytes")
        reply = await ingress.post("/Counter/a/add", json=1, headers=long_idem)
        refused(reply, 400, "the idempotency key is 257 bytes")
        refused(await ingress.post(f"/Flow/{long_key}/run", json=1), 400, "the key is 257")
        for path in (f"/restate/invocation/Counter/{long_key}/add/i/output",
                     f"/restate/invocation/Counter/k/add/{'i' * 300}/attach",
                     f"/restate/workflow/Flow/{long_key}/output",
                     f"/restate/invocation/inv_{'0' * 300}/output"):  # fmt: skip
            refused(await ingress.get(path), 400, "bytes long")
        target = {"target": "idempotentInvocation", "service": "Counter", "key": long_key,
                  "handler": "add", "idempotencyKey": "i"}  # fmt: skip
        refused(await ingress.post("/restate/lookup", json=target), 400, "the key is 257")
        refused(await admin.get(f"/state/Counter/{long_key}"), 400, "the key is 257")
        refused(await admin.get(f"/invocations/inv_{'0' * 300}"), 404, "no invocation")
        refused(await admin.get("/invocations", params={"service": "S" * 65}), 400, "65 bytes")
        assert await invocations(store) == []

        # At the limits, made of what the DynamoDB layout escapes to 3 bytes, on every store.
        key, idem = "#" * MAX_KEY_BYTES, "%" * MAX_IDEMPOTENCY_KEY_BYTES
        reply = await ingress.post(f"/Counter/{'%23' * MAX_KEY_BYTES}/add", json=5,
                                   headers={"idempotency-key": idem})  # fmt: skip
        assert reply.json() == 5, reply.text
        assert await store.state("Counter", key) == {"total": 5}
        looked = await ingress.post("/restate/lookup", json={**target, "key": key,
                                                             "idempotencyKey": idem})  # fmt: skip
        assert looked.json() == {"invocationId": reply.headers["x-restate-id"]}
        state_path = f"/state/Counter/{'%23' * MAX_KEY_BYTES}"
        edited = await admin.patch(state_path, json={"set": {"n" * 256: 1}})
        assert edited.status_code == 200, edited.text
        reply = await admin.patch(state_path, json={"set": {"n" * 257: 1}})
        refused(reply, 400, "the state name is 257")
        assert set(await store.state("Counter", key)) == {"total", "n" * 256}


async def test_json_bodies_are_read_strictly(store: Store) -> None:
    async with serving(store) as (_, ingress, admin):
        nested = "[" * 129 + "]" * 129
        bad = {
            b"NaN": "NaN is not a JSON number",
            b"[1, Infinity]": "Infinity is not a JSON number",
            b"-Infinity": "-Infinity is not a JSON number",
            b"1e400": "too large for a 64-bit float",
            nested.encode(): "nests deeper than 128 levels",
            b"[" * 100_000: "nests deeper than 128 levels",  # a RecursionError (500) before
            b'"\\ud800"': "lone surrogate",
            b'"\xff"': "not UTF-8",
            b"9" * 5000: "more than 4300 digits",
            b"{nope": "not valid JSON",
        }
        json_type = {"content-type": "application/json"}
        for body, words in bad.items():
            refused(await ingress.post("/Echo/back", content=body, headers=json_type), 400, words)
            refused(await ingress.post("/Counter/a/add/send", content=body, headers=json_type),
                    400, words)  # fmt: skip
            refused(await ingress.post("/restate/lookup", content=body, headers=json_type),
                    400, words)  # fmt: skip
            reply = await admin.patch("/state/Counter/a", content=body, headers=json_type)
            refused(reply, 400, words)
            reply = await admin.post("/deployments", content=body, headers=json_type)
            refused(reply, 400, words)
        assert await invocations(store) == []
        assert await store.state("Counter", "a") == {}
        deep: Any = "end"
        for _ in range(127):
            deep = [deep]
        assert (await ingress.post("/Echo/back", json=deep)).json() == deep  # 128 levels


async def test_content_types_other_than_json_are_refused_with_415(store: Store) -> None:
    async with serving(store) as (_, ingress, _admin):
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                             "application/xml", "garbage"):  # fmt: skip
            headers = {"content-type": content_type}
            reply = await ingress.post("/Counter/a/add", content=b"1", headers=headers)
            refused(reply, 415, "Content-Type: application/json")
            reply = await ingress.post("/Counter/a/add/send", content=b"1", headers=headers)
            refused(reply, 415, "takes JSON")
            target = b'{"target": "invocation", "invocationId": "inv_1"}'
            refused(await ingress.post("/restate/lookup", content=target, headers=headers), 415, "")
        assert await invocations(store) == []
        for content_type in ("application/json", "application/json; charset=UTF-8",
                             "application/vnd.example+json", None):  # fmt: skip
            headers = {"content-type": content_type} if content_type else {}
            reply = await ingress.post("/Counter/a/add", content=b"1", headers=headers)
            assert reply.status_code == 200, (content_type, reply.text)
        # an empty body needs no JSON content type (a handler without input)
        reply = await ingress.post("/Echo/nothing", headers={"content-type": "text/plain"})
        assert reply.json() == "ok"


async def test_awakeable_resolutions_are_read_strictly_and_the_first_good_one_stands(
    store: Store,
) -> None:
    async with serving(store) as (_, ingress, _admin):
        sent = await ingress.post("/Counter/h/hold/send")
        invocation_id = sent.json()["invocationId"]
        await wait_status(store, invocation_id, "suspended")
        awk = (await store.state("Counter", "h"))["awakeable"]
        json_type = {"content-type": "application/json"}
        for body in (b"NaN", b"[" * 200, b"1e999"):
            reply = await ingress.post(f"/restate/a/{awk}/resolve", content=body, headers=json_type)
            refused(reply, 400, "not valid JSON")
        reply = await ingress.post(f"/restate/a/{awk}/resolve", content=b'"x"',
                                   headers={"content-type": "text/plain"})  # fmt: skip
        refused(reply, 415, "resolving an awakeable takes JSON")
        refused(await ingress.post(f"/restate/a/{'x' * 1000}/resolve", json=1), 404, "no awakeable")
        assert (await store.get(invocation_id)).status == "suspended"  # type: ignore[union-attr]
        assert (await ingress.post(f"/restate/a/{awk}/resolve", json="good")).status_code == 202
        done = await wait_status(store, invocation_id, "completed")
        assert done.completion == {"value": "good"}


async def test_a_conflict_names_no_other_invocation(store: Store) -> None:
    async with serving(store) as (_, ingress, _admin):
        key = {"idempotency-key": "guessed"}
        first = await ingress.post("/Counter/c/add", json=1, headers=key)
        first_id = first.headers["x-restate-id"]
        other = await ingress.post("/Counter/c/add", json=2, headers=key)
        refused(other, 422, "was used before for Counter/add with a different body")
        assert first_id not in other.text and "x-restate-id" not in other.headers
        ran = await ingress.post("/Flow/f/run", json=1)
        again = await ingress.post("/Flow/f/run", json=2)
        refused(again, 409, "get its result at /restate/workflow/Flow/f/attach")
        assert ran.headers["x-restate-id"] not in again.text
        assert "x-restate-id" not in again.headers
        # whoever names the key is entitled to the result, as a retry is
        same = await ingress.post("/Counter/c/add", json=1, headers=key)
        assert (same.json(), same.headers["x-restate-id"]) == (1, first_id)
        # and two Idempotency-Key headers, or one that is not UTF-8, say so
        two = [("idempotency-key", "a"), ("idempotency-key", "b")]
        reply = await ingress.post("/Counter/c/add", json=1, headers=two)
        refused(reply, 400, "one Idempotency-Key header")
        reply = await ingress.post("/Counter/c/add", json=1, headers={"idempotency-key": b"\xff"})
        refused(reply, 400, "not UTF-8")
        assert len(await invocations(store)) == 2


async def test_a_malformed_checkpoint_with_a_valid_token_stores_nothing(store: Store) -> None:
    GATES["cp"] = asyncio.Event()
    async with serving(store) as (rt, ingress, _admin):
        sent = await ingress.post("/Echo/gated/send", json="cp")
        invocation_id = sent.json()["invocationId"]
        inv = await wait_status(store, invocation_id, "running")
        token = rt.invoker.signer.issue(inv.id, inv.epoch)
        auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        journal_before = await store.journal(invocation_id)
        malformed: list[Any] = [
            b"{nope",
            b"NaN",
            [],
            {"commands": []},
            {"commands": "x", "completions": {}},
            {"commands": [1], "completions": {}},
            {"commands": [{"kind": "input", "value": 1}], "completions": {}},
            {"commands": [{"kind": "sleep", "name": ""}], "completions": {}},
            {"commands": [{"kind": "call", "name": "x", "service": "Counter"}], "completions": {}},
            {"commands": [{"kind": "set_state", "name": "n" * 300, "value": 1}], "completions": {}},
            {"commands": [{"kind": "call", "name": "Counter/add", "service": "Counter",
                           "handler": "add", "key": "k" * 300, "arg": 1,
                           "invocation_id": "inv_x"}], "completions": {}},
            {"commands": [], "completions": {"x": {"value": 1}}},
            {"commands": [], "completions": {"1": {}}},
            {"commands": [], "completions": {"99": {"value": 1}}},
            {"commands": [], "completions": {"0": {"value": 1}}},
            {"commands": [], "completions": {"1": {"failure": {"code": "500"}}}},
        ]
        for body in malformed:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            reply = await ingress.post("/tarry/checkpoint", content=content, headers=auth)
            assert reply.status_code == 400, (body, reply.text)
            assert reply.json()["code"] == 400
        reply = await ingress.post("/tarry/checkpoint", content=b"1", headers={
            **auth, "content-type": "text/plain"})  # fmt: skip
        refused(reply, 415, "a checkpoint takes JSON")
        reply = await ingress.post("/tarry/checkpoint", json={"commands": [], "completions": {}})
        refused(reply, 404, "no attempt in flight holds this checkpoint token")
        assert await store.journal(invocation_id) == journal_before  # nothing stored
        # the attempt is not wedged: it goes on and ends as it would have
        GATES["cp"].set()
        done = await wait_status(store, invocation_id, "completed")
        assert done.completion == {"value": "opened"}
        assert done.attempts == 1


async def test_a_checkpoint_carrying_a_value_at_the_depth_limit_is_taken(store: Store) -> None:
    # A value may nest 128 levels; the checkpoint that carries it nests a few more.
    GATES["deep"] = asyncio.Event()
    async with serving(store) as (rt, ingress, _admin):
        sent = await ingress.post("/Echo/gated/send", json="deep")
        invocation_id = sent.json()["invocationId"]
        inv = await wait_status(store, invocation_id, "running")
        token = rt.invoker.signer.issue(inv.id, inv.epoch)
        deep: Any = "end"
        for _ in range(127):
            deep = [deep]
        body = {"commands": [{"kind": "run", "name": "gate"}],
                "completions": {"1": {"value": deep}}}  # fmt: skip
        reply = await ingress.post("/tarry/checkpoint", json=body,
                                   headers={"authorization": f"Bearer {token}"})  # fmt: skip
        assert reply.status_code == 204, reply.text
        commands, completions = await store.journal(invocation_id)
        assert commands[1] == {"kind": "run", "name": "gate"}
        assert completions["1"] == {"value": deep}
        GATES["deep"].set()


async def test_a_handler_passing_a_key_over_the_limit_fails_terminally(store: Store) -> None:
    async with serving(store) as (_, ingress, _admin):
        reply = await asyncio.wait_for(ingress.post("/Echo/far_call", json="k" * 300), 30)
        refused(reply, 400, "the key is 300 bytes long; at most 256 bytes")
        (inv,) = await store.list_invocations()
        assert inv.attempts == 1 and inv.last_failure is None  # never retried


class _LongKeys(InProcessDeployment):
    """A deployment whose SDK does not check limits (another language's, say): the calls it
    journals get a 3000-byte key, on every attempt (replaying, its code makes that call again)."""

    async def invoke(
        self, request: InvokeRequest, channel: CheckpointChannel | None
    ) -> InvokeResponse:
        for command in request["journal"]:
            if command["kind"] == "call" and command.get("key") == "k" * 3000:
                command["key"] = "k"  # what the tarry SDK underneath makes of it
        response = await super().invoke(request, None)
        for command in response["commands"]:
            if command["kind"] == "call":
                command["key"] = "k" * 3000
        return response


async def test_the_runtime_fails_a_call_over_the_limits_that_a_deployment_did_not_check(
    store: Store,
) -> None:
    async with serving(store, lambda endpoint: _LongKeys(endpoint, "long")) as (_, ingress, _a):
        reply = await asyncio.wait_for(ingress.post("/Echo/far_call", json="k"), 30)
        refused(reply, 400, "the key is 3000 bytes long")
        parent = await store.get(reply.headers["x-restate-id"])
        assert parent is not None and parent.retry_count == 0
        assert await store.state("Counter", "k") == {}


class _LongNames(InProcessDeployment):
    """A deployment (another language's SDK, say) whose discovery names a service too long."""

    async def discover(self) -> Discovery:
        found = await super().discover()
        found["services"][0]["name"] = "S" * 65
        return found


async def test_a_deployment_serving_a_name_over_the_limit_is_not_registered(store: Store) -> None:
    async with serving(store) as (rt, _ingress, _admin):
        before = await store.deployments()
        with pytest.raises(ValueError, match="the service name is 65 bytes long; at most 64"):
            await rt.catalog.add(_LongNames(tarry.Endpoint(SERVICES, rt.clock), "long-names"))
        assert await store.deployments() == before


@pytest.mark.parametrize("limit", ["abc", "-5", "0", "10001", "99999999999999999999999", "1.5"])
async def test_bad_list_limits_are_refused(store: Store, limit: str) -> None:
    async with serving(store) as (_, _ingress, admin):
        refused(await admin.get("/invocations", params={"limit": limit}), 400, "limit must be")


async def test_state_edits_with_bad_bodies_are_refused(store: Store) -> None:
    async with serving(store) as (_, ingress, admin):
        await ingress.post("/Counter/s/add", json=1)
        bodies: list[Any] = [[], "x", None, {"set": []}, {"clear": "total"}, {"other": 1},
                             {"set": {"": 1}}, {"clear": [1]}]  # fmt: skip
        json_type = {"content-type": "application/json"}
        for body in bodies:
            content = json.dumps(body).encode()
            reply = await admin.patch("/state/Counter/s", content=content, headers=json_type)
            refused(reply, 400, "")
        refused(await admin.patch("/state/Echo/s", json={"set": {"a": 1}}), 404, "is a service")
        refused(await admin.patch("/state/Nope/s", json={"set": {"a": 1}}), 404, "no service")
        assert await store.state("Counter", "s") == {"total": 1}

