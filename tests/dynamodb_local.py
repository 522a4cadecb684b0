"""DynamoDB Local for the tests: a fresh table per test, or a loud failure under CI.

``scripts/test.sh`` starts DynamoDB Local and exports ``AWS_ENDPOINT_URL_DYNAMODB`` with dummy
credentials. Without it the DynamoDB tests skip on a developer's machine and fail under
``CI=true``. They only ever talk to a loopback endpoint, never to an AWS account.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.dynamodb_table import create_table, delete_table


def dynamodb_local() -> str:
    """The DynamoDB Local endpoint; skips the test (fails it under CI=true) without one."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    problem = None
    if not endpoint:
        problem = "AWS_ENDPOINT_URL_DYNAMODB is not set"
    else:
        url = urlsplit(endpoint)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            problem = f"{endpoint} is not a loopback DynamoDB Local"
        else:
            try:
                socket.create_connection((url.hostname, url.port or 80), timeout=2).close()
            except OSError as exc:
                problem = f"nothing answers at {endpoint}: {exc}"
    if problem is not None:
        unavailable("DynamoDB Local", problem)
    assert endpoint is not None
    return endpoint


def unavailable(server: str, problem: str) -> NoReturn:
    """A test server scripts/test.sh starts is not there: skip the test when run by hand,
    fail it under CI=true (where a skip would hide a broken setup)."""
    message = f"{server} is not available ({problem}); run ./scripts/test.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def dynamodb_table() -> AsyncIterator[DynamoDBStore]:
    """A DynamoDB store on a table of its own, created from infra/table.yaml, deleted after
    (with a client of its own: a runtime the test made may have closed the store's)."""
    import aioboto3

    dynamodb_local()
    name = f"tarry-test-{uuid.uuid4().hex[:12]}"
    store = DynamoDBStore(name)
    async with aioboto3.Session().client("dynamodb") as client:
        await create_table(client, name, poll_seconds=0.01)
        try:
            yield store
        finally:
            await store.close()
            await delete_table(client, name)


class Requests:
    """Counts the API calls a botocore client makes, by operation (one per call, not per HTTP
    retry): what a DynamoDB bill and its latency are made of."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, Counter()
        return dict(counts)
