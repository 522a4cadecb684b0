"""The same services as an HTTP deployment on Lambda: Mangum over :func:`tarry.app`.

A Lambda function behind a Function URL or API Gateway (a REST API's proxy integration, or an
HTTP API, payload format 1.0 or 2.0) receives each HTTP request as an event; Mangum turns it into
an ASGI request for ``tarry.app`` and the response back into what the Function URL or API Gateway
expects. To the runtime it is an ordinary HTTP deployment (``GET /discover``,
``POST /invoke/{service}/{handler}``)::

    # handler.py, deployed with the handler setting "handler.handler"
    from examples.greeter import greeter
    from tarry.lambda_adapter.http import http_handler

    handler = http_handler([greeter])

then, with the runtime running (``tarry serve``)::

    tarry deployments register https://<url-id>.lambda-url.<region>.on.aws/
    tarry deployments register https://<api-id>.execute-api.<region>.amazonaws.com/<stage>/

For an HTTP API on a named stage (not ``$default``), the stage is part of the request path:
pass ``api_gateway_base_path="/<stage>"`` so that it is stripped. docs/lambda-http.md compares
this shape with the protocol-over-Invoke one (:func:`tarry.lambda_adapter.lambda_handler`).

Event loops: Mangum runs each invocation with ``loop.run_until_complete`` on whatever
``asyncio.get_event_loop()`` answers, the thread's *current* loop (its constructor sets one if
there is none). In a warm Lambda that is the same loop every time, which is what the app's lazily
created httpx client (for HTTP checkpoints) needs: its connections belong to the loop they were
opened in. But the current loop is shared, mutable state: an ``asyncio.run()`` anywhere in the
process (initialisation code warming a cache, say) leaves the thread with no current loop, and
the next invocation fails with ``RuntimeError: There is no current event loop``; a loop replaced
by something else (a test runner's, for one) would strand the client on a dead loop. So the
handler owns one loop for its lifetime (the process's, on Lambda), makes it the current loop
only while Mangum runs an invocation, and clears it again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from tarry.asgi import app as asgi_app
from tarry.clock import Clock
from tarry.service import ServiceDefinition

try:
    from mangum import Mangum
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("tarry.lambda_adapter.http needs Mangum: pip install 'tarry[aws]'") from exc


class HttpHandler:
    """A Lambda handler, ``handler(event, context) -> dict``, serving ``tarry.app`` through
    Mangum on an event loop of its own (see the module's docstring).

    Lambda calls it one invocation at a time, from one thread; so must anything else that calls
    it. :meth:`close` is for tests and embedders: a Lambda process just ends.
    """

    def __init__(
        self,
        services: Iterable[ServiceDefinition],
        clock: Clock | None = None,
        *,
        api_gateway_base_path: str = "/",
    ) -> None:
        self.app = asgi_app(services, clock)
        self._loop = asyncio.new_event_loop()
        with self._current_loop():
            # Mangum's constructor looks for (and, if there is none, sets) a current loop: it
            # finds this one.
            self._mangum = Mangum(
                self.app, lifespan="off", api_gateway_base_path=api_gateway_base_path
            )

    @contextlib.contextmanager
    def _current_loop(self) -> Iterator[None]:
        if self._loop.is_closed():
            raise RuntimeError("this handler is closed")
        asyncio.set_event_loop(self._loop)
        try:
            yield
        finally:
            asyncio.set_event_loop(None)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._current_loop():
            return self._mangum(event, context)

    def close(self) -> None:
        """Shut the app down (its lifespan closes the checkpoint client), then the loop."""
        if self._loop.is_closed():
            return
        with self._current_loop():
            self._loop.run_until_complete(self._shutdown())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    async def _shutdown(self) -> None:
        starlette = self.app.starlette
        async with starlette.router.lifespan_context(starlette):
            pass


def http_handler(
    services: Iterable[ServiceDefinition],
    clock: Clock | None = None,
    *,
    api_gateway_base_path: str = "/",
) -> HttpHandler:
    """A Lambda handler serving ``services`` as an HTTP deployment: ``Mangum(tarry.app(services,
    clock), lifespan="off")``, on one event loop that every invocation of the process reuses.

    Lifespan is off because Mangum would run the app's startup and shutdown around every single
    invocation; the app needs neither (its checkpoint client is created on first use and lives
    as long as the process).

    >>> handler = http_handler([greeter])  # doctest: +SKIP
    """
    return HttpHandler(services, clock, api_gateway_base_path=api_gateway_base_path)


__all__ = ["HttpHandler", "http_handler"]
