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
    HttpDeployment,
    InProcessDeployment,
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
        """Route to HTTP deployments registered in the store, including those another process
        registered after this one started."""
        for deployment in await self.store.deployments():
            known = self.registry.deployment(deployment.uri)
            if deployment.uri.startswith(("http://", "https://")) and known is None:
                self._add(HttpDeployment(deployment.uri), deployment)

    async def register(self, uri: str) -> Deployment:
        """Run discovery against an HTTP deployment and route its services to it."""
        existing = self.registry.deployment(uri.rstrip("/"))
        client = existing or HttpDeployment(uri)
        try:
            return await self._register(client)
        except Exception:
            if existing is None:
                await client.close()
            raise

    async def _register(self, client: DeploymentClient) -> Deployment:
        discovery = await client.discover()
        deployment = Deployment(
            id=deployment_id(client.uri),
            uri=client.uri,
            services=[dict(s) for s in discovery["services"]],
            created_at=self.clock.now_ms(),
        )
        await self.store.put_deployment(deployment)
        self._add(client, deployment)
        return deployment

    def _add(self, client: DeploymentClient, deployment: Deployment) -> None:
        services: list[ServiceInfo] = [s for s in deployment.services]  # type: ignore[misc]
        self.registry.add(client, services)
        for service in services:
            log.info("%s %s served by %s", service["kind"], service["name"], deployment.uri)

    def services(self) -> list[dict[str, Any]]:
        return [
            {**service, "deployment": deployment_id(client.uri), "uri": client.uri}
            for service, client in self.registry.services()
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
        known = len(self.registry.services())
        await self._load_deployments()
        return len(self.registry.services()) > known

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
