"""The context handlers receive. Users type against these interfaces; the implementation lives
in :mod:`tarry._context`, and tests may pass a fake that implements them."""

from __future__ import annotations

import logging
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from .operations.base import DurableFuture
from .operations.call import SendHandle
from .operations.promise import DurablePromise

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """What the handler was invoked with."""

    id: str
    headers: dict[str, str]
    key: str | None
    attempt: int


class Context(ABC):
    """The context of every handler."""

    @abstractmethod
    def run(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        max_attempts: int | None = None,
        initial_interval: timedelta | None = None,
        max_interval: timedelta | None = None,
        factor: float | None = None,
        result_type: Any = Any,
        at_most_once: bool = False,
    ) -> DurableFuture[Any]:
        """Run ``fn(*args)`` once and journal its result (or terminal failure).

        Sync callables run in a worker thread. A failure other than :class:`TerminalError` is
        retried with backoff; with ``max_attempts`` set, the step fails terminally after that
        many tries.

        A step runs at least once: if the process dies after ``fn`` ran and before its result
        was stored, it runs again. With ``at_most_once=True`` it runs at most once, ever: the
        step is stored before ``fn`` starts, and if it is interrupted (the process dies while
        ``fn`` runs, or before its result is stored) it is not run again: awaiting it raises
        :class:`~tarry.StepInterrupted`. A failure of ``fn`` is then terminal at once (no
        retry options apply).

        >>> total = await ctx.run("charge", charge, order_id, max_attempts=5)  # doctest: +SKIP
        >>> await ctx.run("wire", wire_money, order_id, at_most_once=True)  # doctest: +SKIP
        """

    @abstractmethod
    def sleep(self, duration: timedelta, name: str = "") -> DurableFuture[None]:
        """A durable timer; the handler suspends (no compute) until it fires."""

    @abstractmethod
    def service_call(
        self,
        target: Callable[..., Any],
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        """Call a service handler; await the result."""

    @abstractmethod
    def object_call(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        """Call a virtual object handler for ``key``; await the result."""

    @abstractmethod
    def workflow_call(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        """Call a workflow handler for ``key``; await the result."""

    @abstractmethod
    def generic_call(
        self, service: str, handler: str, arg: Any = None, key: str | None = None
    ) -> DurableFuture[Any]:
        """Call a handler by name."""

    @abstractmethod
    def service_send(
        self,
        target: Callable[..., Any],
        arg: Any = None,
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Start a service handler without waiting for it, optionally after ``delay``."""

    @abstractmethod
    def object_send(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Start a virtual object handler without waiting for it."""

    @abstractmethod
    def workflow_send(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Start a workflow handler without waiting for it."""

    @abstractmethod
    def generic_send(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        key: str | None = None,
        delay: timedelta | None = None,
    ) -> SendHandle:
        """Start a handler by name without waiting for it."""

    @abstractmethod
    def awakeable(self, type_hint: Any = Any) -> tuple[str, DurableFuture[Any]]:
        """An id to hand to the outside world, and a future that its completion resolves.

        Complete it over HTTP (``POST /restate/awakeables/{id}/resolve`` with a JSON body, or
        ``/reject`` with a message) or from any handler (:meth:`resolve_awakeable`). Awaiting it
        suspends the handler (no compute) until then.

        >>> awk_id, clicked = ctx.awakeable()  # doctest: +SKIP
        >>> await ctx.run("email", send_link, awk_id)  # doctest: +SKIP
        >>> await clicked  # doctest: +SKIP
        """

    @abstractmethod
    def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> DurableFuture[None]:
        """Complete an awakeable with ``value``. The first completion of an awakeable wins;
        awaiting the result (optional) raises :class:`TerminalError` 409 if this one came too
        late, 404 if there is no such awakeable."""

    @abstractmethod
    def reject_awakeable(
        self, awakeable_id: str, message: str, code: int = 500
    ) -> DurableFuture[None]:
        """Complete an awakeable with a failure: its awaiter gets a :class:`TerminalError`."""

    @abstractmethod
    def attach_invocation(self, invocation_id: str, type_hint: Any = Any) -> DurableFuture[Any]:
        """Await the result of another invocation, by id (for example one a send started)."""

    @abstractmethod
    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation: it sees a :class:`TerminalError` 409 ``cancelled`` at the
        await it is suspended on (or its next one), and can run compensations."""

    @abstractmethod
    def random(self) -> random.Random:
        """A random generator seeded by the invocation: the same numbers on every replay.

        Seeded from the invocation's secret, so not predictable from its id; but it is not a
        CSPRNG: make a token someone must not guess (a link, a password) in a ``ctx.run`` step
        with :mod:`secrets`."""

    @abstractmethod
    def uuid(self) -> uuid.UUID:
        """A UUID (v4) that is the same on every replay (from :meth:`random`: not for secrets)."""

    @abstractmethod
    def time(self) -> DurableFuture[float]:
        """The current time in seconds since the epoch, journaled on first execution."""

    @property
    @abstractmethod
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stays quiet while the handler replays steps it already logged."""

    @abstractmethod
    def request(self) -> Request:
        """The invocation id, headers and key this handler was invoked with."""


class ObjectSharedContext(Context):
    """The context of a shared (read-only, concurrent) virtual object or workflow handler."""

    @abstractmethod
    def key(self) -> str:
        """The object's key."""

    @abstractmethod
    async def get(self, name: str, type_hint: Any = Any) -> Any:
        """The value stored under ``name``, or ``None``."""

    @abstractmethod
    async def state_keys(self) -> list[str]:
        """The names that hold a value."""


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive virtual object handler: one at a time per key."""

    @abstractmethod
    def set(self, name: str, value: Any) -> None:
        """Store ``value`` under ``name``."""

    @abstractmethod
    def clear(self, name: str) -> None:
        """Remove ``name``."""

    @abstractmethod
    def clear_all(self) -> None:
        """Remove every name."""


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers: they read the workflow's state and resolve
    or await its durable promises while ``run`` is waiting."""

    @abstractmethod
    def promise(self, name: str, type_hint: Any = Any) -> DurablePromise:
        """The workflow key's durable promise ``name``.

        >>> await ctx.promise("email-verified").value()  # doctest: +SKIP
        """


class WorkflowContext(ObjectContext, WorkflowSharedContext):
    """The context of a workflow's ``run`` handler."""


__all__ = [
    "Context",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "WorkflowContext",
    "WorkflowSharedContext",
]
