"""The runtime's worker function, made to die now and then in the middle of an invocation: with
probability ``CRASH_RATE`` an invocation arms a timer that SIGKILLs the function's own process
within ``CRASH_WITHIN_S`` seconds, while it drives what its messages say. Each crash is noted
first (one line in ``CRASH_LOG``), so a test knows it happened. Deployed in place of the
worker's handler by tests/integration/test_aws_stack.py.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

from tarry.lambda_adapter.aws import worker


def _die() -> None:
    with Path(os.environ["CRASH_LOG"]).open("a") as log:
        log.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if random.random() < float(os.environ.get("CRASH_RATE", "0")):
        delay = random.uniform(0, float(os.environ.get("CRASH_WITHIN_S", "0.3")))
        threading.Timer(delay, _die).start()
    return worker(event, context)
