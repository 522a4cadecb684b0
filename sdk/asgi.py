"""Serve handlers over HTTP: an ASGI app speaking the protocol.

``uvicorn examples.greeter:app --port 9080`` makes an HTTP deployment that a runtime registers
with ``tarry deployments register http://localhost:9080``.

The app is built (Starlette and httpx imported) when it first serves a request, so a module that
defines both ``app = tarry.app(...)`` and a Lambda ``handler`` costs the Lambda function nothing
for the app at cold start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._context import HANDLER_LOGGER
from .clock import Clock
from .endpoint import Endpoint
from .service import ServiceDefinition

if TYPE_CHECKING:
    from starlette.applications import Starlette


class App:
    """The ASGI app :func:`app` returns: ``GET /discover`` and ``POST /invoke/{svc}/
    {handler}``. :attr:`starlette` is the Starlette app that serves them."""

    def __init__(self, services: Iterable[ServiceDefinition], clock: Clock | None = None) -> None:
        self.endpoint = Endpoint(services, clock)  # checks the services now, not at first use
        self._starlette: Starlette | None = None

    @property
    def starlette(self) -> Starlette:
        if self._starlette is None:
            from ._asgi_server import build

            _show_handler_logs()
            self._starlette = build(self.endpoint)
        return self._starlette

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.starlette(scope, receive, send)


def _show_handler_logs() -> None:
    """Make ``ctx.logger`` visible where nothing else would: uvicorn configures its own loggers
    only, so a handler's INFO lines would be dropped. Left alone when the process configured
    logging itself (a handler on the root logger, or on ``tarry.handler``)."""
    handler_log = logging.getLogger(HANDLER_LOGGER)
    if handler_log.handlers or logging.getLogger().handlers:
        return
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler_log.addHandler(stream)
    if handler_log.level == logging.NOTSET:
        handler_log.setLevel(logging.INFO)


def app(services: Iterable[ServiceDefinition], clock: Clock | None = None) -> App:
    """An ASGI app serving ``services`` over the protocol: an HTTP deployment.

    When the runtime offers an HTTP checkpoint channel, ``ctx.run`` results are posted back to it
    and the handler carries on in the same request.
    """
    return App(services, clock)


__all__ = ["App", "app"]
