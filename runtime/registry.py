"""Which deployment serves which service, and each handler's schemas and validators."""

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


class Registry:
    """Services by name. A later registration of a service replaces the earlier one."""

    def __init__(self) -> None:
        self._services: dict[str, tuple[ServiceInfo, DeploymentClient]] = {}
        self._handlers: dict[tuple[str, str], HandlerEntry] = {}
        self._deployments: dict[str, DeploymentClient] = {}

    def add(self, deployment: DeploymentClient, services: list[ServiceInfo]) -> None:
        for service in services:
            for svc, name in [k for k in self._handlers if k[0] == service["name"]]:
                del self._handlers[(svc, name)]
            self._services[service["name"]] = (service, deployment)
            for handler in service["handlers"]:
                schema = handler["input_schema"]
                validator = Draft202012Validator(schema) if schema is not None else None
                self._handlers[(service["name"], handler["name"])] = HandlerEntry(
                    service, handler, deployment, validator
                )
        self._deployments[deployment.uri] = deployment

    def service(self, name: str) -> ServiceInfo | None:
        found = self._services.get(name)
        return found[0] if found else None

    def handler(self, service: str, handler: str) -> HandlerEntry | None:
        return self._handlers.get((service, handler))

    def services(self) -> list[tuple[ServiceInfo, DeploymentClient]]:
        """Every service with the deployment that serves it."""
        return list(self._services.values())

    def deployment(self, uri: str) -> DeploymentClient | None:
        return self._deployments.get(uri)

    async def close(self) -> None:
        for deployment in self._deployments.values():
            await deployment.close()


__all__ = ["HandlerEntry", "Registry"]
