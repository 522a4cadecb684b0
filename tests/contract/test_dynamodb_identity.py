"""The DynamoDB store with an identity (runtime/store/identity.py): a later incarnation of the
identity takes over what an earlier one left running at once, long before its lease lapses;
another identity, or none, only when the lease lapses; an incarnation never takes its own
attempts; and the earlier incarnation's writes are fenced off by epoch all the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tarry.runtime.store import StaleEpoch
from tarry.runtime.store.dynamodb import DynamoDBStore
from tests.contract.helpers import COMPLETED, OUTPUT, T0, complete, new, started, status
from tests.dynamodb_local import dynamodb_table

IDENTITY = "host-1/0123456789abcdef"
Stores = Callable[[str | None], DynamoDBStore]


@pytest.fixture
async def incarnation() -> AsyncIterator[Stores]:
    """Makes store instances on one fresh table, as processes of the given identity would
    have (``None``: a process without one); each is closed after the test."""
    made: list[DynamoDBStore] = []
    async with dynamodb_table() as store:

        def make(identity: str | None) -> DynamoDBStore:
            s = DynamoDBStore(store.table, identity=identity)
            made.append(s)
            return s

        yield make
        for s in made:
            await s.close()


async def test_a_later_incarnation_takes_over_at_once_and_the_earlier_is_fenced_off(
    incarnation: Stores,
) -> None:
    earlier = incarnation(IDENTITY)
    a = await started(earlier, new(key="k"))
    inv_id = a.invocation.id
    later = incarnation(IDENTITY)  # the same data dir, after a SIGKILL
    assert later.instance != earlier.instance
    assert await later.recover(T0 + 1) == [inv_id]  # the lease has most of its time left
    assert await status(later, inv_id) == "ready"
    b = await later.start_attempt(inv_id, T0 + 2)
    assert b is not None and b.invocation.epoch == 2
    # a write the earlier incarnation had in flight lands late: rejected
    with pytest.raises(StaleEpoch):
        await earlier.end_attempt(inv_id, 1, OUTPUT, {}, [], COMPLETED, T0 + 3)
    await earlier.renew_leases(T0 + earlier.lease_ms)  # its renewal is refused: it stops
    await complete(later, b, T0 + 4)
    assert await status(later, inv_id) == "completed"


@pytest.mark.parametrize(
    "other",
    [
        "host-1/fedcba9876543210",  # another data dir on the same machine
        "host-2/0123456789abcdef",  # the data dir copied to another machine
        "host-1/0123456789abcde",  # a name that is a prefix of the identity
        None,  # tarry serve, a Lambda worker
    ],
)
async def test_another_identity_or_none_waits_for_the_lease(
    incarnation: Stores, other: str | None
) -> None:
    first = incarnation(IDENTITY)
    a = await started(first, new(key="k"))
    inv_id = a.invocation.id
    lease = first.lease_ms
    second = incarnation(other)
    assert await second.recover(T0 + 1) == []
    assert await second.sweep(T0 + 2) == ([], [])  # in the sweeps just after recovery too
    assert await second.sweep(T0 + lease - 1) == ([], [])
    assert await status(second, inv_id) == "running"
    assert await second.sweep(T0 + lease) == ([inv_id], [])  # lapsed: now it may


async def test_an_incarnation_never_takes_over_its_own_attempts(incarnation: Stores) -> None:
    store = incarnation(IDENTITY)
    assert await store.recover(T0) == []
    a = await started(store, new(key="k"), T0 + 1)
    assert await store.sweep(T0 + 2) == ([], [])  # in the sweeps just after recovery
    assert await status(store, a.invocation.id) == "running"
    await complete(store, a, T0 + 4)
    assert await status(store, a.invocation.id) == "completed"


async def test_for_a_lease_after_recovery_its_sweeps_take_what_recovery_missed(
    incarnation: Stores,
) -> None:
    later = incarnation(IDENTITY)
    assert await later.recover(T0) == []
    # the killed incarnation's start lands after the restarted one recovered (or the index
    # showed it late): the first sweep takes it
    earlier = incarnation(IDENTITY)
    a = await started(earlier, new(key="k"), T0 + 1)
    assert await later.sweep(T0 + 2) == ([a.invocation.id], [])
    assert await status(later, a.invocation.id) == "ready"
    with pytest.raises(StaleEpoch):
        await earlier.end_attempt(a.invocation.id, 1, OUTPUT, {}, [], COMPLETED, T0 + 3)
