"""The interpreter fuzz's programs and its model: pure Python, no I/O.

:func:`generate` turns a seed into the programs of ``tests/apps/interpreter.py`` (the same seed,
the same programs); :class:`Model` executes them as plain code, without durability, and says
what every key's state and every invocation's result must be once the runtime has run them all;
:func:`compare` lists every way what the runtime stored differs from that.

What the model can know, it checks exactly: the counter ``c`` of each key (a sum: the order of
the adds does not matter), each program's own state ``p.{tok}`` (one invocation's changes apply
in journal order), the result of every invocation, and that each program ran exactly once, on
its key. What the semantics leave open — the order in which different callers' calls reach a
key — it does not: a key's ``order`` log is compared as a multiset, and only the entries of one
caller, issued without a delay, must appear in the order that caller issued them.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.apps.interpreter import LAYERS, REJECT_CODE, THROW_CODE

Where = tuple[int, str]  # (layer, object key)


@dataclass(frozen=True)
class Shape:
    """What :func:`generate` makes: ``programs`` top-level programs on ``keys`` keys of each of
    ``depth`` layers, submitted by ``clients`` clients (each one program at a time)."""

    seed: int
    programs: int
    keys: int
    depth: int = 3
    clients: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= LAYERS:
            raise ValueError(f"depth must be 1 to {LAYERS}, not {self.depth}")
        if self.programs < 1 or self.keys < 1 or self.clients < 1:
            raise ValueError("programs, keys and clients must be at least 1")


@dataclass(frozen=True)
class Root:
    """A top-level program, submitted to ``Interp0/{key}`` with idempotency key ``tok``."""

    client: int
    key: str
    program: dict[str, Any]

    @property
    def tok(self) -> str:
        tok: str = self.program["tok"]
        return tok


def key_name(n: int) -> str:
    return f"k{n}"


class _Generator:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)

    def key(self) -> str:
        return key_name(self.rng.randrange(self.shape.keys))

    def program(
        self, tok: str, caller: str, seq: int, ordered: bool, layer: int, level: int
    ) -> dict[str, Any]:
        rng = self.rng
        issued = itertools.count()  # the order this program issues calls and sends in
        children = itertools.count()
        ops = [
            self.op(tok, layer, level, issued, children)
            for _ in range(rng.randint(1, max(2, 7 - 2 * level)))
        ]
        if level > 0 and rng.random() < 0.15:
            ops.append(["throw", f"boom {tok}"])
        return {"tok": tok, "caller": caller, "seq": seq, "ordered": ordered, "ops": ops}

    def child(
        self, tok: str, layer: int, level: int, issued: Iterator[int], children: Iterator[int],
        delayed: bool = False,
    ) -> tuple[str, dict[str, Any]]:  # fmt: skip
        key = self.key()
        sub = self.program(
            f"{tok}.{next(children)}", tok, next(issued), not delayed, layer, level + 1
        )
        return key, sub

    def op(
        self, tok: str, layer: int, level: int, issued: Iterator[int], children: Iterator[int],
        inside_par: bool = False,
    ) -> list[Any]:  # fmt: skip
        rng, depth = self.rng, self.shape.depth
        can_call = layer + 1 < depth and level + 1 < depth
        can_send = level + 1 < depth and not inside_par
        kinds = ["run", "sleep", "awk"] * 2
        if not inside_par:
            kinds += ["add"] * 4 + ["push"] * 3 + ["drop", "peek", "peek", "flaky"]
            if level + 1 < depth:
                kinds.append("par")
        kinds += ["call"] * (3 * can_call) + ["send"] * (3 * can_send)
        kind = rng.choice(kinds)
        if kind == "add":
            return ["add", rng.randint(1, 9)]
        if kind == "push":
            return ["push", rng.randrange(100)]
        if kind in ("drop", "peek"):
            return [kind]
        if kind == "run":
            return ["run", rng.randrange(1000)]
        if kind == "flaky":
            return ["flaky", rng.randrange(1000), rng.randint(1, 2)]
        if kind == "sleep":
            return ["sleep", rng.randint(1, 40)]
        if kind == "awk":
            return ["awk", rng.choice(["send", "send", "call", "reject"]), rng.randrange(1000)]
        if kind == "par":
            width = rng.randint(2, 4)
            return [
                "par",
                [self.op(tok, layer, level, issued, children, True) for _ in range(width)],
            ]
        if kind == "call":
            target = rng.randint(layer + 1, depth - 1)
            key, sub = self.child(tok, target, level, issued, children)
            return ["call", target, key, sub]
        target = rng.randrange(depth)  # a send may go anywhere: nobody waits for it
        delay = rng.choice([0, 0, 0, rng.randint(1, 60)])
        key, sub = self.child(tok, target, level, issued, children, delayed=delay > 0)
        return ["send", target, key, sub, delay]


def generate(shape: Shape) -> list[Root]:
    """The top-level programs of ``shape``, in the order each client submits its own."""
    gen = _Generator(shape)
    roots = []
    for n in range(shape.programs):
        client = n % shape.clients
        caller = f"c{client}"
        seq = n // shape.clients
        tok = f"{caller}.{seq}"
        roots.append(Root(client, gen.key(), gen.program(tok, caller, seq, True, 0, 0)))
    return roots


@dataclass
class Model:
    """What running ``roots`` must leave behind, computed by executing them as plain code."""

    roots: list[Root]
    state: dict[Where, dict[str, Any]] = field(default_factory=dict)  # but the order logs
    order: dict[Where, Counter[tuple[str, int, str]]] = field(default_factory=dict)
    ordered: set[str] = field(default_factory=set)  # programs issued without a delay
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # tok: its completion
    where: dict[str, Where] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # a throw's message: its program
    resolvers: int = 0  # Resolver invocations

    def __post_init__(self) -> None:
        for root in self.roots:
            self.execute(root.program, 0, root.key)

    def invocations(self, layer: int) -> int:
        return sum(1 for w in self.where.values() if w[0] == layer)

    def execute(self, program: dict[str, Any], layer: int, key: str) -> dict[str, Any]:
        tok = program["tok"]
        where = (layer, key)
        state = self.state.setdefault(where, {})
        entry = (program["caller"], program["seq"], tok)
        self.order.setdefault(where, Counter())[entry] += 1
        self.where[tok] = where
        if program["ordered"]:
            self.ordered.add(tok)
        mine = f"p.{tok}"
        out: list[Any] = []
        completion: dict[str, Any] | None = None
        for op in program["ops"]:
            name = op[0]
            if name == "add":
                state["c"] = state.get("c", 0) + op[1]
            elif name == "push":
                state[mine] = [*state.get(mine, []), op[1]]
            elif name == "drop":
                state.pop(mine, None)
            elif name == "peek":
                out.append(state.get(mine))
            elif name == "send":
                self.execute(op[3], op[1], op[2])
            elif name == "par":
                outputs = [self.output(tok, sub) for sub in op[1]]
                failed = [o for o, ok in outputs if not ok]
                out.append(failed[0] if failed else [o for o, _ in outputs])
            elif name == "throw":
                completion = {"failure": {"code": THROW_CODE, "message": op[1]}}
                self.failures[op[1]] = tok
                break
            elif name != "sleep":
                out.append(self.output(tok, op)[0])
        self.results[tok] = completion or {"value": {"tok": tok, "out": out}}
        return self.results[tok]

    def output(self, tok: str, op: list[Any]) -> tuple[Any, bool]:
        """An awaitable op's output, and whether it succeeded."""
        name = op[0]
        if name in ("run", "flaky"):
            return f"{tok}:{op[1]}", True
        if name == "sleep":
            return None, True
        if name == "awk":
            self.resolvers += op[1] != "never"
            if op[1] == "reject":
                return f"rejected:{REJECT_CODE}:{op[2]}", False
            return op[2], True
        if name == "call":
            done = self.execute(op[3], op[1], op[2])
            if "failure" in done:
                failure = done["failure"]
                return f"err:{failure['code']}:{failure['message']}", False
            return done["value"], True
        raise ValueError(f"not an awaitable op: {op!r}")


@dataclass(frozen=True)
class Observed:
    """What the runtime has, read through its admin API and from the clients' answers."""

    states: dict[Where, dict[str, Any]]  # every key of every layer
    invocations: list[dict[str, Any]]  # the admin listing's records, Interp* and Resolver
    answers: dict[str, Any]  # a top-level program's tok: the response its client got


def layer_of(service: str) -> int | None:
    return int(service[6:]) if service.startswith("Interp") and service[6:].isdigit() else None


def _program_of(model: Model, completion: dict[str, Any] | None) -> str | None:
    """The program an Interp invocation's completion names."""
    if completion is None:
        return None
    if "failure" in completion:
        return model.failures.get(completion["failure"]["message"])
    value = completion.get("value")
    tok = value.get("tok") if isinstance(value, dict) else None
    return tok if isinstance(tok, str) else None


def _order_problems(model: Model, where: Where, log: Any) -> list[str]:
    label = f"Interp{where[0]}/{where[1]}"
    if not isinstance(log, list) or not all(isinstance(e, list) and len(e) == 3 for e in log):
        return [f"{label}: its order log is not a list of [caller, seq, tok]: {log!r}"]
    entries = [tuple(e) for e in log]
    expected = model.order.get(where, Counter())
    found = Counter(entries)
    problems = []
    if found != expected:
        missing, extra = expected - found, found - expected
        problems.append(
            f"{label}: programs run on it differ from the model: missing {sorted(missing)}, "
            f"extra (or run twice) {sorted(extra)}"
        )
    last: dict[str, tuple[int, str]] = {}
    for caller, seq, tok in entries:
        if tok not in model.ordered:
            continue
        if caller in last and last[caller][0] >= seq:
            problems.append(
                f"{label}: {caller}'s calls ran out of the order issued: {tok} (#{seq}) ran "
                f"after {last[caller][1]} (#{last[caller][0]})"
            )
        last[caller] = (seq, tok)
    return problems


def compare(model: Model, seen: Observed) -> list[str]:
    """Every difference between what the runtime has and what the model says it must have."""
    problems = []
    for where in sorted(set(seen.states) | set(model.state)):
        actual = dict(seen.states.get(where, {}))
        log = actual.pop("order", [])
        expected = model.state.get(where, {})
        if actual != expected:
            names = sorted(
                n for n in set(actual) | set(expected) if actual.get(n) != expected.get(n)
            )
            diff = ", ".join(f"{n}: {actual.get(n)!r}, model {expected.get(n)!r}" for n in names)
            problems.append(f"Interp{where[0]}/{where[1]}: state differs: {diff}")
        problems += _order_problems(model, where, log)
    ran: dict[str, list[dict[str, Any]]] = {}
    resolvers = Counter()
    for inv in seen.invocations:
        if inv["service"] == "Resolver":
            resolvers[
                inv["status"] == "completed" and "failure" not in (inv["completion"] or {})
            ] += 1
            continue
        if inv["status"] != "completed":
            problems.append(f"{inv['id']} ({inv['target']}) is {inv['status']}, not completed")
            continue
        tok = _program_of(model, inv["completion"])
        if tok is None:
            problems.append(f"{inv['id']} ({inv['target']}, {inv['status']}) names no program")
            continue
        ran.setdefault(tok, []).append(inv)
    for tok, where in sorted(model.where.items()):
        found = ran.pop(tok, [])
        if len(found) != 1:
            ids = [i["id"] for i in found]
            problems.append(f"program {tok} completed as {len(found)} invocations, not 1: {ids}")
            continue
        (inv,) = found
        if (layer_of(inv["service"]), inv["key"]) != where:
            problems.append(
                f"program {tok} ran on {inv['target']}, not Interp{where[0]}/{where[1]}"
            )
        if inv["completion"] != model.results[tok]:
            problems.append(
                f"program {tok} ({inv['id']}) completed {inv['completion']!r}, model "
                f"{model.results[tok]!r}"
            )
    problems += [f"invocations of no program: {sorted(ran)}"] * bool(ran)
    if resolvers != Counter({True: model.resolvers} if model.resolvers else {}):
        problems.append(
            f"Resolver: {resolvers[True]} invocations succeeded and {resolvers[False]} did not; "
            f"the model made {model.resolvers}"
        )
    for root in model.roots:
        expected = model.results[root.tok]["value"]
        if root.tok not in seen.answers:
            problems.append(f"program {root.tok}: its client never got an answer")
        elif seen.answers[root.tok] != expected:
            problems.append(
                f"program {root.tok}: its client got {seen.answers[root.tok]!r}, model {expected!r}"
            )
    return problems
