"""The admin API (its own port, loopback by default): deployments, services, invocations,
object state.

Invocation control, as in Restate: ``PATCH /invocations/{id}/cancel|kill|purge|pause|resume``
(``POST`` works too, and ``DELETE /invocations/{id}?mode=cancel|kill|purge``). The ``tarry``
CLI is a client of this API.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tarry.clock import Clock
from tarry.limits import (
    MAX_ID_BYTES,
    MAX_NAME_BYTES,
    MAX_STATE_NAME_BYTES,
    MAX_URI_BYTES,
    shown,
    target_problem,
    too_long,
    value_problem,
)

from .admin_auth import AdminGuard
from .catalog import Catalog
from .deployments import DeploymentError, DeploymentInUse, DeploymentNotFound
from .http_input import (
    HttpError,
    any_line,
    http_exception_response,
    internal_error_response,
    parse_json,
    read_body,
)
from .ingress import error_response, store_error_response
from .paths import PathError, decode_segment
from .store import (
    STATUS_FILTERS,
    Deployment,
    Effects,
    Invocation,
    JournalEntry,
    Store,
    StoreError,
)


class Control(Protocol):
    """What invocation control needs of the attempt driver: act on a control write's effects,
    and abandon an attempt of this process that a kill fenced off."""

    async def act(self, effects: Effects) -> None: ...

    def stop(self, invocation_id: str) -> None: ...


def _deployment_json(d: Deployment, usage: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": d.id,
        "uri": d.uri,
        "services": [s["name"] for s in d.services],
        "created_at": d.created_at,
        "registered_at": d.registered_at,
    }
    if d.assume_role_arn is not None:
        data["assume_role_arn"] = d.assume_role_arn
    if usage is not None:
        data["invocations"] = usage.get(d.id, 0)  # pinned to it, not completed
    return data


def _invocation_json(inv: Invocation) -> dict[str, Any]:
    data = inv.to_json()
    data["target"] = "/".join(p for p in (inv.service, inv.key, inv.handler) if p is not None)
    return data


_ACTIONS = ("cancel", "kill", "purge", "pause", "resume")


def _entry_json(entry: JournalEntry) -> dict[str, Any]:
    return {
        "index": entry.index,
        "command": entry.command,
        "created_at": entry.created_at,
        "completion": entry.completion,
        "completed_at": entry.completed_at,
    }


MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_LIST_LIMIT = 10_000  # GET /invocations?limit=


async def _json_body(request: Request) -> Any:
    """The body as JSON, strictly (:func:`tarry.serde.loads`); :class:`HttpError` (400, 413)
    saying why it is not. (The guard in :mod:`.admin_auth` made sure it is sent as JSON.)"""
    return parse_json(await read_body(request, MAX_BODY_BYTES))


def _state_target(request: Request) -> tuple[str, str]:
    """The service and object key a ``/state/{service}/{key}`` path names, read from the raw
    path and percent-decoded strictly (:func:`tarry.runtime.paths.decode_segment`), so two
    different raw keys are never one object (the server's decoding turns every invalid
    sequence into U+FFFD); a key may hold ``/``. :class:`PathError` (400) for bad encoding."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else None
    if path is None or "/state/" not in path:  # no raw path (Mangum): what the server decoded
        path = "/state/" + "/".join(
            quote(request.path_params[p], safe="/") for p in ("service", "key")
        )
    service, _, key = path.split("?", 1)[0].split("/state/", 1)[1].partition("/")
    return decode_segment(service), decode_segment(key)


def admin_app(
    store: Store,
    clock: Clock,
    catalog: Catalog,
    control: Control,
    token: str | None = None,
    loopback_only: bool = True,
) -> ASGIApp:
    """The admin API over the store, the catalog of deployments, and ``control``, guarded by
    :class:`AdminGuard` (``token``, ``loopback_only``: see :mod:`tarry.runtime.admin_auth`)."""

    async def health(request: Request) -> Response:
        # one read: a store that cannot answer (a full disk, its file gone, DynamoDB out of
        # reach) makes this 503, so whatever watches the process sees it
        await store.get("inv_health")
        return JSONResponse({"status": "ok"})

    async def list_deployments(request: Request) -> Response:
        usage = await store.deployment_usage()
        serving = {d for _, d, _ in catalog.registry.services()}
        found = []
        for deployment in await store.deployments():
            data = _deployment_json(deployment, usage)
            data["serving"] = deployment.id in serving  # takes new invocations
            found.append(data)
        return JSONResponse({"deployments": found})

    async def register_deployment(request: Request) -> Response:
        usage = (
            'give the deployment as {"uri": "http://host:port"} or {"arn": '
            '"arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION", "assume_role_arn"?: "...", '
            '"latest"?: false}'
        )
        try:
            body = await _json_body(request)
        except HttpError as exc:
            return error_response(exc.status_code, f"{exc.message}: {usage}")
        if not isinstance(body, dict):
            return error_response(400, usage)
        uri, arn, role = body.get("uri"), body.get("arn"), body.get("assume_role_arn")
        latest = body.get("latest", False)
        for name, value in (("uri", uri), ("arn", arn), ("assume_role_arn", role)):
            if isinstance(value, str) and (problem := too_long(name, value, MAX_URI_BYTES)):
                return error_response(400, problem)
        if isinstance(uri, str) and uri.startswith(("http://", "https://")) and arn is None:
            target = uri
        elif isinstance(arn, str) and uri is None:
            target = arn
        else:
            return error_response(400, usage)
        if (role is not None and not isinstance(role, str)) or not isinstance(latest, bool):
            return error_response(400, usage)
        if role is not None and arn is None:
            return error_response(400, "assume_role_arn applies to Lambda deployments only")
        try:
            deployment = await catalog.register(target, role, latest)
        except DeploymentNotFound as exc:
            return error_response(404, f"discovery failed: {exc}")
        except DeploymentError as exc:
            return error_response(502, f"discovery failed: {exc}")
        except ValueError as exc:
            return error_response(400, str(exc))
        return JSONResponse(_deployment_json(deployment), 201)

    async def remove_deployment(request: Request) -> Response:
        deployment_id = request.path_params["id"]
        force = request.query_params.get("force", "false").lower() in ("1", "true", "yes")
        try:
            had = await catalog.remove(deployment_id, force)
        except DeploymentInUse as exc:
            return error_response(409, str(exc))
        except KeyError:
            return error_response(404, f"no deployment {shown(deployment_id)}")
        return JSONResponse({"id": deployment_id, "removed": True, "invocations": had})

    async def list_services(request: Request) -> Response:
        await catalog.load()  # what another process registered
        return JSONResponse({"services": catalog.services()})

    async def get_service(request: Request) -> Response:
        name = request.path_params["name"]
        await catalog.load()
        for service in catalog.services():
            if service["name"] == name:
                return JSONResponse(service)
        return error_response(404, f"no service named {shown(name)}")

    async def list_invocations(request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in STATUS_FILTERS:
            return error_response(
                400, f"unknown status {status!r}; one of {', '.join(STATUS_FILTERS)}"
            )
        text = request.query_params.get("limit", "100")
        if not (text.isascii() and text.isdigit() and 1 <= int(text[:6]) <= MAX_LIST_LIMIT):
            return error_response(
                400, f"limit must be a number from 1 to {MAX_LIST_LIMIT}, not {shown(text, 20)}"
            )
        limit = int(text)
        service = request.query_params.get("service")
        if service is not None and (problem := too_long("service", service, MAX_NAME_BYTES)):
            return error_response(400, f"no service has a name that long: {problem}")
        found = await store.list_invocations(service, status, limit)
        return JSONResponse({"invocations": [_invocation_json(i) for i in found]})

    async def describe_invocation(request: Request) -> Response:
        invocation_id = request.path_params["id"]
        if too_long("invocation id", invocation_id, MAX_ID_BYTES):
            return error_response(404, f"no invocation {shown(invocation_id)}")
        inv = await store.get(invocation_id)
        if inv is None:
            return error_response(404, f"no invocation {invocation_id}")
        data = _invocation_json(inv)
        data["journal"] = [_entry_json(e) for e in await store.timeline(invocation_id)]
        return JSONResponse(data)

    async def act_on(invocation_id: str, action: str) -> Response:
        if too_long("invocation id", invocation_id, MAX_ID_BYTES):
            return error_response(404, f"no invocation {shown(invocation_id)}")
        now = clock.now_ms()
        changed: tuple[Invocation, Effects] | None
        # a store refusal (NotAllowed: a purge of a running invocation, a pause of a scheduled
        # one) answers 409 through the app's store error handler
        if action == "purge":
            purged = await store.purge(invocation_id, now)
            if purged is None:
                return error_response(404, f"no invocation {invocation_id}")
            return JSONResponse({"id": invocation_id, "status": "purged"})
        if action == "resume":
            current = await store.get(invocation_id)
            pausing = current is not None and current.interrupt == "pause"
            if current is not None and current.status != "paused" and not pausing:
                return error_response(409, f"{invocation_id} is {current.status}, not paused")
            changed = await store.resume(invocation_id, now)
        elif action in ("cancel", "kill"):
            current = await store.get(invocation_id)
            if current is not None and current.status == "completed":
                return error_response(
                    409, f"{invocation_id} is completed: nothing to {action} (purge it?)"
                )
            act = store.cancel if action == "cancel" else store.kill
            changed = await act(invocation_id, now)
        elif action == "pause":
            changed = await store.pause(invocation_id, now)
        else:
            return error_response(404, f"unknown action {action!r}")
        if changed is None:
            return error_response(404, f"no invocation {invocation_id}")
        inv, effects = changed
        if action == "kill":
            control.stop(invocation_id)
        await control.act(effects)
        return JSONResponse({"id": inv.id, "status": inv.status, "interrupt": inv.interrupt})

    async def invocation_action(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in _ACTIONS:
            actions = ", ".join(_ACTIONS)
            return error_response(404, f"unknown action {shown(action)}; one of {actions}")
        return await act_on(request.path_params["id"], action)

    async def delete_invocation(request: Request) -> Response:
        mode = request.query_params.get("mode", "cancel")
        if mode not in ("cancel", "kill", "purge"):
            return error_response(400, f"mode must be cancel, kill or purge, not {shown(mode)}")
        return await act_on(request.path_params["id"], mode)

    async def keyed_service(name: str) -> str | None:
        """Why ``name`` has no keyed state, or ``None`` if it has."""
        await catalog.load()
        for service in catalog.services():
            if service["name"] == name:
                if service["kind"] == "service":
                    return f"{name} is a service; only objects and workflows have state"
                return None
        return f"no service named {shown(name)}"

    async def state_target(request: Request) -> tuple[str, str]:
        """The object (or workflow) key a state route names; :class:`HttpError` if none."""
        try:
            service, key = _state_target(request)
        except PathError as exc:
            raise HttpError(exc.status_code, str(exc)) from None
        problem = target_problem(service, "state", key)
        if problem is not None:
            raise HttpError(400, problem)
        missing = await keyed_service(service)
        if missing is not None:
            raise HttpError(404, missing)
        return service, key

    async def get_state(request: Request) -> Response:
        try:
            service, key = await state_target(request)
        except HttpError as exc:
            return error_response(exc.status_code, exc.message)
        state = await store.state(service, key)
        return JSONResponse({"service": service, "key": key, "state": state})

    async def edit_state(request: Request) -> Response:
        try:
            service, key = await state_target(request)
            clear_all = request.method == "DELETE"
            body = None if clear_all else await _json_body(request)
        except HttpError as exc:
            return error_response(exc.status_code, exc.message)
        set_values: Any = {}
        clear: Any = []
        if not clear_all:
            if not isinstance(body, dict) or not set(body) <= {"set", "clear"}:
                return error_response(
                    400, 'the body must be JSON: {"set": {NAME: VALUE}, "clear": [NAME]}'
                )
            set_values, clear = body.get("set", {}), body.get("clear", [])
            if (
                not isinstance(set_values, dict)
                or not isinstance(clear, list)
                or not all(isinstance(n, str) and n for n in [*set_values, *clear])
            ):
                return error_response(400, "'set' must map names to values and 'clear' list names")
            for name in [*set_values, *clear]:
                if problem := too_long("state name", name, MAX_STATE_NAME_BYTES):
                    return error_response(400, f"{problem}: {shown(name, 40)}")
            for name, value in set_values.items():  # the same limit on every store
                if problem := value_problem(f"value of state {shown(name, 40)}", value):
                    return error_response(413, problem)
        # refused while an invocation holds the key (409), a value over the store's limit (413)
        state = await store.edit_state(service, key, set_values, clear, clear_all, clock.now_ms())
        return JSONResponse({"service": service, "key": key, "state": state})

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/deployments", list_deployments, methods=["GET"]),
            Route("/deployments", register_deployment, methods=["POST"]),
            Route("/deployments/{id}", remove_deployment, methods=["DELETE"]),
            Route("/services", list_services, methods=["GET"]),
            Route("/services/{name}", get_service, methods=["GET"]),
            Route("/invocations", list_invocations, methods=["GET"]),
            Route("/invocations/{id}", describe_invocation, methods=["GET"]),
            Route("/invocations/{id}", delete_invocation, methods=["DELETE"]),
            Route("/invocations/{id}/{action}", invocation_action, methods=["PATCH", "POST"]),
            any_line(Route("/state/{service}/{key:path}", get_state, methods=["GET"])),
            any_line(
                Route("/state/{service}/{key:path}", edit_state, methods=["PATCH", "DELETE"])
            ),
        ],
        exception_handlers={
            StoreError: store_error_response,
            HTTPException: http_exception_response,
            Exception: internal_error_response,
        },
    )
    return AdminGuard(app, token, loopback_only)


__all__ = ["admin_app"]
