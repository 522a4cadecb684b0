"""Should a Lambda function get its journal in the invoke request, or read it from the table?
Measured on MiniStack's Invoke API with the runtime in this process on DynamoDB Local.

    bash bench/lambda.sh inline

A handler journals ``n`` steps of ``size`` bytes, sleeps 1 ms and returns: its second invoke
replays the whole journal, carried in the request (``inline``) or read from the table by the
function (``table``). Each shape and size runs BENCH_ROUNDS (5) times, alternating; the table
shows the median of the whole call. The runtime sends journals up to INLINE_JOURNAL_BYTES
inline.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from tarry.runtime.lambda_deployment import INLINE_JOURNAL_BYTES, FunctionArn, LambdaDeployment
from tarry.runtime.lambda_package import package
from tarry.runtime.server import Runtime
from tarry.runtime.store.dynamodb import DynamoDBStore
from tarry.runtime.store.dynamodb_table import create_table

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SHAPES = [(10, 1_000), (20, 10_000), (20, 50_000), (40, 100_000)]  # steps, bytes a step


async def main() -> None:
    ministack = os.environ.get("TARRY_MINISTACK_URL")
    dynamodb = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if not ministack or not dynamodb:
        sys.exit("run it with bash bench/lambda.sh inline")
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = ministack
    work = Path(tempfile.mkdtemp(prefix="tarry-bench-inline-"))
    lam = boto3.client("lambda", endpoint_url=ministack, region_name="us-east-1",
                       config=Config(retries={"max_attempts": 1}))  # fmt: skip
    made = package(ROOT / "tests" / "apps" / "lambda_steps.py", work / "steps.zip",
                   python=str(ROOT / ".ci/.deps/ministack/venv/bin/python"))  # fmt: skip
    name = f"tarry-inline-{uuid.uuid4().hex[:8]}"
    env = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb, "STEPS_FILE": str(work / "steps.txt"),
           "INVOKES_FILE": str(work / "invokes.jsonl")}  # fmt: skip
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler=made.handler,
                        Role="arn:aws:iam::000000000000:role/bench", Timeout=60,
                        Code={"ZipFile": made.path.read_bytes()},
                        Environment={"Variables": env})  # fmt: skip
    arn = FunctionArn.parse(lam.publish_version(FunctionName=name)["FunctionArn"])
    table = f"bench-{uuid.uuid4().hex[:8]}"
    store = DynamoDBStore(table)
    await create_table(await store.client(), table)
    results: dict[tuple[str, int], list[float]] = {}
    async with Runtime(store) as rt:
        await rt.start()
        app = rt.ingress_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tarry") as client:
            for _ in range(ROUNDS):
                for steps, size in SHAPES:
                    for shape, inline in (("inline", 10 * 1024 * 1024), ("table", 0)):
                        await rt.catalog.add(LambdaDeployment(arn, inline_bytes=inline))
                        body = {"before": steps, "after": 0, "size": size, "sleep_ms": 1}
                        began = time.perf_counter()
                        reply = await client.post("/Steps/many", json=body, timeout=120)
                        took = (time.perf_counter() - began) * 1000
                        if reply.status_code != 200:
                            sys.exit(f"{shape} {steps}x{size}: {reply.status_code} {reply.text}")
                        results.setdefault((shape, steps * size), []).append(took)
    print(f"\nthe call's median over {ROUNDS} rounds (its second invoke replays the journal)")
    print(f"{'journal':>10} {'inline':>10} {'from table':>12}")
    for steps, size in SHAPES:
        total = steps * size
        inline = statistics.median(results[("inline", total)])
        ref = statistics.median(results[("table", total)])
        print(f"{total // 1000:>7} KB {inline:>8.0f} ms {ref:>10.0f} ms")
    print(f"(the runtime sends journals up to {INLINE_JOURNAL_BYTES // 1024} KB inline)")


if __name__ == "__main__":
    asyncio.run(main())
