"""Services the benchmark drives (``bash bench/run.sh``).

``Bench/noop`` measures the fixed cost of one invocation through the runtime: ingress, store,
invoker, the SDK's replay engine and back. ``Bench/steps`` adds ``n`` sequential ``ctx.run``
steps, so the difference between ``steps(10)`` and ``steps(1)`` is the cost of a journaled step.

    tarry dev bench/services.py --ingress-port 18080 --admin-port 19070
    curl 127.0.0.1:18080/Bench/steps --json 10
"""

import tarry

bench = tarry.Service("Bench")


async def _step(i: int) -> int:
    # Async on purpose: a sync callable runs in a worker thread, which would add a thread hop
    # to every step and measure the thread pool rather than the journal.
    return i


@bench.handler()
async def noop(ctx: tarry.Context) -> None:
    return None


@bench.handler()
async def steps(ctx: tarry.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(f"step-{i}", _step, i)
    return n


app = tarry.app([bench])
