"""The stores the contract suite runs against: every test taking ``store`` runs once per entry
in ``STORES``. A new backend joins by adding a factory here."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tarry.runtime.store import Store
from tests.dynamodb_local import dynamodb_table


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    from tarry.runtime.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "t.db")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def dynamodb_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A DynamoDB store on a fresh table in DynamoDB Local (see tests/dynamodb_local.py)."""
    async with dynamodb_table() as store:
        yield store


STORES: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "sqlite": sqlite_store,
    "dynamodb": dynamodb_store,
}


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path) as s:
        yield s
