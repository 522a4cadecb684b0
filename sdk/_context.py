"""The implementation of the context interfaces, over one :class:`~tarry._attempt.Attempt`."""

from __future__ import annotations

import hashlib
import logging
import random as _random
import uuid as _uuid
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from typing import Any

from ._attempt import Attempt
from .context import (
    Request,
    WorkflowContext,
)
from .operations import awakeable as _awakeable
from .operations import call as _call
from .operations import run as _run
from .operations import sleep as _sleep
from .operations import state as _state
from .operations.base import DurableFuture
from .operations.call import SendHandle
from .operations.promise import DurablePromise
from .protocol import LATE_SECRET_PREFIX
from .retry import RetryPolicy
from .service import HandlerDef, handler_def

HANDLER_LOGGER = "tarry.handler"  # the logger behind every handler's ctx.logger
_handler_log = logging.getLogger(HANDLER_LOGGER)


class _ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    """Drops records while the handler replays steps it already took (and logged)."""

    def __init__(self, attempt: Attempt, handler: HandlerDef) -> None:
        super().__init__(_handler_log, {})
        self._attempt = attempt
        self._prefix = f"[{handler.service}/{handler.name}][{attempt.request['invocation_id']}]"

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"{self._prefix} {msg}", kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self._attempt.journal.replaying:
            super().log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return not self._attempt.journal.replaying and super().isEnabledFor(level)


def _policy(
    max_attempts: int | None,
    initial_interval: timedelta | None,
    max_interval: timedelta | None,
    factor: float | None,
) -> RetryPolicy | None:
    if max_attempts is None and initial_interval is None and max_interval is None and not factor:
        return None
    default = RetryPolicy()
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=initial_interval or default.initial_interval,
        max_interval=max_interval or default.max_interval,
        factor=factor or default.factor,
    )


class HandlerContext(WorkflowContext):
    """Every context interface at once; the handler's kind decides what it may use."""

    def __init__(self, attempt: Attempt, handler: HandlerDef) -> None:
        self._attempt = attempt
        self._handler = handler
        # Seeded by the invocation's secret: the numbers repeat on every replay, but knowing
        # the (public) invocation id does not predict them. One stored before secrets keeps
        # the seed of its id it had, so its replays draw what it drew.
        secret = attempt.request.get("secret", "")
        if secret and not secret.startswith(LATE_SECRET_PREFIX):
            seed = hashlib.sha256(b"tarry ctx.random\x00" + secret.encode()).digest()
        else:
            seed = hashlib.sha256(attempt.request["invocation_id"].encode()).digest()[:8]
        self._random = _random.Random(int.from_bytes(seed, "big"))
        self._logger = _ReplayAwareLogger(attempt, handler)

    # -- steps and timers ------------------------------------------------------------------

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
        policy = _policy(max_attempts, initial_interval, max_interval, factor)
        if at_most_once and policy is not None and policy != RetryPolicy(max_attempts=1):
            raise ValueError(
                f"run {name!r} is at most once, so it is never retried: give it no retry options"
            )
        return _run.run(self._attempt, name, fn, args, policy, result_type, at_most_once)

    def sleep(self, duration: timedelta, name: str = "") -> DurableFuture[None]:
        return _sleep.sleep(self._attempt, duration, name)

    def time(self) -> DurableFuture[float]:
        clock = self._attempt.clock
        return _run.run(self._attempt, "time", lambda: clock.now_ms() / 1000, (), None, float)

    # -- the outside world -----------------------------------------------------------------

    def awakeable(self, type_hint: Any = Any) -> tuple[str, DurableFuture[Any]]:
        return _awakeable.awakeable(self._attempt, type_hint)

    def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> DurableFuture[None]:
        return _awakeable.complete(self._attempt, awakeable_id, _awakeable.resolution(value))

    def reject_awakeable(
        self, awakeable_id: str, message: str, code: int = 500
    ) -> DurableFuture[None]:
        completion = _awakeable.rejection(message, code)
        return _awakeable.complete(self._attempt, awakeable_id, completion)

    def attach_invocation(self, invocation_id: str, type_hint: Any = Any) -> DurableFuture[Any]:
        return _call.attach(self._attempt, invocation_id, type_hint)

    def cancel_invocation(self, invocation_id: str) -> None:
        _call.cancel(self._attempt, invocation_id)

    def promise(self, name: str, type_hint: Any = Any) -> DurablePromise:
        return DurablePromise(self._attempt, name, type_hint)

    def random(self) -> _random.Random:
        return self._random

    def uuid(self) -> _uuid.UUID:
        return _uuid.UUID(int=self._random.getrandbits(128), version=4)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._logger

    def request(self) -> Request:
        req = self._attempt.request
        return Request(
            id=req["invocation_id"],
            headers=dict(req["headers"]),
            key=req["key"],
            attempt=req["epoch"],
        )

    # -- calls and sends -------------------------------------------------------------------

    def _target(self, target: Callable[..., Any], kind: str) -> HandlerDef:
        definition = handler_def(target)
        if definition.service_kind != kind:
            raise TypeError(
                f"{definition.service}/{definition.name} is a {definition.service_kind} "
                f"handler, not a {kind} handler"
            )
        return definition

    def _call(
        self, d: HandlerDef, key: str | None, arg: Any, idem: str | None, headers: Any
    ) -> DurableFuture[Any]:
        return _call.call(self._attempt, d.service, d.name, key, arg, d.output_type, idem, headers)

    def _send(
        self,
        d: HandlerDef,
        key: str | None,
        arg: Any,
        delay: timedelta | None,
        idem: str | None,
        headers: Any,
    ) -> SendHandle:
        return _call.send(self._attempt, d.service, d.name, key, arg, delay, idem, headers)

    def service_call(
        self,
        target: Callable[..., Any],
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        return self._call(self._target(target, "service"), None, arg, idempotency_key, headers)

    def object_call(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        return self._call(self._target(target, "object"), key, arg, idempotency_key, headers)

    def workflow_call(
        self,
        target: Callable[..., Any],
        key: str,
        arg: Any = None,
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableFuture[Any]:
        return self._call(self._target(target, "workflow"), key, arg, idempotency_key, headers)

    def generic_call(
        self, service: str, handler: str, arg: Any = None, key: str | None = None
    ) -> DurableFuture[Any]:
        return _call.call(self._attempt, service, handler, key, arg, Any)

    def service_send(
        self,
        target: Callable[..., Any],
        arg: Any = None,
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        d = self._target(target, "service")
        return self._send(d, None, arg, delay, idempotency_key, headers)

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
        d = self._target(target, "object")
        return self._send(d, key, arg, delay, idempotency_key, headers)

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
        d = self._target(target, "workflow")
        return self._send(d, key, arg, delay, idempotency_key, headers)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        key: str | None = None,
        delay: timedelta | None = None,
    ) -> SendHandle:
        return _call.send(self._attempt, service, handler, key, arg, delay)

    # -- state -----------------------------------------------------------------------------

    def key(self) -> str:
        key = self._attempt.request["key"]
        if key is None:
            raise TypeError("a service handler has no key")
        return key

    async def get(self, name: str, type_hint: Any = Any) -> Any:
        return _state.get(self._attempt, name, type_hint)

    async def state_keys(self) -> list[str]:
        return _state.keys(self._attempt)

    def _writable(self, what: str) -> None:
        if self._handler.kind == "shared":
            raise TypeError(f"a shared handler cannot {what} state; make the handler exclusive")

    def set(self, name: str, value: Any) -> None:
        self._writable("set")
        _state.set_(self._attempt, name, value)

    def clear(self, name: str) -> None:
        self._writable("clear")
        _state.clear(self._attempt, name)

    def clear_all(self) -> None:
        self._writable("clear")
        _state.clear_all(self._attempt)


__all__ = ["HandlerContext"]
