"""Lambda entry points: user handlers as a Lambda function, invoked with the tarry protocol.

The payload of a Lambda Invoke is a protocol message: ``{"discover": true}`` answers the
:class:`~tarry.protocol.Discovery`, an :class:`~tarry.protocol.InvokeRequest` answers an
:class:`~tarry.protocol.InvokeResponse`. Request/response mode: the function returns after each
``ctx.run`` (``flush``) and whenever it must wait, so nothing holds compute while it waits.

>>> handler = lambda_handler([greeter])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from tarry.endpoint import Endpoint, ProtocolError
from tarry.service import ServiceDefinition


def lambda_handler(
    services: Iterable[ServiceDefinition],
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler function serving ``services`` over the tarry protocol."""
    endpoint = Endpoint(services)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("discover"):
            return dict(endpoint.discovery())
        try:
            response = asyncio.run(endpoint.invoke(event, None))  # type: ignore[arg-type]
        except ProtocolError as exc:
            return {"error": {"code": exc.status_code, "message": str(exc)}}
        except (KeyError, TypeError, ValueError) as exc:
            return {"error": {"code": 400, "message": f"bad invoke request: {exc!r}"}}
        return dict(response)

    return handle


__all__ = ["lambda_handler"]
