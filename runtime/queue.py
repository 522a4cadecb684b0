"""The work queue on AWS: the effect scheduler as SQS messages, and what a message means.

A message says *drive this invocation* or *fire this timer*; the store stays the truth, so a
duplicate does nothing (the invocation is not ready any more, the timer has fired) and a lost
one is found by the sweep. A timer due within SQS's longest delay (15 minutes) is sent with
``DelaySeconds`` rounded up, so it is never early: a message that still arrives early (clock
skew) finds the store refusing to fire the timer, which is sent again for the time left. Timers
further out wait in the store, where the sweep finds them as they come within 15 minutes
(:func:`sweep_timers`).

>>> message_body(Drive("inv_1"))
'{"drive":"inv_1"}'
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tarry.clock import Clock

from .store import Timer

log = logging.getLogger("tarry.runtime.queue")

MAX_DELAY_MS = 15 * 60 * 1000  # SQS DelaySeconds: at most 900
_BATCH = 10  # SendMessageBatch: at most 10 entries


@dataclass(frozen=True)
class Drive:
    invocation_id: str


@dataclass(frozen=True)
class Fire:
    timer: Timer


Message = Drive | Fire


def message_body(message: Message) -> str:
    if isinstance(message, Drive):
        body: dict[str, Any] = {"drive": message.invocation_id}
    else:
        t = message.timer
        body = {"timer": [t.invocation_id, t.kind, t.index, t.fire_at]}
    return json.dumps(body, separators=(",", ":"))


class BadMessage(ValueError):
    """A message that is not one of ours: it is dropped (logged), never retried."""


def parse_message(body: str) -> Message:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("drive"), str):
            return Drive(data["drive"])
        if isinstance(data, dict) and "timer" in data:
            invocation_id, kind, index, fire_at = data["timer"]
            if kind not in ("sleep", "start", "retry"):
                raise ValueError(kind)
            return Fire(Timer(int(fire_at), kind, str(invocation_id), int(index)))
    except (ValueError, TypeError) as exc:
        raise BadMessage(f"not a tarry message: {body[:200]!r}") from exc
    raise BadMessage(f"not a tarry message: {body[:200]!r}")


def delay_seconds(fire_at: int, now: int) -> int | None:
    """The ``DelaySeconds`` that delivers a timer no earlier than ``fire_at``; ``None`` if it is
    further out than SQS delays (the sweep sends it later)."""
    wait = fire_at - now
    if wait > MAX_DELAY_MS:
        return None
    return max(0, math.ceil(wait / 1000))


class QueueScheduler:
    """The :class:`~tarry.runtime.effects.Scheduler` on AWS: every effect is an SQS message on
    the work queue, sent before the write's caller goes on (nothing waits in memory)."""

    def __init__(self, client: Any, queue_url: str, clock: Clock) -> None:
        self._client = client  # an aioboto3 SQS client
        self.queue_url = queue_url
        self._clock = clock
        self.sent = 0  # messages this scheduler sent

    async def drive(self, invocation_ids: Sequence[str]) -> None:
        await self._send([(message_body(Drive(i)), 0) for i in dict.fromkeys(invocation_ids)])

    async def arm(self, timers: Sequence[Timer]) -> None:
        now = self._clock.now_ms()
        entries = []
        for timer in timers:
            delay = delay_seconds(timer.fire_at, now)
            if delay is not None:  # else: the sweep sends it when it is 15 minutes away
                entries.append((message_body(Fire(timer)), delay))
        await self._send(entries)

    async def _send(self, entries: list[tuple[str, int]]) -> None:
        for start in range(0, len(entries), _BATCH):
            batch = [
                {"Id": uuid.uuid4().hex, "MessageBody": body, "DelaySeconds": delay}
                for body, delay in entries[start : start + _BATCH]
            ]
            reply = await self._client.send_message_batch(QueueUrl=self.queue_url, Entries=batch)
            failed = reply.get("Failed") or []
            if failed:  # nothing is dropped silently: the caller fails, and is retried
                reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
                raise QueueError(f"SQS refused {len(failed)} of {len(batch)} messages: {reasons}")
            self.sent += len(batch)


class QueueError(Exception):
    """The work queue did not take a message."""


def sweep_timers(due: Sequence[Timer], now: int, period_ms: int) -> list[Timer]:
    """Of the timers due within 15 minutes of ``now`` (as a sweep every ``period_ms`` reads
    them), those to send now: the ones that came within SQS's delay since about the last two
    sweeps (so one missed sweep loses nothing), and the ones already due (their message was
    lost, or never sent). The others are on their way already; sending them again would only
    cost a message."""
    entering = now + MAX_DELAY_MS - 2 * period_ms
    return [t for t in due if t.fire_at <= now or t.fire_at > entering]


__all__ = [
    "MAX_DELAY_MS",
    "BadMessage",
    "Drive",
    "Fire",
    "Message",
    "QueueError",
    "QueueScheduler",
    "delay_seconds",
    "message_body",
    "parse_message",
    "sweep_timers",
]
