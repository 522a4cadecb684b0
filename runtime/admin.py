"""The admin API (its own port, loopback by default): deployments, services, invocations.

The ``tarry`` CLI is a client of this API.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .deployments import DeploymentError
from .store import STATUSES, Deployment, Invocation

if TYPE_CHECKING:
    from .server import Runtime


def _error(status_code: int, message: str) -> Response:
    return JSONResponse({"code": status_code, "message": message}, status_code)


def _deployment_json(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "uri": d.uri,
        "services": [s["name"] for s in d.services],
        "created_at": d.created_at,
    }


def _invocation_json(inv: Invocation) -> dict[str, Any]:
    data = inv.to_json()
    data["target"] = "/".join(p for p in (inv.service, inv.key, inv.handler) if p is not None)
    return data


def admin_app(runtime: Runtime) -> Starlette:
    store = runtime.store

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_deployments(request: Request) -> Response:
        return JSONResponse(
            {"deployments": [_deployment_json(d) for d in await store.deployments()]}
        )

    async def register_deployment(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, 'the body must be JSON: {"uri": "http://..."}')
        uri = body.get("uri") if isinstance(body, dict) else None
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            return _error(400, 'give the deployment as {"uri": "http://host:port"}')
        try:
            deployment = await runtime.register(uri)
        except DeploymentError as exc:
            return _error(502, f"discovery failed: {exc}")
        except ValueError as exc:
            return _error(409, str(exc))
        return JSONResponse(_deployment_json(deployment), 201)

    async def list_services(request: Request) -> Response:
        return JSONResponse({"services": runtime.services()})

    async def get_service(request: Request) -> Response:
        name = request.path_params["name"]
        for service in runtime.services():
            if service["name"] == name:
                return JSONResponse(service)
        return _error(404, f"no service named {name!r}")

    async def list_invocations(request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            return _error(400, f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be a number")
        found = await store.list_invocations(request.query_params.get("service"), status, limit)
        return JSONResponse({"invocations": [_invocation_json(i) for i in found]})

    async def describe_invocation(request: Request) -> Response:
        invocation_id = request.path_params["id"]
        inv = await store.get(invocation_id)
        if inv is None:
            return _error(404, f"no invocation {invocation_id}")
        commands, completions = await store.journal(invocation_id)
        data = _invocation_json(inv)
        data["journal"] = [
            {"index": index, "command": command, "completion": completions.get(str(index))}
            for index, command in enumerate(commands)
        ]
        return JSONResponse(data)

    async def resume_invocation(request: Request) -> Response:
        invocation_id = request.path_params["id"]
        current = await store.get(invocation_id)
        if current is None:
            return _error(404, f"no invocation {invocation_id}")
        if current.status != "paused":
            return _error(409, f"{invocation_id} is {current.status}, not paused")
        resumed = await store.resume(invocation_id, runtime.clock.now_ms())
        assert resumed is not None
        inv, effects = resumed
        runtime.invoker.act(effects)
        return JSONResponse({"id": inv.id, "status": inv.status})

    async def get_state(request: Request) -> Response:
        state = await store.state(request.path_params["service"], request.path_params["key"])
        return JSONResponse({"state": state})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/deployments", list_deployments, methods=["GET"]),
            Route("/deployments", register_deployment, methods=["POST"]),
            Route("/services", list_services, methods=["GET"]),
            Route("/services/{name}", get_service, methods=["GET"]),
            Route("/invocations", list_invocations, methods=["GET"]),
            Route("/invocations/{id}", describe_invocation, methods=["GET"]),
            Route("/invocations/{id}/resume", resume_invocation, methods=["POST"]),
            Route("/state/{service}/{key}", get_state, methods=["GET"]),
        ]
    )


__all__ = ["admin_app"]
