"""A step that a test kills its handler process in the middle of, at an exact point, for
tests/fault/test_handler_kill.py. Served by `tarry dev` (runtime and handler in one process) or
by uvicorn (`tests.apps.killpoints:app`, an HTTP deployment).

``KILL_DIR`` holds the files it shares with the test:

- ``armed``: while it exists, a step stops at its point and waits there, for the test's SIGKILL.
  The points: ``body`` (while the body runs), ``before-store`` (the body returned; its result is
  about to be appended to the journal), ``after-store`` (the result is stored, the handler has
  not gone on). The test removes it before it starts the process again;
- ``bodies``: a line per run of a body, its label (the count the test checks);
- ``stopped``: a line per step that reached its point (so the test kills only once all have).

The two points around the append are reached by wrapping the SDK's checkpoint append (the one
every channel goes through: the HTTP route, in-process, a Lambda function's table): a test hook
in the test's own app, not in the SDK.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import tarry
from tarry._attempt import Attempt
from tarry.protocol import CheckpointChannel, Command, Completion

DIR = Path(os.environ.get("KILL_DIR", "."))
WAIT_S = 60.0  # a stopped step goes on after this long, if nobody killed it


def _line(name: str, text: str) -> None:
    with (DIR / name).open("a") as f:
        f.write(text + "\n")


async def _stop_here(label: str) -> None:
    """Wait at this point while the test has the steps armed (it kills the process meanwhile)."""
    if not (DIR / "armed").exists():
        return
    _line("stopped", label)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + WAIT_S
    while (DIR / "armed").exists() and loop.time() < give_up:
        await asyncio.sleep(0.02)


def _point_of(completions: dict[str, Completion]) -> dict[str, str] | None:
    """The step result among ``completions`` that names a point around its append."""
    for completion in completions.values():
        value = completion.get("value")
        if isinstance(value, dict) and value.get("point") in ("before-store", "after-store"):
            return value
    return None


_append = Attempt._append


async def _append_with_points(
    self: Attempt,
    channel: CheckpointChannel,
    commands: list[Command],
    completions: dict[str, Completion],
) -> bool:
    step = _point_of(completions)
    if step is not None and step["point"] == "before-store":
        await _stop_here(step["label"])
    stored = await _append(self, channel, commands, completions)
    if step is not None and step["point"] == "after-store":
        await _stop_here(step["label"])
    return stored


Attempt._append = _append_with_points  # type: ignore[method-assign]


kills = tarry.Service("KillPoints")


@kills.handler()
async def step(ctx: tarry.Context, spec: dict[str, Any]) -> str:
    """One step, stopped at ``spec["point"]`` while armed; at most once if ``spec["once"]``.
    Returns how the step ended: ``stored`` or ``interrupted``."""
    label = f"{spec['point']}/{'once' if spec['once'] else 'plain'}"

    async def body() -> dict[str, str]:
        _line("bodies", label)
        if spec["point"] == "body":
            await _stop_here(label)
        return {"label": label, "point": spec["point"]}

    try:
        await ctx.run("work", body, at_most_once=spec["once"])
    except tarry.StepInterrupted:
        return "interrupted"
    return "stored"


app = tarry.app([kills])
