"""Parsing the delays clients pass (``?delay=``): the forms Restate's ingress accepts.

>>> parse_duration_ms("500ms"), parse_duration_ms("10s"), parse_duration_ms("1h 30m")
(500, 10000, 5400000)
>>> parse_duration_ms("PT10S"), parse_duration_ms("P1DT2H"), parse_duration_ms("250")
(10000, 93600000, 250)

Digits are ASCII digits only (``str.isdigit`` and ``float`` take Arabic-Indic and fullwidth ones
too), a duration is at most :data:`MAX_DURATION_CHARS` characters, and at most
:data:`~tarry.limits.MAX_DELAY_MS` (100 years), the same on every store:

>>> parse_duration_ms("36501d")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tarry.runtime.durations.DurationError: a delay of 3153686400000 ms is over the maximum of 100...
"""

from __future__ import annotations

import math
import re

from tarry.limits import MAX_DELAY_MS, delay_problem

_UNITS_MS = {
    "ns": 1e-6, "nsec": 1e-6,
    "us": 1e-3, "usec": 1e-3, "µs": 1e-3,
    "ms": 1, "msec": 1, "millis": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}  # fmt: skip
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_HUMAN = re.compile(rf"\s*({_NUMBER})\s*([a-zµ]+)\s*", re.IGNORECASE)
_ISO = re.compile(
    rf"^P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?$",
    re.IGNORECASE,
)
MAX_DURATION_CHARS = 64  # room for "1 week 2 days 3 hours ..."; not for thousands of digits


class DurationError(ValueError):
    pass


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration: humantime (``10s``, ``1h 30m``, ``500ms``), ISO 8601
    (``PT10S``), or a bare number of milliseconds."""
    text = text.strip()
    if not text:
        raise DurationError("empty duration")
    if len(text) > MAX_DURATION_CHARS:
        raise DurationError(
            f"the duration is too long ({len(text)} characters; at most {MAX_DURATION_CHARS})"
        )
    if any(c.isdigit() and not c.isascii() for c in text):
        raise DurationError(f"use ASCII digits (0-9) in a duration, not {text!r}")
    if text.isascii() and text.isdigit():
        return _checked(float(text), text)
    iso = _ISO.match(text)
    if iso and text.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        factors = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
        return _checked(sum(factors[k] * v for k, v in parts.items()), text)
    total = 0.0
    pos = 0
    for match in _HUMAN.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2).lower()
        if unit not in _UNITS_MS:
            raise DurationError(f"unknown unit {match.group(2)!r} in duration {text!r}")
        total += float(match.group(1)) * _UNITS_MS[unit]
        pos = match.end()
    if pos != len(text):
        raise DurationError(
            f"cannot read {text!r} as a duration (use e.g. 500ms, 10s, 1h 30m or PT10S)"
        )
    return _checked(total, text)


def _checked(ms: float, text: str) -> int:
    """``ms`` as a whole number of milliseconds, if it is within the maximum delay."""
    problem = delay_problem(ms) if math.isfinite(ms) else delay_problem(MAX_DELAY_MS + 1)
    if problem is not None:
        raise DurationError(problem)
    if text.isdigit():
        return int(text)  # exact, not through a float
    return int(ms)


__all__ = ["MAX_DURATION_CHARS", "DurationError", "parse_duration_ms"]
