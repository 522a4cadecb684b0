"""The runtime assembled: store, registry, invoker, timers, ingress and admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Iterable, Iterator
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
from .store import Deployment, SharedStore, Store, StoreBusy, StoreUnavailable
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
        for absent in self.catalog.unserved():
            names = ", ".join(s["name"] for s in absent.services)
            log.warning(
                "deployment %s (%s) was registered by a `tarry dev` that is not running: its "
                "services (%s) answer 404 here until it runs again on this store; `tarry "
                "deployments rm %s --force` forgets it",
                absent.id, absent.uri, names, absent.id,
            )  # fmt: skip
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
            except (StoreUnavailable, StoreBusy) as exc:  # it says what is wrong
                log.warning("sweeping the store failed: %s; trying again", exc)
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

    def begin_stop(self) -> None:
        """Stop taking on work: callers waiting are answered (503, the invocation goes on after
        a restart), timers and the sweep stop, and no attempt begins; those in flight go on
        until :meth:`drain` or :meth:`stop`."""
        self.invoker.begin_stop()
        self.invoker.waiter.stop()
        for task in self._tasks:
            task.cancel()

    async def drain(self, timeout_s: float) -> int:
        """Let the attempts in flight end, for at most ``timeout_s``; how many did not."""
        return await self.invoker.drain(timeout_s)

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


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to :func:`serve`, which stops the
    runtime and both servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    runtime: Runtime,
    ingress_socket: socket.socket,
    admin_socket: socket.socket,
    log_level: str = "warning",
    admin_token: str | None = None,
    grace_s: float = 5.0,
) -> None:
    """Serve the ingress and the admin API on bound sockets until SIGTERM or SIGINT (Ctrl-C).

    Then, within ``grace_s``: callers waiting for an invocation get 503 with ``Retry-After``
    (it goes on after a restart), the listeners close, and the attempts in flight may end;
    what has not is left to the next process. A second signal stops at once."""

    def server(app: ASGIApp) -> uvicorn.Server:
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=75,  # clients keep pooled connections; don't close them under load
            timeout_graceful_shutdown=max(1, math.ceil(grace_s)),
        )
        return _Server(config)

    servers = [
        (server(runtime.ingress_app()), ingress_socket),
        (server(runtime.admin_app(admin_token)), admin_socket),
    ]
    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    assert serving is not None
    deadline: float | None = None

    def on_signal(sig: signal.Signals) -> None:
        nonlocal deadline
        if deadline is None:
            deadline = loop.time() + grace_s
            log.warning("%s: stopping within %g s (again to stop at once)", sig.name, grace_s)
            runtime.begin_stop()
            for s, _ in servers:
                s.should_exit = True
        else:
            log.warning("%s again: stopping now", sig.name)
            for s, _ in servers:
                s.force_exit = True
            serving.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in servers))
        if deadline is not None:
            left = await runtime.drain(deadline - loop.time())
            if left:
                log.warning("%d attempts did not end in time; they resume on restart", left)
    except asyncio.CancelledError:
        if deadline is None or not servers[0][0].force_exit:
            raise  # not the second signal's doing
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for s, _ in servers:
            s.should_exit = True


__all__ = ["Runtime", "serve"]
