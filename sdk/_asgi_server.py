"""The Starlette app behind :func:`tarry.app`: ``GET /discover`` and ``POST /invoke/{svc}/
{handler}`` over an :class:`~tarry.endpoint.Endpoint`. Imported when the app first serves a
request (see :mod:`tarry.asgi`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._http_channel import HttpCheckpointChannel
from .endpoint import Endpoint, ProtocolError
from .protocol import InvokeRequest, error_reply
from .serde import dumps


def build(endpoint: Endpoint) -> Starlette:
    """The Starlette app serving ``endpoint``. When the runtime offers an HTTP checkpoint
    channel, ``ctx.run`` results are posted back to it and the handler carries on in the same
    request."""
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
        nonlocal client
        yield
        if client is not None:
            await client.aclose()
            client = None

    async def discover(request: Request) -> Response:
        return JSONResponse(endpoint.discovery())

    async def invoke(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ProtocolError("an invoke request is a JSON object")
            message = cast(InvokeRequest, body)
            if (message.get("service"), message.get("handler")) != (
                request.path_params["service"],
                request.path_params["handler"],
            ):
                raise ProtocolError("the path and the request name different handlers")
            result = await endpoint.invoke(message, channel_for(message))
        except ProtocolError as exc:
            return _error(exc.status_code, str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"bad invoke request: {exc}")
        except RecursionError:
            return _error(400, "bad invoke request: it nests too deeply")
        return Response(dumps(result), media_type="application/json")

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/discover", discover, methods=["GET"]),
            Route("/invoke/{service}/{handler}", invoke, methods=["POST"]),
        ],
    )


def _error(code: int, message: str) -> Response:
    return JSONResponse(error_reply(code, message), status_code=code)


__all__ = ["build"]
