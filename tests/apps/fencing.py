"""An object whose handler runs several steps, one of which stalls until the test lets it go:
for fencing, where the process running an attempt is frozen (SIGSTOP) past its lease or its
attempt timeout, another finishes the invocation, and the frozen one wakes up (served with
`tarry dev`, or by uvicorn as an HTTP deployment). Its files are in $FENCE_DIR: ``runs`` has a
line per run of a step's body (``step-I RUN PID``), and the RUN-th run of the stalling step
waits until the file ``go-RUN`` exists."""

import asyncio
import os
from pathlib import Path

import tarry

fence = tarry.VirtualObject("Fence")
STEPS = 3
STALLING = 1  # the step that waits for the test


def _dir() -> Path:
    return Path(os.environ["FENCE_DIR"])


def runs(directory: Path) -> list[tuple[str, int, int]]:
    """Every run of a step's body so far: (step, run of that step, pid)."""
    path = directory / "runs"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(step, int(n), int(pid)) for step, n, pid in (line.split() for line in lines)]


async def _step(i: int) -> str:
    step = f"step-{i}"
    n = 1 + sum(1 for s, _, _ in runs(_dir()) if s == step)
    with (_dir() / "runs").open("a") as f:
        f.write(f"{step} {n} {os.getpid()}\n")
    while i == STALLING and not (_dir() / f"go-{n}").exists():
        await asyncio.sleep(0.02)
    return f"{step} run {n} in {os.getpid()}"


@fence.handler()
async def run(ctx: tarry.ObjectContext) -> list[str]:
    """The steps, each result kept in the state as it comes; counts its own completions."""
    results = []
    for i in range(STEPS):
        result = await ctx.run(f"step-{i}", _step, i)
        ctx.set(f"step-{i}", result)
        results.append(result)
    ctx.set("completed", ((await ctx.get("completed")) or 0) + 1)
    return results


app = tarry.app([fence])
