"""``python -m tests.soak fuzz``: seeded random programs on a real ``tarry dev``, checked
against a model, with the runtime SIGKILLed now and then.

The programs (:mod:`tests.soak.fuzz_model`) use state, ``ctx.run`` steps, sleeps, calls and
sends three layers deep (``Interp0`` .. ``Interp2`` of ``tests/apps/interpreter.py``) over
``--keys`` keys per layer, and awakeables. Clients submit the top-level programs with
idempotency keys, each retried across kills until it is answered, while the runtime is
SIGKILLed and restarted every ``--kill-every MIN-MAX`` seconds (and once ``--kill-after N,M``
programs have been answered). Then the fuzz waits, ``--settle`` seconds at most, until every
invocation the model expects has completed, and compares every key's state, every invocation's
result and every answer with the model. A **stall detector** dumps the journal of every
invocation that has not completed by then; a failure prints the seed and the command that
replays it (the same programs and kill intervals; where a kill lands is timing).

    python -m tests.soak fuzz --seed 7 --programs 300 --keys 6 --store dynamodb --kill-every 1-4
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import APPS, ROOT, TarryProcess
from tests.soak.fuzz_model import Model, Observed, Root, Shape, compare, generate, key_name

APP = APPS / "interpreter.py"
DUMPED = 20  # invocations whose journals a failure dumps, at most


@dataclass(frozen=True)
class Run:
    """One fuzz run: the programs of ``shape`` on ``store``, the runtime killed once as many
    programs as each of ``kill_after`` says have been answered, then every ``kill_every``
    seconds (``None``: never); every program answered within ``timeout`` s, and every
    invocation completed within ``settle`` s after that."""

    shape: Shape
    store: str = "sqlite"
    kill_every: tuple[float, float] | None = (1.0, 3.0)
    timeout: float = 120
    settle: float = 60
    kill_after: tuple[int, ...] = ()

    def command(self) -> str:
        """The command line that replays this run."""
        s = self.shape
        kill = "0" if self.kill_every is None else "-".join(f"{t:g}" for t in self.kill_every)
        return (
            f"python -m tests.soak fuzz --seed {s.seed} --programs {s.programs} --keys {s.keys} "
            f"--depth {s.depth} --clients {s.clients} --store {self.store} --kill-every {kill} "
            f"--timeout {self.timeout:g} --settle {self.settle:g}"
            + (f" --kill-after {','.join(map(str, self.kill_after))}" if self.kill_after else "")
        )


@dataclass
class Outcome:
    run: Run
    problems: list[str] = field(default_factory=list)  # differences from the model
    stalls: list[str] = field(default_factory=list)  # the stall detector's dump
    kills: int = 0
    invocations: int = 0
    seconds: float = 0.0
    converged_after_kill: float | None = None  # seconds from the last kill to convergence

    @property
    def ok(self) -> bool:
        return not self.problems and not self.stalls

    def report(self) -> str:
        s = self.run.shape
        after = self.converged_after_kill
        head = (
            f"seed {s.seed} on {self.run.store}: {s.programs} programs, {self.invocations} "
            f"invocations, {self.kills} kills, {self.seconds:.1f} s"
            + (f", converged {after:.1f} s after the last kill" if after is not None else "")
        )
        if self.ok:
            return f"ok  {head}"
        lines = [f"FAILED  {head}", *(f"  {p}" for p in self.problems[:50])]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        if self.stalls:
            lines += ["  stall detector:", *(f"    {line}" for line in self.stalls)]
        lines.append(f"  replay: {self.run.command()}")
        return "\n".join(lines)


def _services(depth: int) -> list[str]:
    return [*(f"Interp{n}" for n in range(depth)), "Resolver"]


def listing(p: TarryProcess, depth: int) -> list[dict[str, Any]]:
    """Every invocation of the interpreter's services, from the admin API."""
    found: list[dict[str, Any]] = []
    for service in _services(depth):
        params = {"service": service, "limit": "10000"}
        reply = httpx.get(f"{p.admin}/invocations", params=params, timeout=30)
        reply.raise_for_status()
        found += reply.json()["invocations"]
    return found


def states(p: TarryProcess, shape: Shape) -> dict[tuple[int, str], dict[str, Any]]:
    found = {}
    for layer in range(shape.depth):
        for n in range(shape.keys):
            reply = httpx.get(f"{p.admin}/state/Interp{layer}/{key_name(n)}", timeout=30)
            reply.raise_for_status()
            found[layer, key_name(n)] = reply.json()["state"]
    return found


def _object(inv: dict[str, Any]) -> str:
    """``Interp1/k2``: the object an invocation ran on (its target without the handler)."""
    target: str = inv["target"]
    return target.rsplit("/", 1)[0]


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _entry(entry: dict[str, Any]) -> str:
    command = entry["command"]
    what = command["kind"]
    if command.get("name"):
        what += f" {command['name']}"
    if "service" in command:
        what += f" -> {command['service']}/{command.get('key') or ''}"
    if "value" in command and command["kind"] != "input":
        what += f" {_short(command['value'], 100)}"
    done = entry["completion"]
    return f"#{entry['index']} {what}" + ("" if done is None else f" = {_short(done, 100)}")


def dump(p: TarryProcess, invocations: list[dict[str, Any]]) -> list[str]:
    """The journals of ``invocations`` (at most :data:`DUMPED`), for a person to read."""
    lines = []
    for inv in invocations[:DUMPED]:
        described = p.invocation(inv["id"])
        journal = described["journal"]
        program = journal[0]["command"].get("value") if journal else None
        tok = program.get("tok") if isinstance(program, dict) else None
        lines.append(
            f"{inv['target']} {inv['id']} (program {tok}): {described['status']}, "
            f"{described['attempts']} attempts, waiting on {described['waiting_on']}, "
            f"last failure {_short(described['last_failure'])}"
        )
        lines += [f"  {_entry(e)}" for e in journal]
    if len(invocations) > DUMPED:
        lines.append(f"... and {len(invocations) - DUMPED} more")
    return lines


def converge(
    p: TarryProcess, model: Model, depth: int, deadline: float
) -> tuple[bool, list[dict[str, Any]]]:
    """Wait (until ``deadline``) for every invocation the model expects to have completed."""
    expected = sum(model.invocations(n) for n in range(depth)) + model.resolvers
    while True:
        found = listing(p, depth)
        if len(found) >= expected and all(i["status"] == "completed" for i in found):
            return True, found
        if time.monotonic() > deadline:
            return False, found
        time.sleep(0.1)


def stall_report(
    p: TarryProcess, model: Model, found: list[dict[str, Any]], answers: dict[str, Any]
) -> list[str]:
    """Why the run did not converge: the keys and invocations that never finished, with their
    journals, and what the model expected that never even started."""
    unfinished = [i for i in found if i["status"] != "completed"]
    keys = sorted({_object(i) for i in unfinished if i["key"] is not None})
    lines = [
        f"{len(unfinished)} invocations did not complete, on {len(keys)} keys: {', '.join(keys)}",
        f"{len(found)} invocations exist; the model expects {len(model.where) + model.resolvers}",
    ]
    unanswered = [r.tok for r in model.roots if r.tok not in answers]
    if unanswered:
        lines.append(f"top-level programs never answered: {', '.join(unanswered)}")
    return lines + dump(p, unfinished)


async def _submit(
    client: httpx.AsyncClient, p: TarryProcess, root: Root, deadline: float, problems: list[str]
) -> tuple[bool, Any]:
    """Submit ``root`` until it is answered (across kills: the same idempotency key attaches to
    the same invocation), or ``deadline``. ``(answered, response)``."""
    url = f"{p.ingress}/Interp0/{root.key}/run"
    while time.monotonic() < deadline:
        try:
            reply = await client.post(url, json=root.program, headers={"idempotency-key": root.tok})
        except httpx.TransportError:  # the runtime is down, or went down while we waited
            await asyncio.sleep(0.05)
            continue
        if reply.status_code == 200:
            return True, reply.json()
        if reply.status_code != 503:  # 503: the runtime is stopping; anything else is wrong
            problems.append(f"program {root.tok}: answered {reply.status_code} {reply.text}")
            return False, None
        await asyncio.sleep(0.05)
    return False, None


async def _drive(
    run: Run, p: TarryProcess, roots: list[Root], deadline: float, problems: list[str]
) -> tuple[dict[str, Any], list[float]]:
    """Every client submits its programs, one at a time, while the runtime is killed now and
    then. The answers, by program, and when each kill was."""
    answers: dict[str, Any] = {}
    kills: list[float] = []
    done = asyncio.Event()
    rng = random.Random(f"kills {run.shape.seed}")

    async def client(mine: list[Root], http: httpx.AsyncClient) -> None:
        for root in mine:
            answered, value = await _submit(http, p, root, deadline, problems)
            if not answered:
                return
            answers[root.tok] = value

    async def kill() -> None:
        await asyncio.to_thread(p.kill)
        kills.append(time.monotonic())
        await asyncio.to_thread(p.start)

    async def killer() -> None:
        for answered in run.kill_after:
            while len(answers) < answered and not done.is_set():
                await asyncio.sleep(0.01)
            if done.is_set():
                return
            await kill()
        while run.kill_every is not None and not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), rng.uniform(*run.kill_every))
                return
            except TimeoutError:
                pass
            await kill()

    async def clients(http: httpx.AsyncClient) -> None:
        per_client = [[r for r in roots if r.client == c] for c in range(run.shape.clients)]
        await asyncio.gather(*(client(mine, http) for mine in per_client))
        done.set()

    limits = httpx.Limits(max_connections=run.shape.clients * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(killer(), clients(http))
    return answers, kills


def fuzz(
    run: Run, store_args: list[str], workdir: Path, roots: list[Root] | None = None
) -> Outcome:
    """One fuzz run on a fresh store (``store_args`` for ``tarry dev``; its data in
    ``workdir``): the programs of ``run.shape`` (or ``roots``) submitted under kills, checked
    against the model."""
    started = time.monotonic()
    deadline = started + run.timeout
    roots = generate(run.shape) if roots is None else roots
    model = Model(roots)
    outcome = Outcome(run)
    p = TarryProcess(["dev", str(APP), "--data-dir", str(workdir), *store_args], workdir)
    p.start()
    try:
        answers, kills = asyncio.run(_drive(run, p, roots, deadline, outcome.problems))
        settled = time.monotonic() + run.settle
        converged, found = converge(p, model, run.shape.depth, settled)
        outcome.kills, outcome.invocations = len(kills), len(found)
        if converged and kills:
            outcome.converged_after_kill = time.monotonic() - kills[-1]
        if not converged:
            outcome.stalls = stall_report(p, model, found, answers)
        seen = Observed(states(p, run.shape), found, answers)
        problems = compare(model, seen)
        outcome.problems += problems
        if converged and problems:  # a wrong result: the journals of the keys it names
            named = [i for i in found if any(x.startswith(_object(i) + ":") for x in problems)]
            outcome.stalls = ["journals on the keys named:", *dump(p, named)]
    finally:
        p.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


@contextmanager
def fresh_store(store: str, workdir: Path) -> Iterator[list[str]]:
    """``tarry dev`` arguments for a fresh store: SQLite in ``workdir`` (the default), or a
    DynamoDB table of its own (through the standard AWS settings), deleted after."""
    if store == "sqlite":
        yield []
        return
    import boto3

    name = f"tarry-fuzz-{uuid.uuid4().hex[:12]}"
    cli = [sys.executable, "-m", "tarry.runtime.cli", "dynamodb", "create-table", name]
    made = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
    if made.returncode != 0:
        raise RuntimeError(f"cannot create the DynamoDB table {name}: {made.stderr.strip()}")
    try:
        yield ["--store", f"dynamodb://{name}?lease=2s"]
    finally:
        boto3.client("dynamodb").delete_table(TableName=name)


def _interval(text: str) -> tuple[float, float] | None:
    if text == "0":
        return None
    low, _, high = text.partition("-")
    lo, hi = float(low), float(high or low)
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"give MIN-MAX seconds, 0 < MIN <= MAX, not {text!r}")
    return lo, hi


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give counts like 10,20, not {text!r}") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak fuzz", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--runs", type=int, default=1, help="seeds SEED, SEED+1, ... (default 1)")
    parser.add_argument("--programs", type=int, default=200, help="top-level programs per run")
    parser.add_argument("--keys", type=int, default=6, help="object keys per layer")
    parser.add_argument("--depth", type=int, default=3, help="layers of calls and sends")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--store", choices=["sqlite", "dynamodb"], default="sqlite")
    parser.add_argument(
        "--kill-every", type=_interval, default=(1.0, 3.0), metavar="MIN-MAX",
        help="SIGKILL the runtime every MIN to MAX seconds (0: never; default 1-3)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds for every program to be answered"
    )
    parser.add_argument(
        "--settle", type=float, default=120,
        help="seconds after that for every invocation to complete (then the stall detector)",
    )  # fmt: skip
    parser.add_argument(
        "--kill-after", type=_counts, default=(), metavar="N,M,...",
        help="also SIGKILL it once N, then M, ... programs have been answered",
    )  # fmt: skip
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.runs):
        shape = Shape(seed, args.programs, args.keys, args.depth, args.clients)
        run = Run(shape, args.store, args.kill_every, args.timeout, args.settle, args.kill_after)
        workdir = Path(tempfile.mkdtemp(prefix="tarry-fuzz-"))
        with fresh_store(args.store, workdir) as store_args:
            try:
                outcome = fuzz(run, store_args, workdir)
            except Exception as exc:  # the runtime would not start again, say
                outcome = Outcome(run, [f"the run broke off: {type(exc).__name__}: {exc}"])
        print(outcome.report(), flush=True)
        if outcome.ok:
            shutil.rmtree(workdir)
        else:
            failed += 1
            print(f"  the runtime's logs and data: {workdir}", flush=True)
    print(f"{args.runs - failed} of {args.runs} runs matched the model")
    return 1 if failed else 0
