"""Store faults injected, seeded and at a configured rate, for the chaos tests.

One :class:`Faults` plan drives every injector, so a test can turn all of them off at once
("the faults stop") and see what each injected:

- :class:`FaultyStore` wraps any :class:`~tarry.runtime.store.Store` at its protocol: a
  **throttled** call raises :class:`StoreUnavailable` with a ``retry_after_s`` before the inner
  store sees it, and during an **outage** (:meth:`Faults.outage`) every call does.
- What the protocol cannot model is injected one level lower, where the store itself meets it:
  a write that **committed but whose answer was lost**, and a **transaction conflict**.

  - DynamoDB (:class:`FaultySession`, given to ``DynamoDBStore(table, session=...)``): under the
    store's guarded client, as botocore raises them once its own retries are spent.
    ``TransactWriteItems`` is carried out and then answered with a cut connection; or it is
    cancelled, before it is carried out, with a ``TransactionConflict`` on one of its items, as
    DynamoDB answers a transaction that met another one on the same item.
  - SQLite (:func:`connection_factory`, given to ``SQLiteStore(path, factory=...)``): on the
    store's own connection. ``COMMIT`` is carried out and then fails with a disk I/O error (an
    fsync that failed after the write reached the file); or ``BEGIN IMMEDIATE`` finds the
    database locked, as it does while a program outside tarry holds its write lock.

A protocol-level "lost answer" would not be one: the inner store has already acted on its own
answer (a DynamoDB store that started an attempt renews its lease), so the fault is put where
the answer really is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tarry.runtime.store import StoreUnavailable


class Faults:
    """What to inject and how often: each rate is the chance that one call (of the kind that
    can meet that fault) meets it. Seeded: the same seed draws the same sequence of faults for
    the same sequence of calls."""

    def __init__(
        self,
        seed: int,
        lost: float = 0.0,
        throttle: float = 0.0,
        conflict: float = 0.0,
    ) -> None:
        self.seed = seed
        self.rates = {"lost": lost, "throttle": throttle, "conflict": conflict}
        self.active = True  # False: the faults have stopped, every call goes through
        self.down = False  # an outage: every call to the store fails
        self.injected: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._forced: Counter[str] = Counter()

    def force(self, kind: str, times: int = 1) -> None:
        """The next ``times`` calls that can meet ``kind`` meet it, whatever the rate."""
        self._forced[kind] += times

    def roll(self, kind: str) -> bool:
        """Whether this call meets the fault ``kind`` (counted if it does)."""
        if self._forced[kind] > 0:
            self._forced[kind] -= 1
        elif not self.active or self._random.random() >= self.rates[kind]:
            return False
        self.injected[kind] += 1
        return True

    def failing(self) -> bool:
        """Whether the store is out (counted per call refused)."""
        if self.active and self.down:
            self.injected["outage"] += 1
            return True
        return False

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Every call fails while this lasts."""
        self.down = True
        try:
            yield
        finally:
            self.down = False

    def stop(self) -> None:
        """No more faults from now on."""
        self.active = False

    def __str__(self) -> str:
        return f"seed {self.seed}, rates {self.rates}, injected {dict(self.injected)}"


# -- the store protocol ----------------------------------------------------------------------


class FaultyStore:
    """A store whose calls are the inner store's, except those the plan throttles and those
    made during an outage: each raises :class:`StoreUnavailable` before the inner store sees
    it (nothing of it is stored). Everything else — attributes, whether it is a
    :class:`~tarry.runtime.store.SharedStore` — is the inner store's."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name == "close" or not asyncio.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.faults.failing():
                raise StoreUnavailable("the store does not answer (injected outage)")
            if self.faults.roll("throttle"):
                error = StoreUnavailable("the store is throttling requests (injected)")
                error.retry_after_s = 2
                raise error
            return await value(*args, **kwargs)

        return call


# -- DynamoDB, under the store's guarded client ------------------------------------------------


class FaultyClient:
    """An aioboto3 DynamoDB client whose ``transact_write_items`` meets the plan's lost answers
    and conflicts; every other call, and everything else, is the client's own."""

    def __init__(self, client: Any, faults: Faults) -> None:
        self._client = client
        self._faults = faults
        self._carried_out: set[str] = set()  # tokens of transactions DynamoDB carried out

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if name != "transact_write_items":
            return value

        async def transact_write_items(**request: Any) -> Any:
            import botocore.exceptions

            token = request.get("ClientRequestToken")
            # A transaction sent again with the token of one carried out is answered from the
            # token (success), not evaluated again: it cannot meet a conflict.
            if token not in self._carried_out and self._faults.roll("conflict"):
                items = request["TransactItems"]
                reasons = [{"Code": "None"} for _ in items]
                reasons[random.Random(len(items)).randrange(len(items))] = {
                    "Code": "TransactionConflict",
                    "Message": "Transaction is ongoing for the item (injected)",
                }
                raise self._client.exceptions.TransactionCanceledException(
                    {
                        "Error": {
                            "Code": "TransactionCanceledException",
                            "Message": "Transaction cancelled (injected conflict)",
                        },
                        "CancellationReasons": reasons,
                        "ResponseMetadata": {"HTTPStatusCode": 400},
                    },
                    "TransactWriteItems",
                )
            reply = await value(**request)
            if token is not None:
                self._carried_out.add(token)
            if self._faults.roll("lost"):
                # carried out; the connection was cut before the answer arrived
                raise botocore.exceptions.ReadTimeoutError(
                    endpoint_url=self._client.meta.endpoint_url
                )
            return reply

        return transact_write_items


class FaultySession:
    """An aioboto3 session whose clients are :class:`FaultyClient`s."""

    def __init__(self, faults: Faults, session: Any = None) -> None:
        import aioboto3

        self._faults = faults
        self._session = session or aioboto3.Session()

    @contextlib.asynccontextmanager
    async def _client(self, *args: Any, **kwargs: Any) -> AsyncIterator[FaultyClient]:
        async with self._session.client(*args, **kwargs) as client:
            yield FaultyClient(client, self._faults)

    def client(self, *args: Any, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._client(*args, **kwargs)


# -- SQLite, on the store's connection ---------------------------------------------------------


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    """An error as SQLite raises it, with its extended result code."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    error.sqlite_errorname = {sqlite3.SQLITE_BUSY: "SQLITE_BUSY"}.get(code, "SQLITE_IOERR")
    return error


def connection_factory(faults: Faults) -> type[sqlite3.Connection]:
    """A connection class (``sqlite3.connect(factory=...)``) whose ``BEGIN IMMEDIATE`` may find
    the database locked, and whose ``COMMIT`` may be carried out and then fail."""

    class FaultyConnection(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            if sql == "BEGIN IMMEDIATE" and faults.roll("conflict"):
                raise sqlite_error("database is locked", sqlite3.SQLITE_BUSY)
            cursor = super().execute(sql, parameters)
            if sql == "COMMIT" and faults.roll("lost"):
                raise sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR_FSYNC)
            return cursor

    return FaultyConnection


@contextlib.contextmanager
def stopped(faults: Faults) -> Iterator[None]:
    """Faults off for a block (the test reads what the store holds), back on after."""
    was, faults.active = faults.active, False
    try:
        yield
    finally:
        faults.active = was


__all__ = [
    "Faults",
    "FaultyClient",
    "FaultySession",
    "FaultyStore",
    "connection_factory",
    "sqlite_error",
    "stopped",
]
