"""Parsing the delays clients pass (``?delay=``): the forms Restate's ingress accepts.

>>> parse_duration_ms("500ms"), parse_duration_ms("10s"), parse_duration_ms("1h 30m")
(500, 10000, 5400000)
>>> parse_duration_ms("PT10S"), parse_duration_ms("P1DT2H"), parse_duration_ms("250")
(10000, 93600000, 250)
"""

from __future__ import annotations

import re

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
_HUMAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


class DurationError(ValueError):
    pass


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration: humantime (``10s``, ``1h 30m``, ``500ms``), ISO 8601
    (``PT10S``), or a bare number of milliseconds."""
    text = text.strip()
    if not text:
        raise DurationError("empty duration")
    if text.isdigit():
        return int(text)
    iso = _ISO.match(text)
    if iso and text.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        factors = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
        return int(sum(factors[k] * v for k, v in parts.items()))
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
    return int(total)


__all__ = ["DurationError", "parse_duration_ms"]
