"""The delay formats Restate's ingress accepts (``?delay=``)."""

import pytest

from tarry.limits import MAX_DELAY_MS
from tarry.runtime.durations import DurationError, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("1h 30m", 5_400_000),
        ("1h30m", 5_400_000),
        ("2 minutes", 120_000),
        ("1.5s", 1_500),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
        ("10S", 10_000),
        ("  10s  ", 10_000),
        ("PT10S", 10_000),
        ("pt10s", 10_000),
        ("PT0.5S", 500),
        ("PT1M30S", 90_000),
        ("P1DT2H", 93_600_000),
        ("P2W", 1_209_600_000),
        ("250", 250),
        ("0", 0),
        ("10µs", 0),
        ("1500us", 1),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "cannot read"),
        ("10 parsecs", "unknown unit 'parsecs'"),
        ("10s later", "cannot read"),
        ("10s 5", "cannot read"),
        ("-5s", "cannot read"),
        ("P", "cannot read"),
        ("PT", "cannot read"),
        ("P1H", "cannot read"),
    ],
)
def test_invalid_durations(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration_ms(text)
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\u0661\u0660s", "ASCII"),  # Arabic-Indic digits: str.isdigit and float() take them
        ("\u0661\u0660", "ASCII"),
        ("\uff11\uff10s", "ASCII"),  # fullwidth digits
        ("PT\uff11S", "ASCII"),
        ("9" * 5000, "too long"),  # more digits than int() converts
        ("9" * 400 + "d", "too long"),  # float('9' * 400) is inf
        ("99999999999999999999d", "maximum"),  # beyond what a timestamp holds
        ("P99999999999999999999D", "maximum"),
        ("36501d", "maximum"),
        (str(MAX_DELAY_MS + 1), "maximum"),
    ],
)
def test_durations_refused_before_they_overflow(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration_ms(text)


def test_the_maximum_delay_is_accepted() -> None:
    assert parse_duration_ms(str(MAX_DELAY_MS)) == MAX_DELAY_MS
    assert parse_duration_ms("36500d") == MAX_DELAY_MS
    assert parse_duration_ms("P36500D") == MAX_DELAY_MS
