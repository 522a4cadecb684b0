"""The catalog: the deployments the store knows and the services they serve, as one process
routes to them.

Registering runs discovery against a deployment and stores it; every process sharing the store
loads what another registered (:meth:`Catalog.load`, or :meth:`Catalog.reload` at most once a
second when asked for a service it does not know). The admin API and every entry point use it.
"""

from __future__ import annotations

import logging
from typing import Any

from tarry.clock import Clock
from tarry.limits import MAX_NAME_BYTES, shown, too_long
from tarry.protocol import ServiceInfo

from .deployments import DeploymentClient, DeploymentInUse, client_for, deployment_id
from .registry import Registry
from .store import Deployment, Store

log = logging.getLogger("tarry.runtime")


class Catalog:
    def __init__(
        self, store: Store, registry: Registry, clock: Clock, session: Any = None
    ) -> None:
        """``session``: the aioboto3 session Lambda deployments' clients are made from."""
        self.session = session
        self.store = store
        self.registry = registry
        self.clock = clock
        self._reloaded_at = -1000
        self._in_process: dict[str, Deployment] = {}  # registered by `tarry dev` processes

    async def load(self) -> None:
        """Route to the deployments registered in the store (HTTP URLs and Lambda ARNs),
        including those another process registered after this one started, in the order they
        were registered."""
        for deployment in await self.store.deployments():
            if self.registry.knows(deployment.id):
                continue
            try:
                client = client_for(deployment.uri, deployment.assume_role_arn, self.session)
            except ValueError:
                # in-process: served by the process that registered it, if any
                self._in_process[deployment.id] = deployment
                self._note_absent(deployment)
                continue
            self._route(client, deployment)

    def _note_absent(self, deployment: Deployment) -> None:
        for service in deployment.services:
            self.registry.note_absent(service["name"], (
                f"{service['name']} was served by `tarry dev` ({deployment.uri}, deployment "
                f"{deployment.id}), which is not running on this store: run `tarry dev` with its "
                f"app, or register a deployment that serves {service['name']}"
            ))  # fmt: skip

    def unserved(self) -> list[Deployment]:
        """In-process deployments (of a `tarry dev` on this store) that no client of this
        process serves: their services answer 404 here."""
        return [d for id_, d in self._in_process.items() if not self.registry.knows(id_)]

    async def register(
        self, uri: str, assume_role_arn: str | None = None, latest: bool = False
    ) -> Deployment:
        """Run discovery against a deployment and route its services to it: an HTTP URL, or a
        Lambda function version's ARN (an alias is resolved to its version; ``$LATEST`` or an
        unqualified ARN only with ``latest``). :class:`ValueError` says what is wrong with
        the ARN; :class:`DeploymentError` what went wrong reaching it."""
        if uri.startswith("arn:"):
            uri = await self._pin_version(uri, assume_role_arn, latest)
        else:
            uri = uri.rstrip("/")
        existing = self.registry.deployment(uri)
        if existing is not None and existing.assume_role_arn != assume_role_arn:
            existing = None  # a new client for the new role; _register closes the old one
        client = existing or client_for(uri, assume_role_arn, self.session)
        try:
            return await self.add(client, assume_role_arn)
        except Exception:
            if existing is None:
                await client.close()
            raise

    async def _pin_version(self, arn: str, assume_role_arn: str | None, latest: bool) -> str:
        from .lambda_deployment import FunctionArn, LambdaArnError, LambdaDeployment

        parsed = FunctionArn.parse(arn)
        if parsed.kind in ("unqualified", "latest"):
            if not latest:
                raise LambdaArnError(
                    f"{arn} names $LATEST, whose code changes under invocations that are "
                    "waiting: publish a version (aws lambda publish-version --function-name "
                    f"{parsed.name}) and register {parsed.function}:1 (its version ARN), or an "
                    "alias; --latest registers $LATEST anyway, for development only"
                )
            log.warning(
                "%s: registered as $LATEST, for development only: a waiting invocation will "
                "replay its journal on whatever code $LATEST has then", parsed.function
            )  # fmt: skip
            return str(parsed.at("$LATEST"))
        if parsed.kind == "alias":
            probe = LambdaDeployment(parsed, assume_role_arn, session=self.session)
            try:
                return str(await probe.resolve_alias())
            finally:
                await probe.close()
        return str(parsed)

    async def add(
        self, client: DeploymentClient, assume_role_arn: str | None = None
    ) -> Deployment:
        discovery = await client.discover()
        for service in discovery["services"]:  # names go into the store's keys
            for name, what in [(service["name"], "service"),
                               *((h["name"], "handler") for h in service["handlers"])]:
                problem = too_long(f"{what} name", name, MAX_NAME_BYTES)
                if problem is not None:
                    raise ValueError(f"{client.uri} serves {what} {shown(name, 40)}: {problem}")
        now = self.clock.now_ms()
        deployment = Deployment(
            id=deployment_id(client.uri),
            uri=client.uri,
            services=[dict(s) for s in discovery["services"]],
            created_at=now,
            registered_at=now,
            assume_role_arn=assume_role_arn,
        )
        await self.store.put_deployment(deployment)
        replaced = self._route(client, deployment)
        if replaced is not None:
            await replaced.close()
        return deployment

    async def remove(self, deployment_id: str, force: bool = False) -> int:
        """Forget a deployment; the services it took go back to the one registered before it.
        Refused (:class:`DeploymentInUse`) while invocations that have not completed are
        pinned to it, unless ``force`` (they are then paused, visibly, when next driven).
        Returns how many it had; :class:`KeyError` if there is no such deployment."""
        usage = (await self.store.deployment_usage()).get(deployment_id, 0)
        if usage and not force:
            raise DeploymentInUse(deployment_id, usage)
        if not await self.store.delete_deployment(deployment_id):
            raise KeyError(deployment_id)
        client = self.registry.remove(deployment_id)
        if client is not None:
            await client.close()
        return usage

    def _route(self, client: DeploymentClient, deployment: Deployment) -> DeploymentClient | None:
        services: list[ServiceInfo] = [s for s in deployment.services]  # type: ignore[misc]
        replaced = self.registry.add(deployment.id, client, services)
        for service in services:
            log.info("%s %s served by %s", service["kind"], service["name"], deployment.uri)
        return replaced

    def services(self) -> list[dict[str, Any]]:
        return [
            {**service, "deployment": deployment, "uri": client.uri}
            for service, deployment, client in self.registry.services()
        ]

    async def reload(self) -> bool:
        """Load deployments another process registered; True if any was new. At most once a
        second, so requests for a service nobody serves cannot flood the store."""
        now = self.clock.now_ms()
        if now - self._reloaded_at < 1000:
            return False
        self._reloaded_at = now
        known = len(self.registry)
        await self.load()
        return len(self.registry) > known


__all__ = ["Catalog"]
