"""The Store contract, continued: an awakeable's id is a capability. Only the exact id its
invocation's secret makes completes the awakeable; anything else (derived from the invocation
id alone, made with another secret, truncated, altered in any character) is not found and
changes nothing, and the real id still works afterwards."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import replace
from pathlib import Path

from tarry.protocol import Command, Completion, awakeable_id
from tarry.runtime.store import AttemptEnd, Store
from tarry.runtime.store import dynamodb_layout as layout
from tarry.runtime.store.base import new_secret
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.sqlite import SQLiteStore
from tests.contract.helpers import (
    T0,
    awakeable_command,
    awk,
    completions,
    get,
    new,
    resolve_command,
    started,
    status,
    suspended,
    suspended_on_awakeable,
)


def derived(invocation_id: str, index: int) -> str:
    """What anyone who holds an invocation id could make before ids carried a MAC: the
    ``awk_1`` format, the invocation id and index alone."""
    raw = f"{invocation_id}:{index}".encode()
    return "awk_1" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forgeries(real: str, invocation_id: str, index: int) -> list[str]:
    """Ids that are not ``real`` but name (or nearly name) the same awakeable."""
    made = [
        derived(invocation_id, index),
        awakeable_id(invocation_id, index, new_secret()),  # right entry, another secret
        real[:-1],
        real[:-4],
        real[: len(real) // 2],
        real + "A",
        "awk_2",
        "",
    ]
    for position in range(len(real)):  # every character altered: prefix, MAC, entry
        flipped = "B" if real[position] == "A" else "A"
        made.append(real[:position] + flipped + real[position + 1 :])
    assert real not in made
    return made


async def test_a_forged_awakeable_id_is_not_found_and_changes_nothing(store: Store) -> None:
    inv = new()
    inv_id = await suspended_on_awakeable(store, inv)
    real = awk(inv, 1)

    for forged in forgeries(real, inv_id, 1):
        outcome, effects = await store.complete_awakeable(forged, {"value": "forged"}, T0 + 1)
        assert (outcome, effects.ready, effects.finished) == ("not-found", [], []), forged
    assert await completions(store, inv_id) == {}
    assert await status(store, inv_id) == "suspended"

    outcome, effects = await store.complete_awakeable(real, {"value": "real"}, T0 + 2)
    assert (outcome, effects.ready) == ("completed", [inv_id])
    assert await completions(store, inv_id) == {"1": {"value": "real"}}
    outcome, _ = await store.complete_awakeable(real, {"value": "again"}, T0 + 3)
    assert outcome == "already-completed"  # the first one stands
    outcome, _ = await store.complete_awakeable(derived(inv_id, 1), {"value": "x"}, T0 + 3)
    assert outcome == "not-found"  # a forgery is not told the awakeable was completed
    assert await completions(store, inv_id) == {"1": {"value": "real"}}


async def test_a_forged_id_is_refused_before_its_awakeable_is_stored(store: Store) -> None:
    a = await started(store, new())
    inv_id = a.invocation.id
    real = awk(a.invocation, 1)
    # The attempt is in flight and could still store entry 1: only the real id is kept early.
    for forged in forgeries(real, inv_id, 1):
        outcome, effects = await store.complete_awakeable(forged, {"value": "forged"}, T0 + 1)
        assert (outcome, effects.ready) == ("not-found", []), forged
    assert await completions(store, inv_id) == {}

    outcome, _ = await store.complete_awakeable(real, {"value": "early"}, T0 + 2)
    assert outcome == "completed"
    awaiting = [awakeable_command(a.invocation, 1)]
    ended = await store.end_attempt(inv_id, 1, awaiting, {}, [], suspended(1), T0 + 3)
    assert ended.ready == [inv_id]
    assert await completions(store, inv_id) == {"1": {"value": "early"}}


async def test_a_handler_cannot_complete_an_awakeable_with_a_forged_id(store: Store) -> None:
    waiting = new(service="Waiter")
    waiter = await suspended_on_awakeable(store, waiting)
    resolver = await started(store, new(service="Resolver"))
    rid = resolver.invocation.id
    forged = [
        resolve_command(derived(waiter, 1), {"value": "forged"}),
        resolve_command(awakeable_id(waiter, 1, new_secret()), {"value": "forged"}),
        resolve_command(awk(waiting, 1)[:-1], {"value": "forged"}),
    ]
    effects = await store.append(rid, 1, forged, {}, [], T0 + 1)
    assert effects.ready == []
    results = await completions(store, rid)
    assert [results[str(i)]["failure"]["code"] for i in (1, 2, 3)] == [404, 404, 404]
    for i, command in enumerate(forged, start=1):  # the message names only the id it was given
        assert results[str(i)]["failure"]["message"] == f"no awakeable {command['awakeable_id']}"
    assert await completions(store, waiter) == {}
    assert await status(store, waiter) == "suspended"

    real = resolve_command(awk(waiting, 1), {"value": "real"})
    effects = await store.append(rid, 1, [real], {}, [], T0 + 2)
    assert effects.ready == [waiter]
    assert (await completions(store, rid))["4"] == {"value": None}
    assert await completions(store, waiter) == {"1": {"value": "real"}}


async def test_an_invocations_secret_is_kept_and_the_same_on_every_attempt(store: Store) -> None:
    first = new()
    a = await started(store, first)
    assert a.invocation.secret == first.secret
    # The same invocation created again (a call retried from the same journal entry) keeps the
    # first one's secret, so the ids its first attempt handed out stay valid.
    again = await store.create(replace(first, secret=new_secret()), T0 + 1)
    assert again.invocation.secret == first.secret
    retry = AttemptEnd("backing-off", retry_at=T0 + 10, failure="boom")
    (timer,) = (await store.end_attempt(first.id, 1, [], {}, [], retry, T0 + 1)).timers
    await store.fire_timer(timer, T0 + 10)
    b = await store.start_attempt(first.id, T0 + 10)
    assert b is not None
    assert b.invocation.secret == first.secret
    assert (await get(store, first.id)).secret == first.secret
    # ... and it is not in what the admin API shows of the invocation.
    shown = (await get(store, first.id)).to_json()
    assert "secret" not in shown
    assert first.secret not in repr(shown) + repr(await get(store, first.id))


async def forget_secret(store: Store, invocation_id: str) -> None:
    """Make an invocation look stored by a version that had no secrets."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE invocations SET secret=NULL WHERE id=?", (invocation_id,))
        conn.close()
    else:
        assert isinstance(store, DynamoDBStore)
        pk, sk = layout.invocation_key(invocation_id)
        client = await store.client()
        await client.update_item(
            TableName=store.table,
            Key=layout.to_wire({layout.PK: pk, layout.SK: sk}),
            UpdateExpression="REMOVE #secret SET #ver = #ver + :one",
            ExpressionAttributeNames={"#secret": layout.SECRET, "#ver": layout.VERSION},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )


async def test_an_invocation_stored_before_secrets_refuses_old_ids_and_gets_a_secret(
    store: Store,
) -> None:
    inv = new()
    await started(store, inv)
    # Suspended on an awakeable whose id (recorded by an older version) is derivable.
    old: Completion = {"value": "old"}
    command: Command = {"kind": "awakeable", "name": "", "awakeable_id": derived(inv.id, 1)}
    await store.end_attempt(inv.id, 1, [command], {}, [], suspended(1), T0)
    await forget_secret(store, inv.id)
    assert (await get(store, inv.id)).secret is None

    for refused in (derived(inv.id, 1), awk(inv, 1)):
        outcome, effects = await store.complete_awakeable(refused, old, T0 + 1)
        assert (outcome, effects.ready) == ("not-found", []), refused
    assert await completions(store, inv.id) == {}

    # Its next attempt (here: to see a cancellation) is given a secret, kept from then on.
    await store.cancel(inv.id, T0 + 2)
    b = await store.start_attempt(inv.id, T0 + 3)
    assert b is not None
    assert b.invocation.secret is not None and b.invocation.secret != inv.secret
    assert (await get(store, inv.id)).secret == b.invocation.secret
    assert b.journal[1]["awakeable_id"] == derived(inv.id, 1)  # replayed as recorded
    outcome, _ = await store.complete_awakeable(awk(b.invocation, 2), {"value": 2}, T0 + 4)
    assert outcome == "completed"  # a new awakeable of its, made with the new secret


async def test_a_database_from_before_secrets_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    inv = new()
    await suspended_on_awakeable(store, inv)
    await store.close()
    with sqlite3.connect(path) as conn:  # the schema as it was: no secret column
        conn.execute("ALTER TABLE invocations DROP COLUMN secret")
    conn.close()

    store = SQLiteStore(path)
    try:
        assert (await get(store, inv.id)).secret is None
        outcome, _ = await store.complete_awakeable(derived(inv.id, 1), {"value": 1}, T0 + 1)
        assert outcome == "not-found"
        await store.cancel(inv.id, T0 + 2)
        b = await store.start_attempt(inv.id, T0 + 3)
        assert b is not None and b.invocation.secret is not None
    finally:
        await store.close()
