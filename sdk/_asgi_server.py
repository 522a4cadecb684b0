"""Serve handlers over HTTP: an ASGI (Starlette) app speaking the protocol.

``uvicorn examples.greeter:app --port 9080`` makes an HTTP deployment that a runtime registers
with ``tarry deployments register http://localhost:9080``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._http_channel import HttpCheckpointChannel
from .clock import Clock
from .endpoint import Endpoint, ProtocolError
from .protocol import InvokeRequest
from .serde import dumps
from .service import ServiceDefinition


def app(services: Iterable[ServiceDefinition], clock: Clock | None = None) -> Starlette:
    """An ASGI app serving ``services``: ``GET /discover`` and ``POST /invoke/{svc}/{handler}``.

    When the runtime offers an HTTP checkpoint channel, ``ctx.run`` results are posted back to it
    and the handler carries on in the same request.
    """
    endpoint = Endpoint(services, clock)
    client: httpx.AsyncClient | None = None

    def channel_for(message: InvokeRequest) -> HttpCheckpointChannel | None:
        nonlocal client
        if message.get("checkpoint") != "http":
            return None
        url, token = message.get("checkpoint_url"), message.get("checkpoint_token")
        if not url or not token:
            raise ProtocolError("an http checkpoint needs checkpoint_url and checkpoint_token")
        if client is None:
            client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        return HttpCheckpointChannel(client, url, token)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if client is not None:
            await client.aclose()

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
            result = await endpoint.invoke(message, channel_for(message))
        except ProtocolError as exc:
            return JSONResponse({"message": str(exc)}, status_code=exc.status_code)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"message": f"bad invoke request: {exc}"}, status_code=400)
        return Response(dumps(result), media_type="application/json")

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/discover", discover, methods=["GET"]),
            Route("/invoke/{service}/{handler}", invoke, methods=["POST"]),
        ],
    )


__all__ = ["app"]
