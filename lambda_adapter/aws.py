"""The runtime itself on AWS Lambda: four functions, and no compute while an invocation waits.

- :data:`ingress`: the Restate-compatible ingress behind API Gateway (Mangum, lifespan off). A
  call drives its first attempt in this function while the client waits, then waits for the
  result in the store, at most ``TARRY_CALL_BUDGET`` (API Gateway gives up at 29 s): past it the
  answer is ``202`` with the invocation's id and where to attach. A send answers ``202`` once the
  invocation is stored and its message queued.
- :data:`worker`: fed by the SQS work queue; a message means *drive this invocation* or *fire
  this timer*. The store stays the truth, so a duplicate message does nothing; a failed one is
  reported in ``batchItemFailures`` (and, after the queue's ``maxReceiveCount``, lands in the
  dead-letter queue).
- :data:`sweep`: on an EventBridge schedule (every minute). It takes over attempts whose lease
  lapsed (their function died), drives what sits ready with nobody driving it, and queues the
  timers that come within SQS's 15-minute delay.
- :data:`admin`: the admin API behind API Gateway with IAM authorisation.

Each is its own composition root over the same parts: the DynamoDB store, the catalog of
deployments, the invoker with the SQS scheduler and a result waiter that reads the store.
Before any of them returns, nothing of it is left running: attempts still in flight are handed
back to the queue (:meth:`~tarry.runtime.invoker.Invoker.hand_off`), their leases released, every
effect sent. Each invocation prints one line, ``{"tarry": "worker", ...}``, with what it cost in
AWS requests (DynamoDB, SQS, Lambda), which CloudWatch Logs Insights can add up.

Settings (environment): ``TARRY_TABLE``, ``TARRY_QUEUE_URL``, ``TARRY_RETENTION`` (idempotency
retention, default ``24h``), ``TARRY_CALL_BUDGET`` (default ``25s``), ``TARRY_SWEEP_PERIOD``
(default ``1m``: how often the schedule runs the sweep), ``TARRY_API_BASE_PATH`` (the stage, for
an HTTP API on a named stage), ``TARRY_LOG_LEVEL`` (default ``INFO``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tarry.clock import Clock, SystemClock
from tarry.runtime.admin import admin_app
from tarry.runtime.catalog import Catalog
from tarry.runtime.durations import DurationError, parse_duration_ms
from tarry.runtime.ingress import IngressConfig, ingress_app
from tarry.runtime.invoker import Invoker
from tarry.runtime.queue import (
    MAX_DELAY_MS,
    Drive,
    QueueScheduler,
    parse_message,
    sweep_timers,
)
from tarry.runtime.registry import Registry
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.waiter import ResultWaiter

try:
    import aioboto3
    from mangum import Mangum
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the runtime on Lambda needs: pip install 'tarry[aws]'") from exc

log = logging.getLogger("tarry.aws")

# Stop driving this long before the worker function's own timeout, and hand what is still in
# flight back to the queue.
_WORKER_MARGIN_MS = 5_000
# A warm function reads the deployments registered since at most this long ago, so a version
# registered through the admin API takes new invocations everywhere within it.
_CATALOG_TTL_MS = 5_000


class ConfigError(Exception):
    """A setting the function needs is missing or malformed."""


def _setting(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if not value:
        raise ConfigError(f"{name} is not set: the function's environment must name it")
    return value


def _duration(env: Mapping[str, str], name: str, default: str) -> int:
    try:
        return parse_duration_ms(env.get(name) or default)
    except DurationError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


class AwsRuntime:
    """The runtime's parts as one Lambda process holds them: made on the first invocation,
    kept while the process is warm (its clients and its event loop with it)."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        session: Any = None,
    ) -> None:
        env = os.environ if env is None else env
        self.table = _setting(env, "TARRY_TABLE")
        self.queue_url = _setting(env, "TARRY_QUEUE_URL")
        self.ingress_config = IngressConfig(
            idempotency_retention_ms=_duration(env, "TARRY_RETENTION", "24h"),
            call_budget_ms=_duration(env, "TARRY_CALL_BUDGET", "25s"),
            drive_sends=False,  # a send's attempt would outlive the request: the queue has it
        )
        self.sweep_period_ms = _duration(env, "TARRY_SWEEP_PERIOD", "1m")
        self.base_path = env.get("TARRY_API_BASE_PATH") or "/"
        self.clock = clock or SystemClock()
        self.session = session or aioboto3.Session()
        self.calls: Counter[str] = Counter()  # AWS requests made, by service
        self.session.events.register("before-parameter-build", self._count)
        self.store = DynamoDBStore(self.table, session=self.session)
        self.registry = Registry()
        self.catalog = Catalog(self.store, self.registry, self.clock, self.session)
        self.loop = asyncio.new_event_loop()
        self._exit = contextlib.AsyncExitStack()
        self._started = False
        self._loaded_at = 0
        self.scheduler: QueueScheduler | None = None
        self._invoker: Invoker | None = None

    def _count(self, model: Any = None, params: Any = None, **_: Any) -> None:
        """Count an AWS request by service and operation; for DynamoDB's batches and
        transactions also the items, which are what it bills."""
        if model is None:
            return
        name = f"{model.service_model.service_name}.{model.name}"
        self.calls[name] += 1
        items = _items(params)
        if items is not None:
            self.calls[f"{name}.items"] += items

    @property
    def invoker(self) -> Invoker:
        assert self._invoker is not None, "start() first"
        return self._invoker

    async def start(self) -> None:
        """Open the queue client (once per process); load the deployments registered since
        the last time, if that was more than a few seconds ago."""
        if self._started:
            now = self.clock.now_ms()
            if now - self._loaded_at >= _CATALOG_TTL_MS:
                await self.catalog.load()
                self._loaded_at = now
            return
        sqs = await self._exit.enter_async_context(self.session.client("sqs"))
        self.scheduler = QueueScheduler(sqs, self.queue_url, self.clock)
        waiter = ResultWaiter(self.store, self.clock, poll=True)  # a worker finishes it
        self._invoker = Invoker(self.store, self.registry, self.clock, self.scheduler, waiter)
        self._invoker.reload_deployments = self.catalog.reload
        await self.catalog.load()
        self._loaded_at = self.clock.now_ms()
        self._started = True

    @contextlib.contextmanager
    def current_loop(self) -> Iterator[asyncio.AbstractEventLoop]:
        """This process's loop as the thread's current one while an invocation runs (Mangum
        runs on the current loop; see tarry.lambda_adapter.http)."""
        asyncio.set_event_loop(self.loop)
        try:
            yield self.loop
        finally:
            asyncio.set_event_loop(None)

    @contextlib.asynccontextmanager
    async def leases(self) -> AsyncIterator[None]:
        """Renew the leases of this process's attempts while an invocation of it runs; the
        task stops before the invocation returns (a frozen one renews nothing, and its attempts'
        leases lapse, so another process takes them over)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.store.sweep_interval_ms / 1000)
                try:
                    await self.store.renew_leases(self.clock.now_ms())
                except Exception:
                    log.exception("renewing leases failed; trying again")

        task = asyncio.ensure_future(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def report(self, function: str, started: float, **facts: Any) -> None:
        """The invocation's one log line: what it did and the AWS requests it made."""
        line = {"tarry": function, **facts}
        line["ms"] = round((time.perf_counter() - started) * 1000, 1)
        line["requests"] = dict(self.calls)
        self.calls.clear()
        print(json.dumps(line, separators=(",", ":")), file=sys.stdout, flush=True)

    async def close(self) -> None:
        if self._invoker is not None:
            await self._invoker.close()
        await self.registry.close()
        await self.store.close()
        await self._exit.aclose()


def _items(params: Any) -> int | None:
    """The items of a DynamoDB transaction or batch request (``None`` for any other)."""
    if not isinstance(params, dict):
        return None
    if "TransactItems" in params:
        return len(params["TransactItems"])
    if "RequestItems" in params:  # BatchGetItem: {table: {"Keys": [...]}}; BatchWriteItem: lists
        return sum(
            len(r["Keys"]) if isinstance(r, dict) else len(r)
            for r in params["RequestItems"].values()
        )
    return None


_runtime: AwsRuntime | None = None


def runtime() -> AwsRuntime:
    """This process's runtime, made on first use."""
    global _runtime
    if _runtime is None:
        logging.basicConfig(level=os.environ.get("TARRY_LOG_LEVEL", "INFO").upper())
        for noisy in ("botocore", "aiobotocore", "aioboto3", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _runtime = AwsRuntime()
    return _runtime


# -- ingress and admin: API Gateway events, through Mangum --------------------------------------


class _RawPath:
    """Gives the ASGI scope the path as the client sent it (Mangum leaves ``raw_path`` empty;
    an HTTP API's event has it as ``rawPath``), so a key may hold an encoded ``/``."""

    def __init__(self, app: ASGIApp, base_path: str) -> None:
        self.app = app
        self.base = "/" + base_path.strip("/") if base_path.strip("/") else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event") or {}
        raw = event.get("rawPath") if isinstance(event, dict) else None
        if scope["type"] == "http" and not scope.get("raw_path") and isinstance(raw, str):
            if self.base and raw.startswith(self.base + "/"):
                raw = raw[len(self.base) :]
            scope = {**scope, "raw_path": raw.encode("latin-1")}
        await self.app(scope, receive, send)


class _Function:
    """One of the runtime's Lambda handlers, bound to the process's runtime on first use (tests
    bind their own)."""

    name = ""

    def __init__(self) -> None:
        self._rt: AwsRuntime | None = None

    def bind(self, rt: AwsRuntime) -> _Function:
        self._rt = rt
        return self

    def _bound(self) -> AwsRuntime:
        if self._rt is None:
            self.bind(runtime())
        assert self._rt is not None
        return self._rt


class _EventFunction(_Function):
    """A handler of a non-HTTP event (SQS, a schedule): :meth:`handle` runs it on the
    runtime's loop and says what to answer and what to report."""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        rt = self._bound()
        started = time.perf_counter()
        with rt.current_loop() as loop:
            answer, facts = loop.run_until_complete(self.handle(rt, event, context))
        rt.report(self.name, started, **facts)
        return answer

    async def handle(
        self, rt: AwsRuntime, event: dict[str, Any], context: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError


class ApiFunction(_Function):
    """A Lambda handler serving one of the runtime's Starlette apps behind API Gateway."""

    def __init__(self, name: str, make_app: Callable[[AwsRuntime], ASGIApp]) -> None:
        super().__init__()
        self.name = name
        self._make_app = make_app
        self._mangum: Mangum | None = None

    def bind(self, rt: AwsRuntime) -> ApiFunction:
        super().bind(rt)
        self._mangum = None
        return self

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        rt = self._bound()
        started = time.perf_counter()
        with rt.current_loop() as loop:
            loop.run_until_complete(rt.start())
            if self._mangum is None:
                app = _RawPath(self._make_app(rt), rt.base_path)
                self._mangum = Mangum(app, lifespan="off", api_gateway_base_path=rt.base_path)
            keeper = rt.leases()
            loop.run_until_complete(keeper.__aenter__())
            try:
                response = self._mangum(event, context)
            finally:
                # whatever the request started and left in flight goes back to the queue
                loop.run_until_complete(rt.invoker.hand_off())
                loop.run_until_complete(keeper.__aexit__(None, None, None))
        rt.report(self.name, started, status=response.get("statusCode"))
        return response


def ingress_app_of(rt: AwsRuntime) -> ASGIApp:
    return ingress_app(
        rt.store, rt.registry, rt.invoker, rt.clock, rt.ingress_config, rt.catalog.reload
    )


def admin_app_of(rt: AwsRuntime) -> ASGIApp:
    # behind API Gateway's IAM authorisation: every request is signed by an AWS identity, and
    # its Host is the API's domain, so the guard keeps its browser rules only
    return admin_app(rt.store, rt.clock, rt.catalog, rt.invoker, loopback_only=False)


ingress = ApiFunction("ingress", ingress_app_of)
admin = ApiFunction("admin", admin_app_of)


# -- worker: SQS ---------------------------------------------------------------------------------


class WorkerFunction(_EventFunction):
    """The SQS-fed worker: drives invocations and fires timers, one message each."""

    name = "worker"

    def bind(self, rt: AwsRuntime) -> WorkerFunction:
        super().bind(rt)
        return self

    async def handle(
        self, rt: AwsRuntime, event: dict[str, Any], context: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Failed messages are answered in ``batchItemFailures``: SQS delivers them again."""
        await rt.start()
        records = event.get("Records") or []
        async with rt.leases():
            work = asyncio.gather(*(self._one(rt, r) for r in records), return_exceptions=True)
            remaining = _remaining_ms(context)
            try:
                if remaining is None:
                    results = await work
                else:
                    budget = max(0.0, (remaining - _WORKER_MARGIN_MS) / 1000)
                    results = await asyncio.wait_for(asyncio.shield(work), budget)
            except TimeoutError:
                log.warning("the worker's time is running out: handing attempts back")
                await rt.invoker.hand_off()
                results = await work
            await rt.invoker.hand_off()  # nothing of it may run on once this returns
        failed = []
        for record, result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                message_id = record.get("messageId", "?")
                log.error("message %s failed: %r; SQS delivers it again", message_id, result)
                failed.append(message_id)
        answer = {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
        return answer, {"messages": len(records), "failed": len(failed)}

    async def _one(self, rt: AwsRuntime, record: dict[str, Any]) -> None:
        # one not of ours (BadMessage) fails: after maxReceiveCount it lands in the dead-letter
        # queue, visibly
        message = parse_message(record.get("body", ""))
        if isinstance(message, Drive):
            await rt.invoker.drive(message.invocation_id)
        else:
            await rt.invoker.fire(message.timer)


def _remaining_ms(context: Any) -> int | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else None


worker = WorkerFunction()


# -- sweep: EventBridge schedule -----------------------------------------------------------------


class SweepFunction(_EventFunction):
    """The scheduled sweep: what no function is doing, and timers coming due."""

    name = "sweep"

    def bind(self, rt: AwsRuntime) -> SweepFunction:
        super().bind(rt)
        return self

    async def handle(
        self, rt: AwsRuntime, event: dict[str, Any], context: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        await rt.start()
        assert rt.scheduler is not None
        now = rt.clock.now_ms()
        ready, due = await rt.store.sweep(now, MAX_DELAY_MS)
        timers = sweep_timers(due, now, rt.sweep_period_ms)
        await rt.scheduler.drive(ready)
        await rt.scheduler.arm(timers)
        result = {"driven": len(ready), "timers": len(timers)}
        return result, result


sweep = SweepFunction()


__all__ = [
    "ApiFunction",
    "AwsRuntime",
    "ConfigError",
    "SweepFunction",
    "WorkerFunction",
    "admin",
    "admin_app_of",
    "ingress",
    "ingress_app_of",
    "runtime",
    "sweep",
    "worker",
]
