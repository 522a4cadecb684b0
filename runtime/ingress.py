"""The ingress: Restate's HTTP API, so a client written for Restate works unchanged.

``POST /{svc}/{handler}``, ``/{svc}/{key}/{handler}``, their ``/send`` forms (``?delay=``), and
``/restate/call|send/...``. ``Idempotency-Key`` deduplicates; ``x-restate-id`` names the
invocation. Input is validated against the handler's schema before anything is stored. A
workflow's run handler runs once per key: a second call gets 409, a second send
``PreviouslyAccepted``.

Under ``/restate/``: awakeables (``awakeables/{id}/resolve|reject``, alias ``a/{id}/...``), and
an invocation's result by id, by idempotency key or by workflow key (``.../attach`` waits for
it, ``.../output`` answers 470 while it is not ready; ``POST /restate/attach|output|lookup``
take the target as JSON).

A call (and an ``attach``) waits for the result at most ``call_budget_ms`` when one is set
(behind API Gateway, whose limit is 29 s): past it the invocation goes on, and the answer is
``202`` with the invocation's id and where to get its result::

    {"invocationId": "inv_...", "status": "running",
     "attach": "/restate/invocation/inv_.../attach", "output": "/restate/invocation/inv_.../output"}
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tarry.clock import Clock
from tarry.errors import TerminalError
from tarry.limits import MAX_ID_BYTES, shown, target_problem, too_long, value_problem
from tarry.protocol import Completion
from tarry.serde import MAX_MESSAGE_DEPTH, dumps

from .checkpoints import checkpoint_problem
from .http_input import (
    HttpError,
    any_line,
    check_json_content_type,
    error_response,
    http_exception_response,
    internal_error_response,
    parse_json,
    read_body,
    read_json,
)
from .ingress_input import (
    decode_input,
    idempotency_key_of,
    parse_delay,
    raw_path,
    ref_problem,
    request_hash,
)
from .invoker import Invoker
from .paths import (
    ApiPath,
    ById,
    ByWorkflow,
    InvocationRef,
    PathError,
    UnknownService,
    parse_api_path,
    parse_invoke_path,
    parse_target,
    split_path,
)
from .registry import HandlerEntry, Registry
from .store import (
    Created,
    IdempotencyConflict,
    Invocation,
    NewInvocation,
    NotAllowed,
    StaleEpoch,
    Store,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
)
from .waiter import Stopping

log = logging.getLogger("tarry.runtime.ingress")

_SKIPPED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "connection", "accept", "accept-encoding",
     "user-agent", "idempotency-key", "transfer-encoding"}
)  # fmt: skip


_METHODS = ["POST", "GET", "PUT", "DELETE", "PATCH"]
CHECKPOINT_PATH = "/tarry/checkpoint"  # where HTTP deployments post mid-attempt appends


@dataclass(frozen=True)
class IngressConfig:
    max_body_bytes: int = 10 * 1024 * 1024
    idempotency_retention_ms: int = 24 * 3600 * 1000
    # How long a call or an attach waits for the result before answering 202 with where to get
    # it (None: as long as it takes).
    call_budget_ms: int | None = None
    # Start a send's first attempt here (one write instead of two), or leave it to the
    # scheduler (a process that freezes when the request is answered).
    drive_sends: bool = True


async def store_error_response(request: Request, exc: Exception) -> Response:
    """A store failure no route answered itself: 409 for an operation that does not apply to
    the invocation or key as it is now, 413 for a value over the store's limit, and otherwise
    503 with ``Retry-After`` (the store is unavailable or contended; the request may be retried)."""
    if isinstance(exc, NotAllowed):
        return error_response(409, str(exc))
    if isinstance(exc, ValueTooLarge):
        return error_response(413, str(exc))
    if isinstance(exc, StoreUnavailable):  # its message says what is wrong, and what to do
        retry_after = {"retry-after": str(exc.retry_after_s)}
        return error_response(503, f"the store is unavailable: {exc}", retry_after)
    return error_response(503, f"the store failed: {exc}; retry", {"retry-after": "1"})


async def stopping_response(request: Request, exc: Exception) -> Response:
    """A caller was waiting when the process began to stop: 503, so it retries; the invocation
    goes on after a restart, and a retry with the same idempotency key (or an attach) gets its
    result."""
    assert isinstance(exc, Stopping)
    message = (
        f"the runtime is stopping; {exc.invocation_id} goes on when it restarts: retry with "
        f"the same Idempotency-Key, or attach at /restate/invocation/{exc.invocation_id}/attach"
    )
    return error_response(503, message, {"retry-after": "5", "x-restate-id": exc.invocation_id})


def new_invocation_id() -> str:
    return "inv_" + os.urandom(16).hex()


def running_response(invocation_id: str, budget_ms: int) -> Response:
    """The answer to a call (or an attach) whose result is not ready within the budget."""
    base = f"/restate/invocation/{invocation_id}"
    body = {
        "invocationId": invocation_id,
        "status": "running",
        "attach": f"{base}/attach",
        "output": f"{base}/output",
        "message": f"not done within {budget_ms} ms; it goes on: GET attach to wait for the "
        "result, or output (470 until it is ready)",
    }
    return JSONResponse(body, 202, headers={"x-restate-id": invocation_id})


def output_response(inv: Invocation, entry: HandlerEntry | None) -> Response:
    headers = {"x-restate-id": inv.id}
    completion = inv.completion or {}
    failure = completion.get("failure")
    if failure is not None:
        code = failure["code"] if 400 <= failure["code"] <= 599 else 500
        return error_response(code, failure["message"], headers)
    value = completion.get("value")
    if value is None and entry is not None and entry.info["void_output"]:
        return Response(b"", 200, headers=headers)
    return Response(dumps(value), 200, headers=headers, media_type="application/json")


def ingress_app(
    store: Store,
    registry: Registry,
    invoker: Invoker,
    clock: Clock,
    config: IngressConfig | None = None,
    reload_deployments: Callable[[], Awaitable[bool]] | None = None,
) -> Starlette:
    """The ingress as a Starlette app, with its dependencies passed in. ``reload_deployments``
    (a store other processes share) is asked, before a 404, whether another process registered
    the service meanwhile."""
    cfg = config or IngressConfig()

    def kind_of(service: str) -> str | None:
        info = registry.service(service)
        return info["kind"] if info else None

    async def submit(
        new: NewInvocation, keyed: bool, send: bool
    ) -> tuple[Created, asyncio.Future[Invocation] | None]:
        """Store the invocation and start it; for a call, also a future of its end."""
        speculative = not (keyed or send or new.idempotency_key or new.start_at)
        finished: asyncio.Future[Invocation] | None = None
        problem = value_problem(f"input of {new.service}/{new.handler}", new.input)
        if problem is not None:  # the same on every store
            raise HttpError(413, problem)
        try:
            if speculative:
                creating, finished = invoker.speculate(new, clock.now_ms())
                created = await creating
            else:
                start = not send or cfg.drive_sends
                created = await store.create(new, clock.now_ms(), start=start)
        except IdempotencyConflict as exc:
            # Not the other invocation's id: whoever guesses a key learns no more than that it
            # was used (the same body gets the same answer, as a retry should).
            message = (
                f"the Idempotency-Key {shown(new.idempotency_key or '', 40)} was used before for "
                f"{new.service}/{new.handler} with a different body; use a new key for a "
                "different request"
            )
            raise HttpError(422, message) from exc
        except ValueTooLarge as exc:  # the store's own limit (DynamoDB: 400 KB an item)
            raise HttpError(413, str(exc)) from exc
        except StoreUnavailable:
            raise  # store_error_response: 503 with the store's own Retry-After
        except StoreError as exc:  # nothing was stored: the client may retry
            raise HttpError(
                503, f"the store could not take the invocation now ({exc}); retry"
            ) from exc
        await invoker.act(created.effects)
        if created.started is not None and not speculative:
            if not send:
                finished = invoker.watch(created.started.invocation.id)
            invoker.run_started(created.started)
        return created, finished

    async def invoke(request: Request) -> Response:
        segments = split_path(raw_path(request))
        try:
            try:
                target = parse_invoke_path(segments, kind_of)
                entry = registry.handler(target.service, target.handler)
            except PathError:
                if reload_deployments is None or not await reload_deployments():
                    raise
                target = parse_invoke_path(segments, kind_of)
                entry = registry.handler(target.service, target.handler)
            if entry is None:
                raise HttpError(
                    404, f"{target.service} has no handler named {shown(target.handler)}"
                )
            if request.method != "POST":
                raise HttpError(405, "invoke handlers with POST")
            idempotency_key = idempotency_key_of(request)
            problem = target_problem(target.service, target.handler, target.key, idempotency_key)
            if problem is not None:
                raise HttpError(400, problem)
            delay_ms = parse_delay(request.query_params)
            if delay_ms is not None and not target.send:
                raise HttpError(400, "a delay is only allowed with /send")
            body = await read_body(request, cfg.max_body_bytes)
            value = decode_input(request, body, entry)
            now = clock.now_ms()
            start_at = now + delay_ms if delay_ms is not None else None
            workflow_run = entry.info["kind"] == "workflow"
            if workflow_run:
                idempotency_key = ""  # the empty key: once per workflow key, whatever the body
            headers = {
                k: v for k, v in request.headers.items() if k.lower() not in _SKIPPED_HEADERS
            }
            new = NewInvocation(
                id=new_invocation_id(),
                service=target.service,
                handler=target.handler,
                key=target.key,
                exclusive=entry.exclusive,
                input=value,
                headers=headers,
                idempotency_key=idempotency_key,
                request_hash=request_hash(target, value) if idempotency_key else None,
                retention_ms=cfg.idempotency_retention_ms,
                start_at=start_at,
                deployment_id=entry.deployment_id,
            )
            created, finished = await submit(new, entry.keyed, target.send)
        except (HttpError, PathError) as exc:
            retry_after = {"retry-after": "1"} if exc.status_code == 503 else None
            message = str(exc)
            if isinstance(exc, UnknownService):  # served by a `tarry dev` that stopped?
                message = registry.absence(exc.service) or message
            return error_response(exc.status_code, message, retry_after)
        inv = created.invocation
        if workflow_run and created.previously_accepted and not target.send:
            # Where to get the result, by the workflow key the caller named; not the run's id
            # (a 4xx describes the refusal, not another request).
            where = f"/restate/workflow/{target.service}/{quote(str(target.key), safe='')}"
            message = (
                f"the workflow {target.service} already ran (or runs) for key "
                f"{shown(str(target.key), 40)}; get its result at {where}/attach"
            )
            return error_response(409, message)
        if target.send:
            reply: dict[str, Any] = {
                "invocationId": inv.id,
                "status": "PreviouslyAccepted" if created.previously_accepted else "Accepted",
            }
            if inv.scheduled_at is not None:
                reply["executionTime"] = inv.scheduled_at
            return JSONResponse(reply, 202, headers={"x-restate-id": inv.id})
        if finished is not None or inv.status != "completed":
            done = await invoker.wait_finished(inv.id, cfg.call_budget_ms, finished)
            if done is None:
                assert cfg.call_budget_ms is not None
                return running_response(inv.id, cfg.call_budget_ms)
            inv = done
        return output_response(inv, entry)

    def run_handler(workflow: str) -> str:
        info = registry.service(workflow)
        if info is None or info["kind"] != "workflow":
            raise HttpError(404, f"no workflow named {shown(workflow)} is registered")
        return next(h["name"] for h in info["handlers"] if h["kind"] == "workflow")

    async def lookup(ref: InvocationRef) -> Invocation:
        problem = ref_problem(ref)
        if problem is not None:
            raise HttpError(400, problem)
        now = clock.now_ms()
        if isinstance(ref, ById):
            found = await store.get(ref.invocation_id)
            what = f"invocation {ref.invocation_id}"
        elif isinstance(ref, ByWorkflow):
            found = await store.find(ref.service, ref.key, run_handler(ref.service), "", now)
            what = f"run of workflow {ref.service} for key {shown(ref.key)}"
        else:
            found = await store.find(ref.service, ref.key, ref.handler, ref.idempotency_key, now)
            what = f"invocation with idempotency key {shown(ref.idempotency_key)}"
        if found is None:
            raise HttpError(404, f"not found: no {what} (or its retention expired)")
        return found

    async def result(request: Request, path: ApiPath) -> Response:
        """``attach`` (wait for the result), ``output`` (470 until ready) and ``lookup``."""
        if path.ref is None:
            if request.method != "POST":
                raise HttpError(405, f"/restate/{path.verb} takes POST with a JSON target")
            body = await read_json(request, cfg.max_body_bytes, f"/restate/{path.verb}")
            ref = parse_target(body)
        elif request.method != "GET":
            raise HttpError(405, f"use GET for .../{path.verb}")
        else:
            ref = path.ref
        inv = await lookup(ref)
        if path.verb == "lookup":
            return JSONResponse({"invocationId": inv.id}, headers={"x-restate-id": inv.id})
        if inv.status != "completed":
            if path.verb == "output":
                return error_response(470, "not ready", {"x-restate-id": inv.id})
            done = await invoker.wait_finished(inv.id, cfg.call_budget_ms)
            if done is None:
                assert cfg.call_budget_ms is not None
                return running_response(inv.id, cfg.call_budget_ms)
            inv = done
        entry = registry.handler(inv.service, inv.handler, inv.deployment_id)
        return output_response(inv, entry or registry.handler(inv.service, inv.handler))

    async def complete_awakeable(request: Request, path: ApiPath) -> Response:
        assert path.awakeable_id is not None
        if request.method != "POST":
            raise HttpError(405, f"{path.verb} an awakeable with POST")
        if too_long("awakeable id", path.awakeable_id, 2 * MAX_ID_BYTES) is not None:
            raise HttpError(404, f"no awakeable {shown(path.awakeable_id)}")
        body = await read_body(request, cfg.max_body_bytes)
        completion: Completion
        if path.verb == "resolve":
            check_json_content_type(request, body, "resolving an awakeable")
            completion = {"value": parse_json(body) if body.strip() else None}
        else:
            message = body.decode("utf-8", "replace").strip() or "rejected"
            completion = {"failure": {"code": 500, "message": message}}
        problem = value_problem("completion", completion)
        if problem is not None:
            raise HttpError(413, problem)
        # The store checks the whole id: a malformed, forged or altered one is not found.
        outcome, effects = await store.complete_awakeable(
            path.awakeable_id, completion, clock.now_ms()
        )
        await invoker.act(effects)
        if outcome == "not-found":
            raise HttpError(404, f"no awakeable {path.awakeable_id}")
        if outcome == "already-completed":
            message = f"awakeable {path.awakeable_id} was already completed; the first one stands"
            raise HttpError(409, message)
        return Response(status_code=202)

    async def api(request: Request) -> Response:
        try:
            path = parse_api_path(split_path(raw_path(request)))
        except PathError as exc:
            if kind_of("restate") is not None:
                return await invoke(request)
            return error_response(exc.status_code, str(exc))
        if path is None or kind_of("restate") is not None:
            return await invoke(request)
        try:
            if path.awakeable_id is not None:
                return await complete_awakeable(request, path)
            return await result(request, path)
        except (HttpError, PathError) as exc:
            return error_response(exc.status_code, str(exc))

    async def health(request: Request) -> Response:
        # one read: a store that cannot answer (a full disk, its file gone, DynamoDB out of
        # reach) makes this 503, so whatever watches the process sees it
        await store.get("inv_health")
        return JSONResponse({"status": "ok"})

    async def checkpoint(request: Request) -> Response:
        """An HTTP deployment appends ``ctx.run`` results of the attempt its token names."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        channel = await invoker.checkpoint_channel(token) if scheme.lower() == "bearer" else None
        if channel is None:
            # an attempt that ended (abandoned, killed, taken over) and writes on regardless
            log.info("refused a checkpoint: no attempt in flight holds its token")
            return error_response(404, "no attempt in flight holds this checkpoint token")
        try:
            body = await read_json(
                request, cfg.max_body_bytes, "a checkpoint", max_depth=MAX_MESSAGE_DEPTH
            )
        except HttpError as exc:
            return error_response(exc.status_code, exc.message)
        problem = checkpoint_problem(body, channel.journal_length)
        if problem is not None:  # nothing is stored; the attempt may go on, or end
            return error_response(400, f"bad checkpoint: {problem}")
        commands, completions = body["commands"], body["completions"]
        try:
            await channel.append(commands, completions)
        except TerminalError as exc:  # a value over the limit: nothing was stored
            return error_response(exc.status_code, exc.message)
        except StaleEpoch as exc:
            log.info("refused a checkpoint: %s", exc)
            return error_response(409, str(exc))
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/restate/health", health, methods=["GET"]),
            Route(CHECKPOINT_PATH, checkpoint, methods=["POST"]),
            any_line(Route("/restate/{path:path}", api, methods=_METHODS)),
            any_line(Route("/{path:path}", invoke, methods=_METHODS)),
        ],
        exception_handlers={
            StoreError: store_error_response,
            Stopping: stopping_response,
            HTTPException: http_exception_response,
            Exception: internal_error_response,
        },
    )


__all__ = [
    "CHECKPOINT_PATH",
    "IngressConfig",
    "error_response",
    "ingress_app",
    "new_invocation_id",
    "store_error_response",
]
