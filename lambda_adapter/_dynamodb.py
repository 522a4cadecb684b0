"""A function's own access to its journal in DynamoDB: reading it, and appending its steps.

One boto3 client per process, made on first use and kept while the function stays warm. Calls run
in a worker thread, so handlers' other work goes on meanwhile. The items, keys and the fenced
transaction are :mod:`tarry.journal_table`'s; this module only sends them.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from typing import Any

from tarry.clock import Clock
from tarry.endpoint import ProtocolError
from tarry.journal_table import (
    PROMISE_PREFIX,
    STATE_END,
    NotLocal,
    StateScope,
    append_transactions,
    from_wire,
    invocation_pk,
    journal_of,
    object_pk,
    partition_query,
    promises_of,
    state_of,
)
from tarry.protocol import (
    CheckpointDeferred,
    CheckpointRejected,
    Command,
    Completion,
    InvokeRequest,
)

# Cancellation reasons that mean "another writer was in the way, or DynamoDB asked to slow
# down": the same transaction may be sent again.
_TRANSIENT = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
     "RequestLimitExceeded"}
)  # fmt: skip
_TRANSIENT_FOR_S = 10.0  # how long an append keeps trying past them


class JournalUnavailable(Exception):
    """The journal could not be read from the table (nothing was run)."""


class JournalTable:
    """DynamoDB, as a function reaches it: the standard AWS settings of its environment
    (``AWS_REGION``, ``AWS_ENDPOINT_URL_DYNAMODB``, the execution role's credentials)."""

    def __init__(self, clock: Clock, client: Any = None) -> None:
        self.clock = clock
        self._client = client
        self.writes = 0  # transactions committed by this process (for cost measurements)
        self.items = 0  # ... and the items they wrote (DynamoDB bills transactions by item)

    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise ProtocolError(
                    f"the dynamodb checkpoint needs boto3 in the function ({exc}); it is in the "
                    "Lambda Python runtime, or: pip install 'tarry[aws]'",
                    status_code=500,
                ) from None
            config = Config(retries={"mode": "standard", "max_attempts": 5}, tcp_keepalive=True)
            self._client = boto3.client("dynamodb", config=config)
        return self._client

    async def load(self, request: InvokeRequest) -> InvokeRequest:
        """``request`` with its journal, completions, state and promises read from the table."""
        table, length = request.get("table"), request.get("journal_length")
        if not isinstance(table, str) or not isinstance(length, int):
            raise ProtocolError("a request without its journal names the table and its length")
        client = self.client()
        pk = invocation_pk(request["invocation_id"])
        invocation = asyncio.to_thread(_query, client, table, pk)
        key = request.get("key")
        objects: list[dict[str, Any]] = []
        try:
            if key is None:
                items = await invocation
            else:
                obj = object_pk(request["service"], key)
                scope = asyncio.to_thread(_query, client, table, obj, PROMISE_PREFIX, STATE_END)
                items, objects = await asyncio.gather(invocation, scope)
        except Exception as exc:  # botocore's: refused, unreachable, throttled past retries
            raise JournalUnavailable(f"reading the journal from {table} failed: {exc}") from exc
        journal, completions = journal_of(items, length)
        if len(journal) != length or not journal or journal[0].get("kind") != "input":
            raise JournalUnavailable(
                f"{table} holds {len(journal)} of the {length} journal entries of "
                f"{request['invocation_id']}"
            )
        loaded: InvokeRequest = {**request, "journal": journal, "completions": completions}
        if key is not None:
            loaded["state"] = state_of(objects)
            loaded["promises"] = promises_of(objects)
        else:
            loaded["state"] = None
        return loaded

    def channel(self, request: InvokeRequest) -> DirectChannel:
        """The channel of the attempt ``request`` (with its journal and state) begins."""
        table = request.get("table")
        if not isinstance(table, str) or not table:
            raise ProtocolError("checkpoint dynamodb needs the table that holds the journal")
        return DirectChannel(self, table, request)


class DirectChannel:
    """Appends an attempt's local commands and run results straight to the table: one
    transaction, fenced by the attempt's epoch and the journal's length, per append."""

    def __init__(self, tables: JournalTable, table: str, request: InvokeRequest) -> None:
        self._tables = tables
        self._table = table
        self._invocation_id = request["invocation_id"]
        self._epoch = request["epoch"]
        self.length = len(request["journal"])
        key, state = request.get("key"), request.get("state")
        self._scope: StateScope | None = None
        if key is not None and state is not None:
            self._scope = StateScope(request["service"], key, set(state))

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        scope = self._scope
        trial = StateScope(scope.service, scope.key, scope.names) if scope else None
        try:
            transactions = append_transactions(
                self._table,
                self._invocation_id,
                self._epoch,
                self.length,
                commands,
                completions,
                trial,
                self._tables.clock.now_ms(),
            )
        except NotLocal:
            raise CheckpointDeferred from None  # the runtime stores them
        for actions in transactions:
            await self._commit(actions)
            update = actions[0]["Update"]["ExpressionAttributeValues"]
            self.length = int(update[":length"]["N"])
        if scope is not None and trial is not None:
            scope.names = trial.names

    async def _commit(self, actions: list[dict[str, Any]]) -> None:
        client = self._tables.client()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _TRANSIENT_FOR_S
        token = str(uuid.uuid4())  # botocore's own retries of this send are applied once
        for tries in itertools.count():
            try:
                await asyncio.to_thread(
                    client.transact_write_items, TransactItems=actions, ClientRequestToken=token
                )
            except client.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                fence = reasons[0] if reasons else {}
                if fence.get("Code") == "ConditionalCheckFailed":
                    raise CheckpointRejected(self._why(fence.get("Item"))) from None
                codes = {r.get("Code") for r in reasons} - {None, "None"}
                if not codes <= _TRANSIENT or loop.time() > give_up:
                    raise CheckpointRejected(f"DynamoDB cancelled the append: {reasons}") from None
                await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** min(tries, 6))))
                token = str(uuid.uuid4())
                continue
            self._tables.writes += 1
            self._tables.items += len(actions)
            return
        raise AssertionError("unreachable")

    def _why(self, item: dict[str, Any] | None) -> str:
        who = f"{self._invocation_id} attempt {self._epoch}"
        if not item:
            return f"{who}: the invocation is gone"
        now = from_wire(item)
        if now.get("epoch") != self._epoch or now.get("status") != "running":
            return f"{who} was superseded (now attempt {now.get('epoch')}, {now.get('status')})"
        return (
            f"{who}: the journal has {now.get('journal_length')} entries, this attempt expected "
            f"{self.length} (another writer of the same attempt)"
        )


def _query(
    client: Any, table: str, pk: str, low: str | None = None, high: str | None = None
) -> list[dict[str, Any]]:
    """Every item of partition ``pk`` (with a sort key in ``[low, high]``): consistent, all
    pages."""
    params = partition_query(table, pk, low, high)
    items: list[dict[str, Any]] = []
    while True:
        reply = client.query(**params)
        items += [from_wire(i) for i in reply.get("Items", [])]
        if not reply.get("LastEvaluatedKey"):
            return items
        params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


__all__ = ["DirectChannel", "JournalTable", "JournalUnavailable"]
