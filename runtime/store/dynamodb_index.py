"""The DynamoDB store's reads through its secondary indexes: listings, recovery, sweeps, timers.

GSI reads are eventually consistent: an entry may lag its item by a moment. So every listing
reads the invocations it found afresh (consistent BatchGetItem) and keeps only those that still
match, and every decision taken on an index entry (take over a lapsed attempt, start a ready
invocation, fire a timer) is a conditional write that re-checks the item.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import dynamodb_layout as layout
from .base import STATUSES, Invocation, Timer
from .dynamodb_layout import Attrs
from .dynamodb_unit import query_pages


async def query_index(
    client: Any,
    table: str,
    index: str,
    attribute: str,
    value: str,
    limit: int | None = None,
    due: int | None = None,
) -> list[Attrs]:
    """Entries of one partition of a GSI, newest first, at most ``limit``; with ``due``, only
    timers due by then."""
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#a = :v",
        "ExpressionAttributeNames": {"#a": attribute},
        "ExpressionAttributeValues": {":v": {"S": value}},
        "ScanIndexForward": False,
    }
    if due is not None:
        params["KeyConditionExpression"] += " AND #due <= :due"
        params["ExpressionAttributeNames"]["#due"] = layout.FIRE_AT
        params["ExpressionAttributeValues"][":due"] = {"N": str(due)}
    return await query_pages(client, params, limit)


def invocation_id_of(attrs: Attrs) -> str:
    """The invocation an index entry of an invocation or a timer belongs to."""
    return layout.unpart(attrs[layout.PK].removeprefix("inv#"))


async def timers(client: Any, table: str, due: int | None = None) -> list[Timer]:
    """Armed timers (only those due by ``due``, if given), soonest first."""
    pages = await asyncio.gather(
        *(
            query_index(client, table, layout.TIMERS, layout.TIMER_SHARD, shard, due=due)
            for shard in layout.timer_partitions()
        )
    )
    return sorted(
        (layout.timer_of(attrs) for page in pages for attrs in page),
        key=lambda t: (t.fire_at, t.invocation_id, t.kind, t.index),
    )


async def status_entries(
    client: Any, table: str, status: str, limit: int | None = None
) -> list[Attrs]:
    """The by_status entries of ``status`` (keys and lease), newest first, at most ``limit``."""
    pages = await asyncio.gather(
        *(
            query_index(client, table, layout.BY_STATUS, layout.STATUS_SHARD, shard, limit)
            for shard in layout.status_partitions(status)
        )
    )
    found = sorted(
        (a for page in pages for a in page), key=lambda a: a[layout.CREATED], reverse=True
    )
    return found[:limit] if limit is not None else found


async def by_status(
    client: Any, table: str, status: str, limit: int | None = None
) -> list[Invocation]:
    """Invocations in ``status``, newest first, as they are now."""
    found = await status_entries(client, table, status, limit)
    invocations = await get_invocations(client, table, [a[layout.PK] for a in found])
    return [i for i in invocations if i.status == status]


def matches(inv: Invocation, status: str | None) -> bool:
    """Whether ``inv`` passes a listing's status filter: a status, or ``succeeded`` /
    ``failed`` (completed with a value / with a failure)."""
    if status in ("succeeded", "failed"):
        failed = inv.completion is not None and "failure" in inv.completion
        return inv.status == "completed" and failed == (status == "failed")
    return status is None or inv.status == status


def _indexed_status(status: str) -> str:
    """The status an index holds for a filter (``succeeded`` and ``failed`` are completed)."""
    return "completed" if status in ("succeeded", "failed") else status


async def _filtered_shard(
    client: Any, table: str, shard: str, status: str, limit: int
) -> list[Invocation]:
    """The newest ``limit`` invocations of one by_status shard that pass ``status``, read a
    page at a time (the index does not say how a completed invocation ended)."""
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": layout.BY_STATUS,
        "KeyConditionExpression": "#a = :v",
        "ExpressionAttributeNames": {"#a": layout.STATUS_SHARD},
        "ExpressionAttributeValues": {":v": {"S": shard}},
        "ScanIndexForward": False,
    }
    return await _matching_pages(client, table, params, status, limit)


async def _matching_pages(
    client: Any, table: str, params: dict[str, Any], status: str | None, limit: int
) -> list[Invocation]:
    """The first ``limit`` invocations an index Query finds that pass ``status``, reading the
    index a page at a time and each page's invocations with one consistent batch read."""
    found: list[Invocation] = []
    while len(found) < limit:
        reply = await client.query(**params, Limit=limit)
        pks = [i[layout.PK]["S"] for i in reply.get("Items", [])]
        found += [i for i in await get_invocations(client, table, pks) if matches(i, status)]
        params["ExclusiveStartKey"] = reply.get("LastEvaluatedKey")
        if not params["ExclusiveStartKey"]:
            break
    return found[:limit]


async def get_invocations(client: Any, table: str, pks: list[str]) -> list[Invocation]:
    """The invocations of these partitions, in that order (consistent BatchGetItem)."""
    found: dict[str, Invocation] = {}
    for start in range(0, len(pks), 100):
        keys = [layout.to_wire({layout.PK: pk, layout.SK: "inv"}) for pk in pks[start:][:100]]
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            reply = await client.batch_get_item(RequestItems=request)
            for item in reply.get("Responses", {}).get(table, []):
                attrs = layout.from_wire(item)
                found[attrs[layout.PK]] = layout.invocation_row(attrs).record
            request = reply.get("UnprocessedKeys") or {}
    return [found[pk] for pk in pks if pk in found]


async def list_invocations(
    client: Any, table: str, service: str | None, status: str | None, limit: int
) -> list[Invocation]:
    """Newest first. By service: the by_service index, filtered by status; by status only:
    that status's shards; neither: every status's shards (an admin listing, not a hot path).
    ``status`` is a status, or ``succeeded`` / ``failed``."""
    if service is None:
        statuses = [status] if status is not None else list(STATUSES)
        lists = await asyncio.gather(
            *(
                _filtered_shard(client, table, shard, s, limit)
                for s in statuses
                for shard in layout.status_partitions(_indexed_status(s))
            )
        )
        merged = sorted(
            (i for found in lists for i in found),
            key=lambda i: (i.created_at, i.id),
            reverse=True,
        )
        return merged[:limit]
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": layout.BY_SERVICE,
        "KeyConditionExpression": "#svc = :svc",
        "ExpressionAttributeNames": {"#svc": layout.SERVICE},
        "ExpressionAttributeValues": {":svc": {"S": service}},
        "ScanIndexForward": False,
    }
    if status is not None:
        params["FilterExpression"] = "#status = :status"
        params["ExpressionAttributeNames"]["#status"] = "status"
        params["ExpressionAttributeValues"][":status"] = {"S": _indexed_status(status)}
    return await _matching_pages(client, table, params, status, limit)


__all__ = [
    "by_status",
    "get_invocations",
    "invocation_id_of",
    "list_invocations",
    "matches",
    "query_index",
    "status_entries",
    "timers",
]
