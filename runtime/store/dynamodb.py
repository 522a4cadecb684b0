"""The store on DynamoDB: one table (:mod:`.dynamodb_layout`), every operation one optimistic
transaction (:mod:`.dynamodb_unit`), the operations themselves in :mod:`.dynamodb_ops` (core),
:mod:`.dynamodb_attempt` (an attempt's writes), :mod:`.dynamodb_waits` (awakeables, promises)
and :mod:`.dynamodb_control` (cancel, kill, pause, state edits).

The client comes from aioboto3 with the standard AWS settings: region, credentials and the
endpoint (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_DYNAMODB`` for DynamoDB Local or
LocalStack). Throttling is retried by botocore; cancelled transactions by :func:`.run`; what
botocore gives up on (DynamoDB out of reach, throttling, 5xx, credentials refused, the table
gone) is :class:`StoreUnavailable` (:mod:`.dynamodb_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from tarry.protocol import Command, Completion

from . import dynamodb_attempt as attempt
from . import dynamodb_index as index
from . import dynamodb_layout as layout
from . import dynamodb_ops as ops
from .base import (
    UNFINISHED,
    AttemptEnd,
    AttemptStart,
    Created,
    Deployment,
    Effects,
    Invocation,
    NewInvocation,
    StaleEpoch,
    StoreError,
    Timer,
    ValueTooLarge,
)
from .dynamodb_admin import AdminOperations
from .dynamodb_control import Cascade
from .dynamodb_errors import GuardedClient, unavailable
from .dynamodb_layout import Attrs, Key
from .dynamodb_unit import TransactionTooLarge, Unit, query_all, run

T = TypeVar("T")

# Items this process wrote last stand in for reads (a wrong one costs one retry, see
# dynamodb_unit); this many are kept.
_GUESSES = 10_000


def client_config() -> Any:
    """botocore's config: retry throttling and transient errors with backoff, 10 times unless
    the standard AWS settings say otherwise (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE`` or
    ``max_attempts``/``retry_mode`` in the profile)."""
    import botocore.session
    from botocore.config import Config

    settings = botocore.session.get_session()
    retries: dict[str, Any] = {}
    if settings.get_config_variable("retry_mode") is None:
        retries["mode"] = "standard"
    if settings.get_config_variable("max_attempts") is None:
        retries["max_attempts"] = 10  # retries, after the first attempt
    return Config(retries=retries)


class DynamoDBStore(AdminOperations):
    """The :class:`~tarry.runtime.store.Store` on one DynamoDB table, which several runtime
    processes may share (:class:`~tarry.runtime.store.SharedStore`).

    Each attempt this store starts is leased to it for ``lease_ms``; the runtime renews the
    leases of attempts still running (:meth:`renew_leases`) and sweeps for work whose process is
    gone (:meth:`sweep`) every ``sweep_interval_ms``.

    ``identity``: a name this process holds exclusively and keeps across restarts
    (:class:`~.identity.RuntimeIdentity`, ``tarry dev``'s data dir). Attempts are then leased
    to ``identity#incarnation``, and a restarted process takes over what its previous
    incarnations left running at once, not when their leases lapse (see :mod:`.identity` for
    why fencing still holds). Without one (``tarry serve``, a Lambda worker), the owner is the
    incarnation alone, and only a lapsed lease lets another process take an attempt over.

    >>> store = DynamoDBStore("tarry")  # doctest: +SKIP
    """

    ordered_writes = False  # concurrent operations commit in any order

    def __init__(
        self, table: str, session: Any = None, lease_ms: int = 10_000, identity: str | None = None
    ) -> None:
        self.table = table
        self.url = f"dynamodb://{table}"
        self.lease_ms = lease_ms
        self.sweep_interval_ms = max(1, lease_ms // 3)
        # who this store is, in leases: unique per process and per store (its incarnation),
        # after the identity it shares with its earlier and later incarnations, if it has one
        incarnation = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.identity = identity
        self.instance = f"{identity}#{incarnation}" if identity is not None else incarnation
        # until when sweeps look for attempts of earlier incarnations that recovery missed
        self._adopt_until: int | None = None
        self._session = session
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening: asyncio.Lock | None = None
        self._guesses: OrderedDict[Key, Attrs] = OrderedDict()
        self._running: dict[str, int] = {}  # attempts this store started: id -> epoch
        # Writes to one object key's turn item, taken in turn within this process. Every
        # arrival on a key and every hand-over of it writes that one versioned item; racing
        # each other they would mostly lose and retry (200 concurrent calls on one key ran out
        # of retries), while in turn each commits at the first try. Other processes still race
        # this one, and the version condition keeps that correct.
        self._turns = _TurnTaking()
        self._keys: dict[str, tuple[str, str]] = {}  # exclusive attempts: id -> (service, key)

    @property
    def journal_table(self) -> str | None:
        return self.table  # functions append their steps to it themselves

    async def client(self) -> Any:
        """The aioboto3 DynamoDB client, opened on first use."""
        if self._client is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._client is None:
                    try:
                        import aioboto3
                    except ImportError as exc:  # pragma: no cover
                        raise ImportError(
                            "the DynamoDB store needs the aws extra: pip install 'tarry[aws]'"
                        ) from exc
                    session = self._session or aioboto3.Session()
                    try:
                        client = await self._exit.enter_async_context(
                            session.client("dynamodb", config=client_config())
                        )
                    except Exception as exc:  # no region, a profile that is not there
                        mapped = unavailable(exc, self.table, "AWS", "client")
                        if mapped is exc:
                            raise
                        raise mapped from exc
                    # botocore's errors of DynamoDB not serving a request, as StoreUnavailable
                    self._client = GuardedClient(client, self.table)
        return self._client

    async def close(self) -> None:
        await self._exit.aclose()
        self._client = None

    async def check(self) -> None:
        """Fail fast, with a message a person can act on, when the table cannot be used: no
        region set, an endpoint that does not answer, a table that does not exist."""
        import aioboto3
        from botocore.config import Config
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoRegionError,
        )

        endpoint = (
            os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
        ) or "AWS"
        quick = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
        session = self._session or aioboto3.Session()
        try:
            async with session.client("dynamodb", config=quick) as client:
                reply = await client.describe_table(TableName=self.table)
        except NoRegionError:
            raise StoreError("no AWS region is set: export AWS_DEFAULT_REGION") from None
        except EndpointConnectionError as exc:
            raise StoreError(f"cannot reach DynamoDB at {endpoint}: {exc}") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ResourceNotFoundException":
                raise StoreError(
                    f"the table {self.table} does not exist at {endpoint}; create it with: "
                    f"tarry dynamodb create-table {self.table}"
                ) from None
            raise StoreError(
                f"DynamoDB at {endpoint} refused the table {self.table}: "
                f"{error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise StoreError(f"DynamoDB at {endpoint}: {exc}") from None
        status = reply["Table"]["TableStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"the table {self.table} is {status}, not ACTIVE; try again soon")
        indexes = {i["IndexName"]: i for i in reply["Table"].get("GlobalSecondaryIndexes", [])}
        projected = indexes.get(layout.BY_STATUS, {}).get("Projection", {})
        if layout.DEPLOYMENT not in projected.get("NonKeyAttributes", []):
            # Counting what still runs on a deployment reads it from this index; without it,
            # a deployment in use would look unused and could be removed.
            raise StoreError(
                f"the table {self.table} was made by an earlier tarry: its {layout.BY_STATUS} "
                f"index does not project {layout.DEPLOYMENT!r} (the deployment an invocation "
                f"runs on). Create a new table (tarry dynamodb create-table NAME) and use it"
            )

    async def _do(
        self,
        op: Callable[[Unit], Awaitable[T]],
        forget: list[Key] | None = None,
    ) -> T:
        """Run ``op`` as one transaction; remember what it wrote as the next guesses."""
        client = await self.client()
        result, unit = await run(client, self.table, op, self._guesses)
        for key, attrs in unit.committed.items():
            if attrs is not None and layout.kind_of(key) in layout.VERSIONED:
                self._guesses[key] = attrs
                self._guesses.move_to_end(key)
            else:
                self._guesses.pop(key, None)
        for key in forget or []:
            self._guesses.pop(key, None)
        while len(self._guesses) > _GUESSES:
            self._guesses.popitem(last=False)
        return result

    # -- invocations -------------------------------------------------------------------------

    async def create(self, new: NewInvocation, now: int, start: bool = False) -> Created:
        async def op(u: Unit) -> Created:
            effects = Effects()
            if start and new.exclusive and new.key is not None:
                await ops.load_object(u, new.service, new.key)  # one Query: state and turn
            existing = await ops.create(u, new, now, effects)
            if existing is not None:
                return Created(existing.record, True, effects)
            if start and new.id in effects.ready:
                effects.ready.remove(new.id)
                started = await ops.start(u, new.id, now, self._lease(now), new.input, new=True)
                assert started is not None
                return Created(started.invocation, False, effects, started)
            return Created((await ops.must_load(u, new.id)).record, False, effects)

        scope = (new.service, new.key) if new.exclusive and new.key is not None else None
        async with self._turns.take(scope):
            try:
                created = await self._do(op)
            except TransactionTooLarge:
                if new.idempotency_key != "" or new.key is None:
                    raise
                # A workflow key whose run expired, with more state and promises to forget than
                # one transaction holds: forget them first, then claim the key.
                await self._clear_expired_run(new, now)
                created = await self._do(op)
        if created.started is not None:
            self._started(created.started.invocation)
        return created

    async def start_attempt(self, invocation_id: str, now: int) -> AttemptStart | None:
        started = await self._do(lambda u: ops.start(u, invocation_id, now, self._lease(now)))
        if started is not None:
            self._started(started.invocation)
        return started

    def _lease(self, now: int) -> tuple[str, int]:
        return self.instance, now + self.lease_ms

    async def append(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        now: int,
    ) -> Effects:
        _check_sizes(commands, completions, children, None)

        async def op(u: Unit, cascade: Cascade) -> Effects:
            row = await ops.fenced(u, invocation_id, epoch)
            effects = Effects()
            await attempt.apply(u, row, commands, completions, children, now, effects, cascade)
            row = await ops.must_load(u, invocation_id)
            ops.save(u, row.with_(retry_count=0, modified_at=now))
            return effects

        try:
            effects, later = await self._cascading(op, now)
            return effects.merge(later)
        except StaleEpoch:
            self._ended(invocation_id, epoch)
            raise
        except TransactionTooLarge:
            if len(commands) < 2:
                raise
        # Too much for one transaction: store it as two appends, a journal prefix each. A crash
        # between them leaves the first half stored, as if the attempt had appended it alone.
        first, rest = await self._split(invocation_id, commands, completions, children)
        effects = await self.append(invocation_id, epoch, *first, now)
        return effects.merge(await self.append(invocation_id, epoch, *rest, now))

    async def end_attempt(
        self,
        invocation_id: str,
        epoch: int,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
        end: AttemptEnd,
        now: int,
    ) -> Effects:
        _check_sizes(commands, completions, children, end.completion)

        async def op(u: Unit, cascade: Cascade) -> Effects:
            row = await ops.fenced(u, invocation_id, epoch)
            effects = Effects()
            changed = await attempt.apply(
                u, row, commands, completions, children, now, effects, cascade
            )
            if changed:
                ops.save(u, (await ops.must_load(u, invocation_id)).with_(retry_count=0))
            interrupt = row.record.interrupt
            await attempt.end(u, invocation_id, end, interrupt, now, effects, cascade)
            ended = await ops.must_load(u, invocation_id)
            ops.save(u, replace(ended, owner=None, lease_until=None))  # the lease ends too
            return effects

        done = [layout.invocation_key(invocation_id)] if end.kind == "completed" else []
        try:
            async with self._turns.take(self._keys.get(invocation_id)):
                effects, later = await self._cascading(op, now, forget=done)
        except StaleEpoch:
            self._ended(invocation_id, epoch)
            raise
        except TransactionTooLarge:
            if len(commands) < 2:
                raise
        else:
            self._ended(invocation_id, epoch)
            return effects.merge(later)
        first, rest = await self._split(invocation_id, commands, completions, children)
        effects = await self.append(invocation_id, epoch, *first, now)
        return effects.merge(await self.end_attempt(invocation_id, epoch, *rest, end, now))

    def _started(self, inv: Invocation) -> None:
        self._running[inv.id] = inv.epoch
        if inv.exclusive and inv.key is not None:
            self._keys[inv.id] = (inv.service, inv.key)

    def _ended(self, invocation_id: str, epoch: int) -> None:
        if self._running.get(invocation_id) == epoch:
            del self._running[invocation_id]
            self._keys.pop(invocation_id, None)

    async def _split(
        self,
        invocation_id: str,
        commands: list[Command],
        completions: dict[str, Completion],
        children: list[NewInvocation],
    ) -> tuple[
        tuple[list[Command], dict[str, Completion], list[NewInvocation]],
        tuple[list[Command], dict[str, Completion], list[NewInvocation]],
    ]:
        """Cut a write in two at the middle of its commands; each completion and child goes with
        the half that holds its command."""
        inv = await self.get(invocation_id)
        base = inv.journal_length if inv is not None else 0
        half = len(commands) // 2
        ids = {c.get("invocation_id") for c in commands[:half]}
        cut = base + half
        first = (
            commands[:half],
            {k: v for k, v in completions.items() if int(k) < cut},
            [c for c in children if c.id in ids],
        )
        rest = (
            commands[half:],
            {k: v for k, v in completions.items() if int(k) >= cut},
            [c for c in children if c.id not in ids],
        )
        return first, rest

    async def fire_timer(self, timer: Timer, now: int) -> Effects:
        if timer.fire_at > now:  # never early
            return Effects(timers=[timer])

        async def op(u: Unit) -> Effects:
            effects = Effects()
            key = layout.timer_key(timer.invocation_id, timer.kind, timer.index)
            u.assume(key, layout.timer_attrs(timer))  # still armed, usually; the delete checks
            attrs = await u.get(key)
            if attrs is None or attrs[layout.FIRE_AT] != timer.fire_at:
                return effects  # fired already, or re-armed for another time
            u.delete(key, layout.timer_due(timer.fire_at))
            if timer.kind == "sleep":
                await ops.add_completion(
                    u, timer.invocation_id, timer.index, {"value": None}, now, effects
                )
            elif timer.kind == "start":
                row = await ops.load(u, timer.invocation_id)
                if row is not None and row.record.status == "scheduled":
                    await ops.enqueue(u, row, now, effects)
            elif timer.kind == "retry":
                row = await ops.load(u, timer.invocation_id)
                if row is not None and row.record.status == "backing-off":
                    ops.save(u, row.with_(status="ready", next_retry_at=None, modified_at=now))
                    effects.ready.append(timer.invocation_id)
            return effects

        return await self._do(op)

    async def timers(self) -> list[Timer]:
        return await index.timers(await self.client(), self.table)

    async def recover(self, now: int) -> list[str]:
        """After a restart: attempts this store started are lost, and so are those its
        identity's earlier incarnations started and those whose lease lapsed (their process is
        gone); make them ready. Another process's attempt that still holds its lease is left
        alone. Returns what is ready to run, oldest first."""
        self._guesses.clear()

        def lost(owner: str | None) -> bool:  # nothing this store started runs any more
            return owner == self.instance or self._earlier_incarnation(owner)

        for inv in await index.by_status(await self.client(), self.table, "running"):
            await self._take_over(inv.id, now, lost)
        if self.identity is not None:
            self._adopt_until = now + self.lease_ms
        ready = await index.by_status(await self.client(), self.table, "ready")
        return [i.id for i in sorted(ready, key=lambda i: (i.created_at, i.id))]

    def _earlier_incarnation(self, owner: str | None) -> bool:
        """``owner`` is this store's identity in another incarnation: a process that is gone
        (the identity is held by one live process at a time)."""
        return (
            self.identity is not None
            and owner is not None
            and owner != self.instance
            and owner.startswith(f"{self.identity}#")
        )

    async def _take_over(
        self, invocation_id: str, now: int, lost: Callable[[str | None], bool] | None = None
    ) -> bool:
        """Make a running invocation whose attempt is lost ready again: its lease lapsed, or
        ``lost`` says so of its owner. A versioned write: of several processes that try, one
        does it. True if this call did."""

        async def op(u: Unit) -> bool:
            row = await ops.load(u, invocation_id)
            if row is None or row.record.status != "running":
                return False
            lapsed = row.lease_until is None or row.lease_until <= now
            if not (lapsed or (lost is not None and lost(row.owner))):
                return False
            ready = row.with_(status="ready", modified_at=now)
            ops.save(u, replace(ready, owner=None, lease_until=None))
            return True

        taken = await self._do(op)
        if taken:
            self._running.pop(invocation_id, None)
            self._keys.pop(invocation_id, None)
        return taken

    async def renew_leases(self, now: int) -> None:
        """Extend the lease of every attempt this store runs whose lease is past a third of its
        time (a short attempt never costs a renewal). An attempt that was taken over is
        dropped: its next write will be fenced off anyway."""
        for invocation_id, epoch in list(self._running.items()):
            guess = self._guesses.get(layout.invocation_key(invocation_id))
            lease = guess.get(layout.LEASE_UNTIL) if guess else None
            if lease is not None and lease - now > self.lease_ms * 2 // 3:
                continue

            async def op(u: Unit, invocation_id: str = invocation_id, epoch: int = epoch) -> None:
                row = await ops.fenced(u, invocation_id, epoch)
                if row.owner != self.instance:
                    raise StaleEpoch(invocation_id, epoch, row.record)
                ops.save(u, replace(row, lease_until=now + self.lease_ms))

            try:
                await self._do(op)
            except StaleEpoch:
                self._ended(invocation_id, epoch)

    async def sweep(
        self, now: int, horizon_ms: int = 0
    ) -> tuple[list[str], list[Timer]]:
        """Work that no process is doing, for this one to do: invocations whose attempt's lease
        lapsed (made ready here; for a lease after recovery, also those an earlier incarnation
        of this store's identity left running), invocations that have sat ready for two sweep
        intervals (whoever made them ready did not start them), and timers not fired that are
        due by ``now + horizon_ms``. Starting or firing any of them is a conditional write, so
        several processes sweeping at once do each thing once. Nothing is kept between sweeps:
        each may run in another process."""
        client = await self.client()
        running, ready, due = await asyncio.gather(
            index.status_entries(client, self.table, "running"),
            index.status_entries(client, self.table, "ready"),
            index.timers(client, self.table, due=now + horizon_ms),
        )
        lapsed = [index.invocation_id_of(a) for a in running if layout.lease_expired(a, now)]
        revived = [i for i in lapsed if await self._take_over(i, now)]
        if self._adopt_until is not None and now <= self._adopt_until:
            # For a lease after recovery, an earlier incarnation's attempt it did not see (the
            # index lagging, or a write of the killed process landing late) is taken too.
            live = {*lapsed, *self._running}
            others = [i for a in running if (i := index.invocation_id_of(a)) not in live]
            earlier = self._earlier_incarnation
            revived += [i for i in others if await self._take_over(i, now, earlier)]
        stale = now - 2 * self.sweep_interval_ms
        # made before the cut-off (the index says), and unchanged since (the item says)
        old = [a[layout.PK] for a in ready if layout.created_at(a) <= stale]
        stuck = [
            inv.id
            for inv in await index.get_invocations(client, self.table, old)
            if inv.status == "ready" and inv.modified_at <= stale
        ]
        return revived + sorted(stuck), due

    # -- reads -------------------------------------------------------------------------------

    async def get(self, invocation_id: str) -> Invocation | None:
        client = await self.client()
        pk, sk = layout.invocation_key(invocation_id)
        reply = await client.get_item(
            TableName=self.table,
            Key=layout.to_wire({layout.PK: pk, layout.SK: sk}),
            ConsistentRead=True,
        )
        item = reply.get("Item")
        return layout.invocation_row(layout.from_wire(item)).record if item else None

    async def list_invocations(
        self, service: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Invocation]:
        return await index.list_invocations(await self.client(), self.table, service, status, limit)

    async def journal(self, invocation_id: str) -> tuple[list[Command], dict[str, Completion]]:
        client = await self.client()
        items = await query_all(client, self.table, layout.invocation_pk(invocation_id))
        rows = [a for a in items if a[layout.SK] == "inv"]
        if not rows:  # no such invocation (or it was purged)
            return [], {}
        return layout.journal_of(items, rows[0]["journal_length"])

    async def state(self, service: str, key: str) -> dict[str, Any]:
        client = await self.client()
        pk = layout.object_pk(service, key)
        items = await query_all(client, self.table, pk, layout.STATE_PREFIX, layout.STATE_END)
        return layout.state_of(items)

    async def put_deployment(self, deployment: Deployment) -> None:
        client = await self.client()
        services = layout.dumps(deployment.services)
        if len(services.encode()) + len(deployment.uri.encode()) + 200 > layout.MAX_ITEM_BYTES:
            raise ValueTooLarge(
                f"the deployment's discovery document ({len(services)} bytes) exceeds "
                f"DynamoDB's item limit of {layout.MAX_ITEM_BYTES} bytes (400 KB)"
            )
        await client.update_item(
            TableName=self.table,
            **layout.deployment_upsert(
                deployment.id,
                deployment.uri,
                services,
                deployment.created_at,
                deployment.registered_at,
                deployment.assume_role_arn,
            ),
        )

    async def deployments(self) -> list[Deployment]:
        client = await self.client()
        items = await query_all(client, self.table, layout.DEPLOYMENTS_PK)
        found = [
            Deployment(
                a["id"],
                a[layout.SK],
                json.loads(a["services"]),
                a["created_at"],
                a.get("registered_at", 0),
                a.get("assume_role_arn"),
            )
            for a in items
        ]
        return sorted(found, key=lambda d: (d.registered_at, d.created_at))

    async def delete_deployment(self, deployment_id: str) -> bool:
        client = await self.client()
        for deployment in await self.deployments():
            if deployment.id == deployment_id:
                pk, sk = layout.deployment_key(deployment.uri)
                key = layout.to_wire({layout.PK: pk, layout.SK: sk})
                await client.delete_item(TableName=self.table, Key=key)
                return True
        return False

    async def deployment_usage(self) -> dict[str, int]:
        client = await self.client()
        pages = await asyncio.gather(
            *(index.status_entries(client, self.table, status) for status in UNFINISHED)
        )
        usage: dict[str, int] = {}
        for entry in (e for page in pages for e in page):
            deployment = entry.get(layout.DEPLOYMENT)
            if deployment is not None:
                usage[deployment] = usage.get(deployment, 0) + 1
        return usage


def _check_sizes(
    commands: list[Command],
    completions: dict[str, Completion],
    children: list[NewInvocation],
    completion: Completion | None,
) -> None:
    """Refuse a value that cannot fit in an item before any part of the write is sent (a write
    split in two must not store its first half and then fail)."""
    values: list[tuple[str, Any]] = [(f"journal entry ({c['kind']})", c) for c in commands]
    values += [("step result", c) for c in completions.values()]
    values += [(f"input of {c.service}/{c.handler}", c.input) for c in children]
    if completion is not None:
        values.append(("result", completion))
    for what, value in values:
        problem = layout.too_large(what, value)
        if problem is not None:
            raise ValueTooLarge(problem)


__all__ = ["DynamoDBStore", "StoreError"]


class _TurnTaking:
    """One asyncio lock per object key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def take(self, scope: tuple[str, str] | None) -> AsyncIterator[None]:
        if scope is None:
            yield
            return
        lock, users = self._locks.get(scope, (asyncio.Lock(), 0))
        self._locks[scope] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[scope]
            if users == 1:
                del self._locks[scope]
            else:
                self._locks[scope] = (lock, users - 1)
