"""Lambda deployments on MiniStack beside the HTTP deployment: p50 of a noop and of steps(10),
and the function's cold start.

    bash bench/lambda.sh        # starts DynamoDB Local and MiniStack, runs this, stops them

Both shapes serve the Bench service (bench/services.py) behind one `tarry serve --store
dynamodb://TABLE` on DynamoDB Local: as a Lambda function version on MiniStack (packaged with
`tarry lambda package`; its steps appended to the table by the function itself), and behind
uvicorn (the HTTP deployment, steps checkpointed over HTTP back to the runtime). Rounds
alternate between them (the one registered last takes the new invocations); each round makes
BENCH_CALLS calls one after another on one keep-alive connection, after a warm-up. Cold start:
a fresh version's first Invoke against its second (MiniStack starts a worker process and imports
the package), and the package's own import time in a clean interpreter.

MiniStack's numbers are an emulator's, not AWS's: each Invoke is a local HTTP call plus a pipe to
a worker process, and a function that prints nothing waits 50 ms for its log (tarry's prints a
line per attempt). Read them as the cost of tarry's side, beside the HTTP deployment's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
CALLS = int(os.environ.get("BENCH_CALLS", "100"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
COLD = int(os.environ.get("BENCH_COLD", "3"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not answer at {url}")


def timed(client: httpx.Client, path: str, body: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        reply = client.post(path, json=body)
        out.append((time.perf_counter() - began) * 1000)
        if reply.status_code != 200:
            sys.exit(f"{path} answered {reply.status_code}: {reply.text}")
    return out


def main() -> None:
    ministack = os.environ.get("TARRY_MINISTACK_URL")
    dynamodb = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if not ministack or not dynamodb:
        sys.exit("run it with bash bench/lambda.sh (it starts DynamoDB Local and MiniStack)")
    work = Path(tempfile.mkdtemp(prefix="tarry-bench-lambda-"))
    tarry = [sys.executable, "-m", "tarry.runtime.cli"]
    table = f"bench-{uuid.uuid4().hex[:8]}"
    subprocess.run([*tarry, "dynamodb", "create-table", table], check=True, capture_output=True)
    ingress, admin = free_port(), free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL_LAMBDA": ministack}
    runtime = subprocess.Popen(
        [*tarry, "serve", "--store", f"dynamodb://{table}", "--ingress-port", str(ingress),
         "--admin-port", str(admin)],
        env=env, stdout=(work / "serve.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    http_port = free_port()
    uvicorn = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.services:app", "--port", str(http_port),
         "--log-level", "warning"],
        cwd=ROOT, stdout=(work / "uvicorn.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    lam = boto3.client(
        "lambda", endpoint_url=ministack, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{admin}/health", runtime, "tarry serve")
        wait_for(f"http://127.0.0.1:{http_port}/discover", uvicorn, "uvicorn")
        report(lam, work, ingress, admin, http_port, dynamodb)
    finally:
        for proc in (runtime, uvicorn):
            proc.terminate()
            proc.wait(10)


def report(lam: Any, work: Path, ingress: int, admin: int, http_port: int, dynamodb: str) -> None:
    from tarry.runtime.lambda_package import package

    python = str(ROOT / ".ci/.deps/ministack/venv/bin/python")  # the functions' Python (3.12)
    made = package(ROOT / "bench" / "services.py", work / "bench.zip", python=python)
    name = f"tarry-bench-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/bench",
        Handler=made.handler, Code={"ZipFile": made.path.read_bytes()}, Timeout=60,
        Environment={"Variables": {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb}},
    )  # fmt: skip
    arn = lam.publish_version(FunctionName=name)["FunctionArn"]
    targets = {"lambda": {"arn": arn}, "http": {"uri": f"http://127.0.0.1:{http_port}"}}
    samples: dict[str, dict[str, list[float]]] = {k: {"noop": [], "steps": []} for k in targets}
    with httpx.Client(base_url=f"http://127.0.0.1:{ingress}", timeout=60) as client:
        for _ in range(ROUNDS):
            for kind, body in targets.items():
                made_it = httpx.post(f"http://127.0.0.1:{admin}/deployments", json=body,
                                     timeout=60)  # fmt: skip
                if made_it.status_code != 201:
                    sys.exit(f"registering {body} failed: {made_it.text}")
                timed(client, "/Bench/noop", None, 10)  # warm up
                timed(client, "/Bench/steps", 10, 5)
                samples[kind]["noop"] += timed(client, "/Bench/noop", None, CALLS)
                samples[kind]["steps"] += timed(client, "/Bench/steps", 10, CALLS)

    # A noop attempt that touches no table (checkpoint none, its journal inline), as Invokes of
    # a fresh version: the first starts a worker and imports the package, the second is warm.
    noop = {"protocol": 1, "invocation_id": "inv_cold", "epoch": 1, "service": "Bench",
            "handler": "noop", "key": None, "headers": {}, "journal": [{"kind": "input"}],
            "completions": {}, "state": None, "retry_count": 0, "checkpoint": "none"}  # fmt: skip
    cold, warm = [], []
    for i in range(COLD):
        extra = work / f"note{i}.txt"
        extra.write_text(str(i))  # new code, so a new version (and fresh workers)
        fresh = package(ROOT / "bench" / "services.py", work / f"bench{i}.zip", [extra], python)
        lam.update_function_code(FunctionName=name, ZipFile=fresh.path.read_bytes())
        version = lam.publish_version(FunctionName=name)["FunctionArn"]
        for bucket in (cold, warm):
            began = time.perf_counter()
            answer = json.loads(lam.invoke(FunctionName=version,
                                           Payload=json.dumps(noop))["Payload"].read())  # fmt: skip
            bucket.append((time.perf_counter() - began) * 1000)
            if answer.get("outcome", {}).get("kind") != "completed":
                sys.exit(f"the cold-start probe answered {answer}")
    # The package's own import, unzipped as Lambda unzips it, on the functions' Python.
    unzipped = work / "unzipped"
    with zipfile.ZipFile(made.path) as archive:
        archive.extractall(unzipped)
    imports = []
    for _ in range(5):
        probe = "import time; t = time.perf_counter(); import tarry_lambda; " \
                "print((time.perf_counter() - t) * 1000)"  # fmt: skip
        ran = subprocess.run([python, "-S", "-c", probe], capture_output=True, text=True,
                             env={"PYTHONPATH": str(unzipped)}, check=True)  # fmt: skip
        imports.append(float(ran.stdout))

    def p50(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ms"

    rows = [
        ("noop, p50", p50(samples["lambda"]["noop"]), p50(samples["http"]["noop"])),
        ("steps(10), p50", p50(samples["lambda"]["steps"]), p50(samples["http"]["steps"])),
    ]
    print(f"\n{ROUNDS} rounds of {CALLS} calls each, alternating; tarry serve on DynamoDB Local")
    print(f"{'':18} {'Lambda (MiniStack)':>20} {'HTTP (uvicorn)':>16}")
    for label, a, b in rows:
        print(f"{label:18} {a:>20} {b:>16}")
    ratio = statistics.median(samples["lambda"]["steps"]) / statistics.median(
        samples["http"]["steps"]
    )
    print(f"steps(10): Lambda / HTTP = {ratio:.2f}")
    print(f"cold start: a new version's first Invoke {p50(cold)}, its second {p50(warm)} "
          f"({COLD} versions); importing the package: {p50(imports)}")  # fmt: skip
    print(json.dumps({"lambda": {k: statistics.median(v) for k, v in samples["lambda"].items()},
                      "http": {k: statistics.median(v) for k, v in samples["http"].items()},
                      "cold_ms": statistics.median(cold), "warm_ms": statistics.median(warm),
                      "import_ms": statistics.median(imports)}))  # fmt: skip


if __name__ == "__main__":
    main()
