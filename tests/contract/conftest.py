"""The stores the contract suite runs against: every test taking ``store`` runs once per entry
in ``STORES``. A new backend joins by adding a factory here."""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tarry.runtime.store import Store


async def sqlite_store(tmp_path: Path) -> Store:
    from tarry.runtime.store.sqlite import SQLiteStore

    return SQLiteStore(tmp_path / "t.db")


STORES: dict[str, Callable[[Path], Awaitable[Store]]] = {"sqlite": sqlite_store}


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = await STORES[request.param](tmp_path)
    try:
        yield s
    finally:
        await s.close()
