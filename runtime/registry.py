"""Which deployment serves which service, and each handler's schemas and validators.

Every registered deployment stays reachable by its id: an invocation runs every attempt on the
deployment it was created for (it is *pinned*), so registering a new version of a service routes
new invocations to it while those in flight finish on theirs. Of the deployments that serve a
service, the one registered last takes its new invocations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from tarry.protocol import HandlerInfo, ServiceInfo

from .deployments import DeploymentClient


@dataclass(frozen=True)
class HandlerEntry:
    service: ServiceInfo
    info: HandlerInfo
    deployment: DeploymentClient
    deployment_id: str
    validator: Draft202012Validator | None

    @property
    def exclusive(self) -> bool:
        return self.service["kind"] != "service" and self.info["kind"] in ("exclusive", "workflow")

    @property
    def keyed(self) -> bool:
        return self.service["kind"] != "service"

    def validation_error(self, value: Any) -> str | None:
        """Why ``value`` is not a valid input for this handler, or ``None``."""
        if self.validator is None:
            return None
        error = next(iter(self.validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message


@dataclass(frozen=True)
class _Registered:
    id: str
    client: DeploymentClient
    services: list[ServiceInfo]
    handlers: dict[tuple[str, str], HandlerEntry]


class Registry:
    """Deployments by id, in the order they were registered, and the services they serve."""

    def __init__(self) -> None:
        self._registered: dict[str, _Registered] = {}  # insertion order = registration order
        self._current: dict[str, _Registered] = {}  # service -> the deployment taking it
        self._absent: dict[str, str] = {}  # service -> why no deployment here serves it

    def add(
        self, deployment_id: str, client: DeploymentClient, services: list[ServiceInfo]
    ) -> DeploymentClient | None:
        """Register (or register again) a deployment: it takes its services' new invocations.
        Returns the client it had before, if that was another one (for the caller to close)."""
        handlers: dict[tuple[str, str], HandlerEntry] = {}
        for service in services:
            for handler in service["handlers"]:
                schema = handler["input_schema"]
                validator = Draft202012Validator(schema) if schema is not None else None
                handlers[(service["name"], handler["name"])] = HandlerEntry(
                    service, handler, client, deployment_id, validator
                )
        before = self._registered.pop(deployment_id, None)
        self._registered[deployment_id] = _Registered(deployment_id, client, services, handlers)
        self._route()
        return before.client if before is not None and before.client is not client else None

    def remove(self, deployment_id: str) -> DeploymentClient | None:
        """Forget a deployment; its services go back to the one registered before it, if any."""
        gone = self._registered.pop(deployment_id, None)
        self._route()
        return gone.client if gone is not None else None

    def _route(self) -> None:
        self._current = {}
        for registered in self._registered.values():
            for service in registered.services:
                self._current[service["name"]] = registered

    def service(self, name: str) -> ServiceInfo | None:
        found = self._current.get(name)
        if found is None:
            return None
        return next(s for s in found.services if s["name"] == name)

    def handler(
        self, service: str, handler: str, deployment_id: str | None = None
    ) -> HandlerEntry | None:
        """The handler as the deployment ``deployment_id`` serves it, or, without one, as the
        deployment that takes the service's new invocations."""
        registered = (
            self._registered.get(deployment_id)
            if deployment_id is not None
            else self._current.get(service)
        )
        return registered.handlers.get((service, handler)) if registered is not None else None

    def note_absent(self, service: str, why: str) -> None:
        """Say why ``service`` may have no deployment here (while none takes it)."""
        self._absent[service] = why

    def absence(self, service: str) -> str | None:
        """Why ``service`` has no deployment, if it has none and that is known."""
        return None if service in self._current else self._absent.get(service)

    def knows(self, deployment_id: str) -> bool:
        return deployment_id in self._registered

    def __len__(self) -> int:
        """How many deployments are registered."""
        return len(self._registered)

    def services(self) -> list[tuple[ServiceInfo, str, DeploymentClient]]:
        """Every service with the deployment (id and client) that takes its new invocations."""
        return [
            (s, registered.id, registered.client)
            for name, registered in self._current.items()
            for s in registered.services
            if s["name"] == name
        ]

    def deployment(self, uri: str) -> DeploymentClient | None:
        for registered in self._registered.values():
            if registered.client.uri == uri:
                return registered.client
        return None

    async def close(self) -> None:
        for registered in self._registered.values():
            await registered.client.close()


__all__ = ["HandlerEntry", "Registry"]
