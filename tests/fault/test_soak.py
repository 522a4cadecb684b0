"""The runtime-kill soak (tests/soak/kill.py) at a small size, on every store: Counter.add
calls over 8 keys, each with its own idempotency key and retried until answered, while the
runtime is SIGKILLed (three or four times, mid-work) and restarted. Every invariant of the
soak's model holds. On DynamoDB the lease is ten minutes, longer than the calls may wait: the
work a killed runtime had can only finish because the restarted one takes it over at once.

The long version: ``./scripts/soak.sh kill --keys 30 --adds 100`` (``--help`` for its flags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.kill import Config, run

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
def test_every_invariant_holds_while_the_runtime_is_killed_again_and_again(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    table = request.getfixturevalue("table") if store == "dynamodb" else None
    config = Config(
        store=store,
        keys=8,
        adds=20,
        in_flight=2,
        kill_every=(0.5, 3.0),
        min_kills=3,
        max_kills=4,
        seed=11,
        lease="10m",
        call_timeout=60,
    )
    report = run(config, tmp_path / "soak", table)
    print(report.summary())  # the numbers, with -s or on failure
    assert report.ok, report.summary()
    assert report.kills >= 3 and len(report.calls) == 160
