"""An endpoint serves a set of services over the protocol: discovery and invoke.

The transports (ASGI in :mod:`tarry.asgi`, Lambda in :mod:`tarry.lambda_adapter`, and the
runtime's in-process deployment) are thin wrappers around :class:`Endpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ._attempt import Attempt
from ._context import HandlerContext
from .clock import Clock, SystemClock
from .deadline import Deadline
from .protocol import (
    PROTOCOL_VERSION,
    CheckpointChannel,
    Discovery,
    InvokeRequest,
    InvokeResponse,
)
from .serde import from_json
from .service import HandlerDef, ServiceDefinition


class ProtocolError(Exception):
    """The request does not follow the protocol, or names something this endpoint lacks."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


# A testing mode, as Restate tests its SDKs ("always suspending"): set to 1, every await of a
# durable future that was not complete when the attempt began ends the attempt, suspended, and
# the runtime invokes it again to replay. Slow; it proves handlers replay at every await.
SUSPEND_EVERYWHERE = "TARRY_SUSPEND_EVERYWHERE"


class Endpoint:
    """Services bundled for serving.

    >>> endpoint = Endpoint([greeter])  # doctest: +SKIP
    >>> endpoint.discovery()["services"][0]["name"]  # doctest: +SKIP
    'Greeter'

    ``suspend_everywhere``: the testing mode of :data:`SUSPEND_EVERYWHERE`; ``None``: as that
    environment variable says.
    """

    def __init__(
        self,
        services: Iterable[ServiceDefinition],
        clock: Clock | None = None,
        suspend_everywhere: bool | None = None,
    ) -> None:
        self.services: dict[str, ServiceDefinition] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"two services are named {service.name!r}")
            self.services[service.name] = service
        self.clock = clock or SystemClock()
        if suspend_everywhere is None:
            suspend_everywhere = os.environ.get(SUSPEND_EVERYWHERE, "") not in ("", "0")
        self.suspend_everywhere = suspend_everywhere

    def discovery(self) -> Discovery:
        return {
            "protocol": PROTOCOL_VERSION,
            "services": [s.info() for s in self.services.values()],
        }

    def handler(self, service: str, handler: str) -> HandlerDef:
        found = self.services.get(service)
        if found is None or handler not in found.handlers:
            raise ProtocolError(f"no handler {service}/{handler} here", status_code=404)
        return found.handlers[handler]

    async def invoke(
        self,
        request: InvokeRequest,
        channel: CheckpointChannel | None = None,
        deadline: Deadline | None = None,
    ) -> InvokeResponse:
        """Run one attempt of an invocation and report its outcome. ``channel``: where run
        results are appended mid-attempt (unless the request's ``checkpoint`` is ``none``);
        ``deadline``: when the host stops this process, if it does."""
        check_request(request)
        definition = self.handler(request["service"], request["handler"])
        attempt = Attempt(
            request,
            channel if request["checkpoint"] != "none" else None,
            self.clock,
            deadline,
            self.suspend_everywhere,
        )
        if definition.service_kind == "workflow":
            attempt.promises = dict(request.get("promises") or {})
        ctx = HandlerContext(attempt, definition)
        fn = definition.fn
        arg: Any = None
        if definition.takes_input:
            arg = from_json(attempt.journal.input.get("value"), definition.input_type)

        async def call() -> Any:
            if definition.takes_input:
                return await fn(ctx, arg)
            return await fn(ctx)

        return await attempt.execute(call)


def check_request(request: InvokeRequest) -> None:
    """:class:`ProtocolError` unless ``request`` is an invoke request this SDK can run."""
    if not isinstance(request, dict):
        raise ProtocolError("an invoke request is a JSON object")
    if request.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {request.get('protocol')!r} is not supported "
            f"(this SDK speaks {PROTOCOL_VERSION})"
        )
    missing = [
        f
        for f in ("invocation_id", "epoch", "service", "handler", "journal", "completions")
        if f not in request
    ]
    if missing:
        raise ProtocolError(f"the invoke request has no {', '.join(missing)}")


__all__ = ["SUSPEND_EVERYWHERE", "Endpoint", "ProtocolError", "check_request"]
