"""Runtime-kill soak: ``Counter.add(1)`` calls (examples/counter.py) over many object keys,
each with an idempotency key of its own and a client that retries it (transport errors, 503)
until it is answered, while the ``tarry dev`` runtime is SIGKILLed every few seconds and
restarted on the same data dir and store.

Checked against a model of what the calls must have done:

- every call is answered, with 200;
- the values returned for one key are distinct and are exactly 1..N, N its calls;
- every counter equals its number of distinct idempotency keys;
- one invocation per idempotency key, and none besides (the admin API's listing), each
  completed with the value its caller got, under the id its caller was told (``x-restate-id``);
- each journal is what one add writes (input, get_state, set_state, output), read through the
  admin API's describe, and the store holds exactly those rows: no duplicate or orphaned
  journal row (read from the store itself, after the runtime stopped);
- a call sent again after its answer (``--resend``) gets the same answer.

It prints how long the work took to converge after the last kill: with a DynamoDB store, what a
killed process was running waits for its lease unless the restarted process takes it over.

    python -m tests.soak kill --store sqlite --keys 30 --adds 100 --kill-every 0.5-3
    python -m tests.soak kill --store dynamodb --lease 10s   # needs AWS_ENDPOINT_URL_DYNAMODB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from tarry.journal_table import PK, SK, index_of, invocation_pk
from tests.conftest import ROOT, TarryProcess

COUNTER = str(ROOT / "examples" / "counter.py")
JOURNAL = ["input", "get_state", "set_state", "output"]  # what one Counter.add journals
MAX_CALLS = 10_000  # the admin API lists at most this many invocations


@dataclass(frozen=True)
class Config:
    store: str = "sqlite"  # or "dynamodb"
    keys: int = 30
    adds: int = 100  # calls per key
    in_flight: int = 2  # calls in flight per key at once
    kill_every: tuple[float, float] = (0.5, 3.0)  # seconds the runtime runs between kills
    kill_until: float = 0.9  # no kill once this share of the calls is answered
    min_kills: int = 0  # at least this many, at evenly spaced points of progress
    max_kills: int | None = None  # and at most this many
    seed: int = 1
    duration: float | None = None  # no new call, and no kill, after this many seconds
    lease: str = "10s"  # the DynamoDB store's lease
    resend: float = 0.1  # the share of answered calls sent once more
    call_timeout: float = 300.0  # a call unanswered this long fails the soak


@dataclass
class Call:
    key: str
    idempotency_key: str
    value: int | None = None
    invocation_id: str | None = None
    problem: str | None = None  # answered, but not with 200; or never answered
    answered_at: float | None = None
    resent: tuple[int | None, str | None] | None = None  # the second answer, if sent again


@dataclass
class Invariant:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    config: Config
    calls: list[Call] = field(default_factory=list)
    kills: int = 0
    restarts_s: list[float] = field(default_factory=list)  # kill to /health answering again
    transport_errors: int = 0
    unavailable: int = 0  # 503 answers
    started_at: float = 0.0
    last_kill_at: float | None = None
    last_back_at: float | None = None
    in_flight_at_last_kill: list[Call] = field(default_factory=list)
    ended_at: float = 0.0
    invariants: list[Invariant] = field(default_factory=list)
    data_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.invariants) and all(i.ok for i in self.invariants)

    def convergence_s(self) -> float | None:
        """Seconds from the last kill until every call in flight at it was answered: how long
        the work a killed process had took to get done after it."""
        if self.last_kill_at is None:
            return None
        answered = [c.answered_at for c in self.in_flight_at_last_kill]
        if None in answered:
            return None
        return max([a - self.last_kill_at for a in answered if a is not None], default=0.0)

    def tail_s(self) -> float | None:
        """Seconds from the last kill until the last call was answered."""
        answered = [c.answered_at for c in self.calls if c.answered_at is not None]
        if self.last_kill_at is None or not answered:
            return None
        return max(0.0, max(answered) - self.last_kill_at)

    def summary(self) -> str:
        c = self.config
        store = f"dynamodb (lease {c.lease})" if c.store == "dynamodb" else "sqlite"
        lo, hi = c.kill_every
        resent = sum(1 for call in self.calls if call.resent is not None)
        lines = [
            f"tarry soak kill: {store}, {c.keys} keys x {c.adds} adds = {len(self.calls)} calls, "
            f"{c.in_flight} in flight per key, a kill every {lo:g}-{hi:g} s, seed {c.seed}",
            f"  ran {self.ended_at - self.started_at:.1f} s; {self.kills} kills"
            + (
                f" (back after {min(self.restarts_s):.1f}-{max(self.restarts_s):.1f} s, "
                f"median {statistics.median(self.restarts_s):.1f} s)"
                if self.restarts_s
                else ""
            ),
            f"  retries: {self.transport_errors} after a transport error, {self.unavailable} "
            f"after a 503; {resent} answered calls sent again",
        ]
        converged, tail = self.convergence_s(), self.tail_s()
        if converged is not None and tail is not None and self.last_kill_at is not None:
            assert self.last_back_at is not None
            back = self.last_back_at - self.last_kill_at
            lines.append(
                f"  converged {converged:.2f} s after the last kill: the "
                f"{len(self.in_flight_at_last_kill)} calls in flight at it answered (the "
                f"runtime was back after {back:.2f} s; the last call answered after {tail:.2f} s)"
            )
        lines.append("  invariants:")
        for i in self.invariants:
            lines.append(
                f"    {'ok  ' if i.ok else 'FAIL'}  {i.name}{': ' if i.detail else ''}{i.detail}"
            )
        if not self.ok and self.data_dir is not None:
            lines.append(f"  logs and store: {self.data_dir}")
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)


def run(config: Config, data_dir: Path, table: str | None = None) -> Report:
    """Run the soak with its runtime's data (logs, SQLite store) in ``data_dir``, on the
    DynamoDB ``table`` (which must exist) when the store is dynamodb."""
    if config.store == "dynamodb" and table is None:
        raise ValueError("a dynamodb soak needs a table")
    store_args = ["--store", f"dynamodb://{table}?lease={config.lease}"] if table else []
    data_dir.mkdir(parents=True, exist_ok=True)
    runtime = TarryProcess(["dev", COUNTER, "--data-dir", str(data_dir), *store_args], data_dir)
    report = Report(config, data_dir=data_dir)
    report.started_at = time.monotonic()
    runtime.start()
    try:
        asyncio.run(_drive(config, runtime, report))
        report.ended_at = time.monotonic()
        report.invariants = asyncio.run(_check(report, runtime))
    finally:
        runtime.stop()
    rows = _journal_rows(data_dir, table)
    report.invariants.append(_rows_invariant(report, rows))
    return report


async def _drive(config: Config, runtime: TarryProcess, report: Report) -> None:
    """The clients and the killer, until every call is answered (or given up on)."""
    kill_rng = random.Random(f"{config.seed}-kill")
    resend_rng = random.Random(f"{config.seed}-resend")
    keys = [f"k{n}" for n in range(config.keys)]
    todo = {k: deque(Call(k, f"{k}-{i}") for i in range(config.adds)) for k in keys}
    total = config.keys * config.adds
    answered = 0
    deadline_of_new = (
        report.started_at + config.duration if config.duration is not None else float("inf")
    )

    async def until_answered(client: httpx.AsyncClient, call: Call) -> tuple[int | None, str]:
        deadline = time.monotonic() + config.call_timeout
        url = f"{runtime.ingress}/Counter/{call.key}/add"
        headers = {"idempotency-key": call.idempotency_key}
        while time.monotonic() < deadline:
            try:
                reply = await client.post(url, json=1, headers=headers)
            except httpx.TransportError:  # killed mid-request, or down: it comes back
                report.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            if reply.status_code == 503:
                report.unavailable += 1
                await asyncio.sleep(min(float(reply.headers.get("retry-after", "1")), 1.0))
                continue
            if reply.status_code != 200:
                return None, f"{reply.status_code}: {reply.text[:200]}"
            value: int = reply.json()
            return value, reply.headers.get("x-restate-id", "")
        return None, f"not answered within {config.call_timeout:g} s"

    async def worker(client: httpx.AsyncClient, key: str) -> None:
        nonlocal answered
        while todo[key] and time.monotonic() < deadline_of_new:
            call = todo[key].popleft()
            report.calls.append(call)
            value, said = await until_answered(client, call)
            if value is None:
                call.problem = said
            else:
                call.value, call.invocation_id = value, said
                call.answered_at = time.monotonic()
                if resend_rng.random() < config.resend:
                    call.resent = await until_answered(client, call)
            answered += 1

    def killing() -> bool:
        if config.max_kills is not None and report.kills >= config.max_kills:
            return False
        return answered < total * config.kill_until and time.monotonic() < deadline_of_new

    async def killer() -> None:
        back = time.monotonic()
        while killing():
            interval = kill_rng.uniform(*config.kill_every)
            progress = total * config.kill_until * (report.kills + 1) / (config.min_kills + 1)
            while killing() and time.monotonic() - back < interval:
                if report.kills < config.min_kills and answered >= progress:
                    break  # a kill at this point of progress, whatever the time
                await asyncio.sleep(0.01)
            if not killing():
                return
            report.last_kill_at = time.monotonic()
            report.in_flight_at_last_kill = [c for c in report.calls if c.answered_at is None]
            await asyncio.to_thread(runtime.kill)
            report.kills += 1
            await asyncio.to_thread(runtime.start)
            back = report.last_back_at = time.monotonic()
            report.restarts_s.append(back - report.last_kill_at)

    limits = httpx.Limits(max_connections=config.keys * config.in_flight + 8)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        workers = [worker(client, k) for k in keys for _ in range(config.in_flight)]
        await asyncio.gather(killer(), *workers)


async def _check(report: Report, runtime: TarryProcess) -> list[Invariant]:
    """The invariants the admin API can tell, against the model of the calls."""
    calls = report.calls
    by_key: dict[str, list[Call]] = {}
    for call in calls:
        by_key.setdefault(call.key, []).append(call)
    checks: list[Invariant] = []

    problems = [f"{c.idempotency_key}: {c.problem}" for c in calls if c.problem is not None]
    checks.append(
        Invariant(
            "every call answered with 200",
            not problems,
            f"{len(calls) - len(problems)} of {len(calls)}" + _some(problems),
        )
    )
    wrong = [
        f"{key}: {sorted(v)}"
        for key, mine in by_key.items()
        if sorted(v := [c.value for c in mine if c.value is not None]) != _one_to(len(mine))
    ]
    checks.append(
        Invariant("the values returned for a key are exactly 1..N", not wrong, _some(wrong))
    )

    async with httpx.AsyncClient(base_url=runtime.admin, timeout=60) as admin:
        counters = []
        for n in range(report.config.keys):
            key = f"k{n}"
            state = (await admin.get(f"/state/Counter/{key}")).json()["state"]
            expected = len(by_key.get(key, []))
            if state.get("total", 0) != expected:
                counters.append(f"{key} is {state.get('total')}, not {expected}")
        checks.append(
            Invariant(
                "every counter equals its distinct idempotency keys", not counters, _some(counters)
            )
        )

        listed = await admin.get("/invocations", params={"service": "Counter", "limit": MAX_CALLS})
        invocations = listed.json()["invocations"]
        checks.append(_one_invocation_each(calls, invocations))

        gate = asyncio.Semaphore(16)

        async def describe(invocation_id: str) -> dict[str, Any]:
            async with gate:
                data: dict[str, Any] = (await admin.get(f"/invocations/{invocation_id}")).json()
                return data

        described = await asyncio.gather(*(describe(i["id"]) for i in invocations))
    answers = {c.invocation_id: c.value for c in calls if c.invocation_id}
    checks.append(_journals_invariant(described, answers))

    resent = [c for c in calls if c.resent is not None]
    differ = [
        f"{c.idempotency_key}: {c.value}/{c.invocation_id}, then {c.resent}"
        for c in resent
        if c.resent != (c.value, c.invocation_id)
    ]
    checks.append(
        Invariant(
            "a call sent again gets the same answer and id",
            not differ,
            f"{len(resent)} sent again" + _some(differ),
        )
    )
    return checks


def _one_invocation_each(calls: list[Call], invocations: list[dict[str, Any]]) -> Invariant:
    issued = {(c.key, c.idempotency_key): c for c in calls}
    counts = Counter((i["key"], i["idempotency_key"]) for i in invocations)
    wrong = [f"{k}/{idem}: {n} invocations" for (k, idem), n in counts.items() if n != 1]
    wrong += [f"{k}/{idem}: none" for (k, idem) in issued if (k, idem) not in counts]
    wrong += [f"{k}/{idem}: not called" for (k, idem) in counts if (k, idem) not in issued]
    for inv in invocations:
        call = issued.get((inv["key"], inv["idempotency_key"]))
        if call is None or call.value is None:
            continue
        if inv["status"] != "completed" or inv["completion"] != {"value": call.value}:
            wrong.append(f"{inv['id']}: {inv['status']} {inv['completion']}, told {call.value}")
        elif inv["id"] != call.invocation_id:
            wrong.append(f"{call.idempotency_key}: told {call.invocation_id}, stored {inv['id']}")
    return Invariant(
        "one invocation per idempotency key, with the answer given",
        not wrong,
        f"{len(invocations)} invocations" + _some(wrong),
    )


def _journals_invariant(described: list[dict[str, Any]], answers: dict[str, Any]) -> Invariant:
    """Each journal is one add's: input 1, read the total, set it one higher, return it."""
    wrong = []
    for inv in described:
        journal = inv["journal"]
        kinds = [e["command"]["kind"] for e in journal]
        indices = [e["index"] for e in journal]
        value = answers.get(inv["id"])
        by_kind = {e["command"]["kind"]: e["command"] for e in journal}
        if (
            kinds != JOURNAL
            or indices != list(range(len(JOURNAL)))
            or inv["journal_length"] != len(JOURNAL)
            or by_kind["input"].get("value") != 1
            or by_kind["set_state"].get("value") != value
            or by_kind["output"].get("value") != value
        ):
            wrong.append(f"{inv['id']}: {[(e['index'], e['command']) for e in journal]}")
    return Invariant(
        "every journal is one add's (input, get, set, output)", not wrong, _some(wrong)
    )


def _journal_rows(data_dir: Path, table: str | None) -> dict[str, tuple[int, list[int]]]:
    """Each invocation's journal length and the indices of the journal rows the store holds,
    read from the store itself (the runtime has stopped): SQLite's tables, or every item of
    the DynamoDB table. Keyed by invocation id (SQLite) or partition key (DynamoDB)."""
    found: dict[str, tuple[int, list[int]]] = {}
    if table is None:
        with contextlib.closing(
            sqlite3.connect(f"file:{data_dir / 'tarry.db'}?mode=ro", uri=True)
        ) as db:
            for inv_id, length in db.execute("SELECT id, journal_length FROM invocations"):
                found[inv_id] = (length, [])
            for inv_id, idx in db.execute("SELECT invocation_id, idx FROM journal ORDER BY 1, 2"):
                found.setdefault(inv_id, (-1, []))[1].append(idx)
        return found
    import boto3

    pages = (
        boto3.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=table,
            ProjectionExpression="#p, #s, journal_length",
            ExpressionAttributeNames={"#p": PK, "#s": SK},
            ConsistentRead=True,
        )
    )
    lengths: dict[str, int] = {}
    rows: dict[str, list[int]] = {}
    for page in pages:
        for item in page["Items"]:
            pk, sk = item[PK]["S"], item[SK]["S"]
            if not pk.startswith("inv#"):
                continue
            if sk == "inv":
                lengths[pk] = int(item["journal_length"]["N"])
            elif sk.startswith("j#"):
                rows.setdefault(pk, []).append(index_of(sk))
    for pk in lengths.keys() | rows.keys():
        found[pk] = (lengths.get(pk, -1), sorted(rows.get(pk, [])))
    return found


def _rows_invariant(report: Report, rows: dict[str, tuple[int, list[int]]]) -> Invariant:
    dynamodb = report.config.store == "dynamodb"
    ids = {c.invocation_id for c in report.calls if c.invocation_id}
    wrong = [
        f"{name}: length {length}, rows {indices}"
        for name, (length, indices) in rows.items()
        if indices != list(range(length))
    ]
    missing = [i for i in ids if (invocation_pk(i) if dynamodb else i) not in rows]
    wrong += [f"{i}: not in the store" for i in missing]
    return Invariant(
        "the store holds each journal row once, none orphaned",
        not wrong,
        f"{sum(len(r) for _, r in rows.values())} rows" + _some(wrong),
    )


def _one_to(n: int) -> list[int]:
    return list(range(1, n + 1))


def _some(problems: list[str], shown: int = 5) -> str:
    if not problems:
        return ""
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return "; " + "; ".join(problems[:shown]) + more


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        lo, hi = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX seconds, e.g. 0.5-3") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: want 0 < MIN <= MAX")
    return lo, hi


# The flags, each a field of Config: (field, type, what it is).
_FLAGS: list[tuple[str, Any, str]] = [
    ("keys", int, "object keys"),
    ("adds", int, "calls per key"),
    ("in_flight", int, "calls in flight per key at once"),
    ("kill_every", _seconds_range, "MIN-MAX seconds the runtime runs between SIGKILLs"),
    ("kill_until", float, "no kill once this share of the calls is answered"),
    ("min_kills", int, "kill at least this often, at evenly spaced points of progress"),
    ("max_kills", int, "kill at most this often"),
    ("seed", int, "the random seed (default: a new one)"),
    ("duration", float, "seconds after which no new call is made and no kill"),
    ("lease", str, "the DynamoDB store's lease"),
    ("resend", float, "the share of answered calls sent once more"),
    ("call_timeout", float, "seconds a call may go unanswered"),
]


def parse(argv: list[str]) -> Config:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m tests.soak kill",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--store",
        choices=["sqlite", "dynamodb"],
        default=d.store,
        help="dynamodb: a fresh table at AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local)",
    )
    for name, kind, text in _FLAGS:
        default = None if name == "seed" else getattr(d, name)
        if isinstance(default, tuple):
            text += f" (default {'-'.join(f'{x:g}' for x in default)})"
        elif default is not None:
            text += f" (default {default})"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text)
    a = p.parse_args(argv)
    if a.keys < 1 or a.adds < 1 or a.in_flight < 1 or a.keys * a.adds > MAX_CALLS:
        p.error(f"want 1 <= --keys x --adds <= {MAX_CALLS}, and --in-flight >= 1")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1_000_000)
    return replace(d, store=a.store, **{name: getattr(a, name) for name, _, _ in _FLAGS})


def main(argv: list[str]) -> int:
    config = parse(argv)
    table = None
    if config.store == "dynamodb":
        if not (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")):
            print(
                "--store dynamodb needs AWS_ENDPOINT_URL_DYNAMODB (scripts/soak.sh starts "
                "DynamoDB Local)",
                file=sys.stderr,
            )
            return 2
        table = f"tarry-soak-{uuid.uuid4().hex[:12]}"
        cli = [sys.executable, "-m", "tarry.runtime.cli", "dynamodb", "create-table", table]
        made = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
        if made.returncode != 0:
            print(made.stderr, file=sys.stderr)
            return 2
    data_dir = Path(tempfile.mkdtemp(prefix="tarry-soak-"))
    try:
        report = run(config, data_dir, table)
    finally:
        if table is not None:
            import boto3

            boto3.client("dynamodb").delete_table(TableName=table)
    print(report.summary())
    if report.ok:
        shutil.rmtree(data_dir, ignore_errors=True)
        return 0
    return 1
