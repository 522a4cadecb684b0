"""The interpreter the fuzz drives (``tests/soak/fuzz.py``): virtual objects ``Interp0`` ..
``Interp{LAYERS-1}`` whose exclusive ``run`` handler executes a *program* with ctx operations,
and a ``Resolver`` service that completes awakeables.

A program is a JSON object ``{"tok", "caller", "seq", "ordered", "ops"}``: ``tok`` names it
(unique in a fuzz run), ``caller`` and ``seq`` say who issued it and in what order (recorded in
the key's ``order`` state, so the order one caller's calls ran in can be checked), and ``ops``
is a list of commands, each a JSON list headed by its name:

=============================  =================================================================
``["add", n]``                 state ``c`` += n
``["push", x]``                appends x to the program's own state ``p.{tok}`` (a list)
``["drop"]``                   clears ``p.{tok}``
``["peek"]``                   outputs ``p.{tok}`` (``None`` when cleared)
``["run", x]``                 outputs ``ctx.run``'s result, ``"{tok}:{x}"``
``["flaky", x, n]``            the same from a step that raises n times first (in this process)
``["sleep", ms]``              ``ctx.sleep``
``["call", layer, key, prog]`` ``object_call`` of ``Interp{layer}/{key}``: outputs its result,
                               or ``"err:{code}:{message}"``
``["send", layer, key, prog, ms]`` ``generic_send`` to it (delayed ``ms`` if > 0): not awaited
``["awk", how, x]``            an awakeable the ``Resolver`` completes — sent (``send``), called
                               (``call``), or rejected (``reject``) — outputs x or
                               ``"rejected:{code}:{x}"``; ``never``: nobody completes it
``["par", [op, ...]]``         ``run``/``sleep``/``call``/``awk`` ops awaited together
                               (``tarry.gather``): their outputs, or the first failure's
``["throw", msg]``             fails the invocation: ``TerminalError(msg, 418)``
=============================  =================================================================

The result is ``{"tok", "out"}``, ``out`` the outputs in program order. Calls go only to higher
layers, so no two invocations wait on each other's keys; programs are finite trees; every
awakeable but ``never`` is completed: every program terminates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import tarry
from tarry import Context, DurableFuture, ObjectContext, TerminalError

LAYERS = 5  # Interp0 .. Interp4: the fuzz's --depth is at most this
THROW_CODE = 418
REJECT_CODE = 409

resolver = tarry.Service("Resolver")


@resolver.handler()
async def complete(ctx: Context, order: dict[str, Any]) -> None:
    """Resolve (or reject) the awakeable ``order["id"]`` with ``order["value"]``."""
    if order.get("reject"):
        await ctx.reject_awakeable(order["id"], str(order["value"]), REJECT_CODE)
    else:
        await ctx.resolve_awakeable(order["id"], order["value"])


def step(tok: str, x: Any) -> str:
    return f"{tok}:{x}"


_failures: dict[tuple[str, int], int] = {}  # (invocation id, op index): failures so far


def flaky_step(invocation_id: str, index: int, times: int, tok: str, x: Any) -> str:
    """Raises a plain (retryable) exception ``times`` times in this process, then succeeds."""
    seen = _failures.get((invocation_id, index), 0)
    if seen < times:
        _failures[invocation_id, index] = seen + 1
        raise RuntimeError(f"flaky step {tok}#{index}: failure {seen + 1} of {times}")
    return step(tok, x)


class Interpreter:
    """One program's execution on ``ctx``."""

    def __init__(self, ctx: ObjectContext, program: dict[str, Any]) -> None:
        self.ctx = ctx
        self.tok: str = program["tok"]
        self.mine = f"p.{self.tok}"

    async def future(self, index: int, op: list[Any]) -> tuple[DurableFuture[Any], str]:
        """The future of an awaitable op, and how its failure is shown (``err`` or
        ``rejected``)."""
        ctx, name = self.ctx, op[0]
        if name == "run":
            return ctx.run(f"run-{index}", step, self.tok, op[1]), "err"
        if name == "flaky":
            args = (ctx.request().id, index, op[2], self.tok, op[1])
            fast = timedelta(milliseconds=10)
            return ctx.run(f"flaky-{index}", flaky_step, *args, initial_interval=fast), "err"
        if name == "sleep":
            return ctx.sleep(timedelta(milliseconds=op[1])), "err"
        if name == "call":
            _, layer, key, program = op
            return ctx.generic_call(f"Interp{layer}", "run", program, key=key), "err"
        if name == "awk":
            _, how, value = op
            awk_id, done = ctx.awakeable()
            order = {"id": awk_id, "value": value, "reject": how == "reject"}
            if how == "call":
                await ctx.service_call(complete, order)
            elif how != "never":
                ctx.service_send(complete, order)
            return done, "rejected"
        raise ValueError(f"not an awaitable op: {op!r}")

    async def output(self, index: int, op: list[Any]) -> Any:
        """Await one awaitable op: its output."""
        future, failed = await self.future(index, op)
        try:
            value = await future
        except TerminalError as exc:
            return f"{failed}:{exc.status_code}:{exc.message}"
        return None if op[0] == "sleep" else value

    async def par(self, index: int, ops: list[list[Any]]) -> Any:
        futures = [await self.future(index * 100 + i, op) for i, op in enumerate(ops)]
        try:
            values = await tarry.gather(*(f for f, _ in futures))
        except TerminalError:  # the first failure in argument order, as gather raises it
            for future, failed in futures:
                if (exc := _failure_of(future)) is not None:
                    return f"{failed}:{exc.status_code}:{exc.message}"
            raise
        return [None if op[0] == "sleep" else v for op, v in zip(ops, values, strict=True)]

    async def execute(self, program: dict[str, Any]) -> dict[str, Any]:
        ctx = self.ctx
        order = (await ctx.get("order")) or []
        order.append([program["caller"], program["seq"], self.tok])
        ctx.set("order", order)
        out: list[Any] = []
        for index, op in enumerate(program["ops"]):
            name = op[0]
            if name == "add":
                ctx.set("c", ((await ctx.get("c")) or 0) + op[1])
            elif name == "push":
                ctx.set(self.mine, [*((await ctx.get(self.mine)) or []), op[1]])
            elif name == "drop":
                ctx.clear(self.mine)
            elif name == "peek":
                out.append(await ctx.get(self.mine))
            elif name == "send":
                _, layer, key, sub, delay = op
                wait = timedelta(milliseconds=delay) if delay else None
                ctx.generic_send(f"Interp{layer}", "run", sub, key=key, delay=wait)
            elif name == "par":
                out.append(await self.par(index, op[1]))
            elif name == "throw":
                raise TerminalError(op[1], THROW_CODE)
            else:
                value = await self.output(index, op)
                if name != "sleep":
                    out.append(value)
        return {"tok": self.tok, "out": out}


def _failure_of(future: DurableFuture[Any]) -> TerminalError | None:
    try:
        future.result()
    except TerminalError as exc:
        return exc
    return None


def _layer(n: int) -> tarry.VirtualObject:
    obj = tarry.VirtualObject(f"Interp{n}")

    @obj.handler()
    async def run(ctx: ObjectContext, program: dict[str, Any]) -> dict[str, Any]:
        return await Interpreter(ctx, program).execute(program)

    return obj


app = tarry.app([resolver, *(_layer(n) for n in range(LAYERS))])
