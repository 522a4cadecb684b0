"""The same ``Bench`` service as bench/services.py, written against Restate's Python SDK
(``restate-sdk``), for the side-by-side run in bench/peer_restate.sh.

    python -m hypercorn --config bench/.cache/hypercorn.toml bench.restate_services:app
"""

import restate

bench = restate.Service("Bench")


async def _step(i: int) -> int:
    # Async, like bench/services.py: a sync callable would run in a worker thread.
    return i


@bench.handler()
async def noop(ctx: restate.Context) -> None:
    return None


@bench.handler()
async def steps(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", _step, restate.RunOptions(), i)
    return n


app = restate.app(services=[bench])
