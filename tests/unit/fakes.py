"""Hand-built invoke requests and an in-memory checkpoint channel for replay-engine tests."""

from typing import Any

import tarry
from tarry.protocol import (
    PROTOCOL_VERSION,
    Command,
    Completion,
    InvokeRequest,
    InvokeResponse,
)
from tarry.service import ServiceDefinition

T0 = 1_700_000_000_000  # the ManualClock's start, in ms since the epoch
INVOCATION_ID = "inv_test"
SECRET = "0" * 64  # the invocation's secret, as the runtime hands it over


def request(
    service: str,
    handler: str,
    value: Any = None,
    *,
    journal: list[Any] | None = None,  # hand-built commands
    completions: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    key: str | None = None,
    retry_count: int = 0,
    checkpoint: str = "none",
    invocation_id: str = INVOCATION_ID,
    secret: str | None = SECRET,
) -> InvokeRequest:
    """An invoke request whose journal is ``input(value)`` followed by ``journal``."""
    req: InvokeRequest = {
        "protocol": PROTOCOL_VERSION,
        "invocation_id": invocation_id,
        "epoch": 1,
        "service": service,
        "handler": handler,
        "key": key,
        "headers": {},
        "journal": [{"kind": "input", "value": value}, *(journal or [])],
        "completions": dict(completions or {}),
        "state": state,
        "retry_count": retry_count,
        "checkpoint": checkpoint,  # type: ignore[typeddict-item]
    }
    if secret is not None:
        req["secret"] = secret
    return req


class MemoryChannel:
    """A checkpoint channel that keeps every append in a list (or fails, when told to)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.appends: list[tuple[list[Command], dict[str, Completion]]] = []

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        if self.fail:
            raise ConnectionError("the store is unreachable")
        self.appends.append((list(commands), dict(completions)))

    @property
    def commands(self) -> list[Command]:
        return [c for commands, _ in self.appends for c in commands]

    @property
    def completions(self) -> dict[str, Completion]:
        return {k: v for _, completions in self.appends for k, v in completions.items()}


async def invoke(
    services: ServiceDefinition | list[ServiceDefinition],
    req: InvokeRequest,
    channel: MemoryChannel | None = None,
    clock: tarry.ManualClock | None = None,
) -> InvokeResponse:
    """One attempt through a fresh Endpoint with a manual clock."""
    defs = services if isinstance(services, list) else [services]
    endpoint = tarry.Endpoint(defs, clock=clock or tarry.ManualClock(T0))
    return await endpoint.invoke(req, channel)
