"""Store-fault soak: the load of ``tests/fault/test_store_chaos.py`` (Counter.add with
idempotency keys from clients that retry on 503, step chains with sleeps, awakeables resolved
from outside), bigger and for many seeds, while the store meets lost answers, throttling,
transaction conflicts and outages (:mod:`tests.fault.faulty_store`).

Each round runs an in-process runtime on a fresh store and checks, once the faults stop: every
counter equals its adds and answered each add in turn, one invocation per idempotency key and
none besides, journals without gaps or duplicates (each handler's entries exactly), every
invocation completed with the value its model gives. A failed round prints its seed;
``--seed S --rounds 1`` runs it again.

    python -m tests.soak store-chaos --store sqlite --rounds 20 --keys 20 --adds 30
    python -m tests.soak store-chaos --store dynamodb --lost 0.3 --conflict 0.2  # DynamoDB Local
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.fault.faulty_store import Faults, FaultyStore
from tests.fault.test_store_chaos import Load, faulty_inner, run_load


def parse(argv: list[str]) -> tuple[argparse.Namespace, Load]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak store-chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--store", choices=["sqlite", "dynamodb", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per store (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="the first round's seed (then +1)")
    parser.add_argument("--verbose", action="store_true", help="show the runtime's log")
    defaults = Load()
    for field in dataclasses.fields(Load):
        value = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(value),
            default=value,
            help=f"(default {value})",
        )
    args = parser.parse_args(argv)
    load = Load(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Load)})
    return args, load


async def one_round(store: str, seed: int, load: Load, where: Path) -> tuple[bool, str]:
    faults = Faults(seed, lost=load.lost, throttle=load.throttle, conflict=load.conflict)
    began = time.monotonic()
    try:
        async with faulty_inner(store, where, faults) as inner:
            await run_load(FaultyStore(inner, faults), faults, load)
    except AssertionError as exc:
        return False, f"{store} seed {seed}: FAILED after {time.monotonic() - began:.1f} s: {exc}"
    injected = ", ".join(f"{kind} {n}" for kind, n in sorted(faults.injected.items()))
    return True, f"{store} seed {seed}: ok in {time.monotonic() - began:.1f} s ({injected})"


def main(argv: list[str]) -> int:
    args, load = parse(argv)
    # the runtime logs every fault it meets; the summary says what the faults did
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    stores = ["sqlite", "dynamodb"] if args.store == "both" else [args.store]
    if "dynamodb" in stores and not (
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    ):
        print("dynamodb needs AWS_ENDPOINT_URL_DYNAMODB (scripts/soak.sh starts DynamoDB Local)",
              file=sys.stderr)  # fmt: skip
        return 2
    print(
        f"tarry soak store-chaos: {load.keys} keys x {load.adds} adds, {load.chains} chains, "
        f"{load.holds} awakeables; lost {load.lost:g}, throttled {load.throttle:g}, conflicts "
        f"{load.conflict:g} per call; {load.outages} outages of {load.outage_s:g} s; "
        f"{args.rounds} rounds per store from seed {args.seed}"
    )
    failed = 0
    for store in stores:
        for seed in range(args.seed, args.seed + args.rounds):
            with tempfile.TemporaryDirectory(prefix="tarry-soak-") as where:
                ok, line = asyncio.run(one_round(store, seed, load, Path(where)))
            failed += not ok
            print(f"  {line}", flush=True)
    total = args.rounds * len(stores)
    print(f"{total - failed} of {total} rounds held every invariant")
    return 1 if failed else 0


__all__ = ["main"]
