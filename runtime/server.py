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
from starlette.types import ASGIApp

from tarry.clock import Clock, SystemClock
from tarry.endpoint import Endpoint
from tarry.service import ServiceDefinition

from .admin import admin_app
from .catalog import Catalog
from .deployments import InProcessDeployment
from .effects import LocalScheduler
from .ingress import CHECKPOINT_PATH, IngressConfig, ingress_app
from .invoker import Invoker, RetryConfig
from .registry import Registry
from .store import Deployment, SharedStore, Store
from .timers import TimerWheel
from .waiter import ResultWaiter

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
        self.catalog = Catalog(store, self.registry, self.clock)
        checkpoint_url = advertised_url.rstrip("/") + CHECKPOINT_PATH if advertised_url else None
        self.timers = TimerWheel(self.clock, lambda timer: self.invoker.fire(timer))
        shared = isinstance(store, SharedStore)  # results may come from other processes
        self.invoker = Invoker(
            store,
            self.registry,
            self.clock,
            LocalScheduler(lambda invocation_id: self.invoker.dispatch(invocation_id),
                           self.timers.arm),
            ResultWaiter(store, self.clock),  # the sweep reads what others finish
            retry,
            checkpoint_url,
        )  # fmt: skip
        if shared:
            self.invoker.reload_deployments = self.catalog.reload
        self.ingress_config = ingress or IngressConfig()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, services: Iterable[ServiceDefinition] = (), name: str = "app") -> None:
        """Register in-process services, reload HTTP deployments, and resume unfinished work."""
        await self.catalog.load()
        services = list(services)
        if services:
            client = InProcessDeployment(Endpoint(services, self.clock), name)
            await self.catalog.add(client)
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
        started, due timers)."""
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
                await self.invoker.waiter.poll(self.invoker.driving)
                await self.catalog.load()
            except Exception:
                log.exception("sweeping the store failed; trying again")

    async def register(
        self, uri: str, assume_role_arn: str | None = None, latest: bool = False
    ) -> Deployment:
        """Register a deployment (:meth:`Catalog.register`)."""
        return await self.catalog.register(uri, assume_role_arn, latest)

    async def remove(self, deployment_id: str, force: bool = False) -> int:
        """Forget a deployment (:meth:`Catalog.remove`)."""
        return await self.catalog.remove(deployment_id, force)

    def services(self) -> list[dict[str, Any]]:
        return self.catalog.services()

    def ingress_app(self) -> Starlette:
        reload = self.catalog.reload if isinstance(self.store, SharedStore) else None
        return ingress_app(
            self.store, self.registry, self.invoker, self.clock, self.ingress_config, reload
        )

    def admin_app(self, token: str | None = None) -> ASGIApp:
        """The admin API; with ``token``, every request must carry it (:mod:`.admin_auth`)."""
        return admin_app(self.store, self.clock, self.catalog, self.invoker, token)

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
    admin_token: str | None = None,
) -> None:
    """Serve the ingress and the admin API on bound sockets until interrupted."""

    def server(app: ASGIApp) -> uvicorn.Server:
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
        (server(runtime.admin_app(admin_token)), admin_socket),
    ]
    try:
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in servers))
    finally:
        for s, _ in servers:
            s.should_exit = True


__all__ = ["Runtime", "serve"]
