"""Serve handlers over HTTP: an ASGI (Starlette) app speaking the protocol.

``uvicorn examples.greeter:app --port 9080`` makes an HTTP deployment that a runtime registers
with ``tarry deployments register http://localhost:9080``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .clock import Clock
from .endpoint import Endpoint, ProtocolError
from .serde import dumps
from .service import ServiceDefinition


def app(services: Iterable[ServiceDefinition], clock: Clock | None = None) -> Starlette:
    """An ASGI app serving ``services``: ``GET /discover`` and ``POST /invoke/{svc}/{handler}``."""
    endpoint = Endpoint(services, clock)

    async def discover(request: Request) -> Response:
        return JSONResponse(endpoint.discovery())

    async def invoke(request: Request) -> Response:
        try:
            message = json.loads(await request.body())
            if (message.get("service"), message.get("handler")) != (
                request.path_params["service"],
                request.path_params["handler"],
            ):
                raise ProtocolError("the path and the request name different handlers")
            result = await endpoint.invoke(message, None)
        except ProtocolError as exc:
            return JSONResponse({"message": str(exc)}, status_code=exc.status_code)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"message": f"bad invoke request: {exc}"}, status_code=400)
        return Response(dumps(result), media_type="application/json")

    return Starlette(
        routes=[
            Route("/discover", discover, methods=["GET"]),
            Route("/invoke/{service}/{handler}", invoke, methods=["POST"]),
        ]
    )


__all__ = ["app"]
