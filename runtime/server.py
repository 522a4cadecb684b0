"""The runtime assembled: store, registry, invoker, timers, ingress and admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from tarry.clock import Clock, SystemClock
from tarry.endpoint import Endpoint
from tarry.protocol import ServiceInfo
from tarry.service import ServiceDefinition

from .admin import admin_app
from .deployments import (
    DeploymentClient,
    DeploymentInUse,
    InProcessDeployment,
    client_for,
    deployment_id,
)
from .ingress import CHECKPOINT_PATH, IngressConfig, ingress_app
from .invoker import Invoker, RetryConfig
from .registry import Registry
from .store import Deployment, SharedStore, Store
from .timers import TimerWheel

log = logging.getLogger("tarry.runtime")


class Runtime:
    """Everything but the HTTP servers; ``async with Runtime(store) as rt`` in tests."""

    def __init__(
        self,
        store: Store,
        clock: Clock | None = None,
        retry: RetryConfig | None = None,
        ingress: IngressConfig | None = None,
        advertised_url: str | None = None,
    ) -> None:
        """``advertised_url``: the ingress's URL as HTTP deployments reach it; they post their
        ``ctx.run`` results back to it mid-request. Without it they flush by ending the request
        after each step."""
        self.store = store
        self.clock = clock or SystemClock()
        self.registry = Registry()
        checkpoint_url = advertised_url.rstrip("/") + CHECKPOINT_PATH if advertised_url else None
        self.invoker = Invoker(store, self.registry, self.clock, retry, checkpoint_url)
        self.timers = TimerWheel(self.clock, self.invoker.fire)
        self.invoker.arm_timer = self.timers.arm
        if isinstance(store, SharedStore):
            self.invoker.reload_deployments = self._reload_deployments
        self.ingress_config = ingress or IngressConfig()
        self._tasks: list[asyncio.Task[None]] = []
        self._reloaded_at = 0

    async def start(self, services: Iterable[ServiceDefinition] = (), name: str = "app") -> None:
        """Register in-process services, reload HTTP deployments, and resume unfinished work."""
        await self._load_deployments()
        services = list(services)
        if services:
            client = InProcessDeployment(Endpoint(services, self.clock), name)
            await self._register(client)
        now = self.clock.now_ms()
        for timer in await self.store.timers():
            self.timers.arm(timer)
        for invocation_id in await self.store.recover(now):
            self.invoker.dispatch(invocation_id)
        self._tasks.append(asyncio.create_task(self.timers.run()))
        if isinstance(self.store, SharedStore):
            self._tasks.append(asyncio.create_task(self._sweep(self.store)))

    async def _sweep(self, store: SharedStore) -> None:
        """With a store other processes share: keep this process's attempts leased, and pick up
        what a process that died left behind (lapsed attempts, ready invocations nobody
        started, due timers), and results of calls waited on here but finished there."""
        while True:
            await self.clock.sleep_until(self.clock.now_ms() + store.sweep_interval_ms)
            try:
                now = self.clock.now_ms()
                await store.renew_leases(now)
                ready, timers = await store.sweep(now)
                for timer in timers:
                    self.timers.arm(timer)
                for invocation_id in ready:
                    self.invoker.dispatch(invocation_id)
                await self.invoker.poll_waiters()
                await self._load_deployments()
            except Exception:
                log.exception("sweeping the store failed; trying again")

    async def _load_deployments(self) -> None:
        """Route to the deployments registered in the store (HTTP URLs and Lambda ARNs),
        including those another process registered after this one started, in the order they
        were registered."""
        for deployment in await self.store.deployments():
            if self.registry.knows(deployment.id):
                continue
            try:
                client = client_for(deployment.uri, deployment.assume_role_arn)
            except ValueError:
                continue  # in-process: served by the process that registered it, if any
            self._add(client, deployment)

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
        client = existing or client_for(uri, assume_role_arn)
        try:
            return await self._register(client, assume_role_arn)
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
            probe = LambdaDeployment(parsed, assume_role_arn)
            try:
                return str(await probe.resolve_alias())
            finally:
                await probe.close()
        return str(parsed)

    async def _register(
        self, client: DeploymentClient, assume_role_arn: str | None = None
    ) -> Deployment:
        discovery = await client.discover()
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
        replaced = self._add(client, deployment)
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

    def _add(self, client: DeploymentClient, deployment: Deployment) -> DeploymentClient | None:
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

    def ingress_app(self) -> Starlette:
        reload = self._reload_deployments if isinstance(self.store, SharedStore) else None
        return ingress_app(
            self.store, self.registry, self.invoker, self.clock, self.ingress_config, reload
        )

    async def _reload_deployments(self) -> bool:
        """Load deployments another process registered; True if any was new. At most once a
        second, so requests for a service nobody serves cannot flood the store."""
        now = self.clock.now_ms()
        if now - self._reloaded_at < 1000:
            return False
        self._reloaded_at = now
        known = len(self.registry)
        await self._load_deployments()
        return len(self.registry) > known

    def admin_app(self) -> Starlette:
        return admin_app(self)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.invoker.close()
        await self.registry.close()
        await self.store.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(
    runtime: Runtime,
    ingress_socket: socket.socket,
    admin_socket: socket.socket,
    log_level: str = "warning",
) -> None:
    """Serve the ingress and the admin API on bound sockets until interrupted."""

    def server(app: Starlette) -> uvicorn.Server:
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=75,  # clients keep pooled connections; don't close them under load
        )
        return uvicorn.Server(config)

    servers = [
        (server(runtime.ingress_app()), ingress_socket),
        (server(runtime.admin_app()), admin_socket),
    ]
    try:
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in servers))
    finally:
        for s, _ in servers:
            s.should_exit = True


__all__ = ["Runtime", "serve"]
