"""Count the DynamoDB requests of a few invocations through the whole runtime.

Needs DynamoDB Local (or any endpoint) in the standard AWS settings, as ``scripts/test.sh``
sets them up::

    . scripts/dynamodb-local.sh && _tarry_ddb_start && .venv/bin/python -m bench.dynamodb_requests

Runs each invocation through the ingress (in-process handlers, as ``tarry dev``), counts the
requests the store's client sends (botocore's ``before-call`` event: one per API call, not per
HTTP retry) and prints them by operation. Creates a table of its own and deletes it after.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

from bench.services import bench
from examples.counter import counter
from tarry.runtime.server import Runtime
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.dynamodb_table import create_table, delete_table
from tests.dynamodb_local import Requests


async def main() -> None:
    table = f"tarry-bench-{uuid.uuid4().hex[:8]}"
    admin = DynamoDBStore(table)  # creates and deletes the table; the runtime closes its own
    await create_table(await admin.client(), table)
    try:
        store = DynamoDBStore(table)
        async with Runtime(store) as rt:
            await rt.start([bench, counter])
            requests = Requests(await store.client())
            transport = httpx.ASGITransport(app=rt.ingress_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as http:
                cases = [
                    ("noop invocation", "/Bench/noop", None),
                    ("10 ctx.run steps", "/Bench/steps", 10),
                    ("keyed add (first on its key)", "/Counter/k/add", 1),
                    ("keyed add (again)", "/Counter/k/add", 1),
                ]
                print(f"{'invocation':30} {'total':>5}  by operation")
                for label, path, body in cases:
                    await asyncio.sleep(0.05)  # let the previous invocation's tasks settle
                    requests.take()
                    reply = await http.post(path, json=body, timeout=30)
                    reply.raise_for_status()
                    await asyncio.sleep(0.05)
                    counts = requests.take()
                    detail = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
                    print(f"{label:30} {sum(counts.values()):>5}  {detail}")
    finally:
        await delete_table(await admin.client(), table)
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
