"""Argument parsers: what people type in French, and everything that must be refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.arguments import (
    MAX_SUMMARY_MESSAGES,
    CountOrDuration,
    fold,
    parse_count,
    parse_count_or_duration,
    parse_duration,
    parse_keyword,
)
from commands.base import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("30min", timedelta(minutes=30)),
        ("45m", timedelta(minutes=45)),
        ("45 mn", timedelta(minutes=45)),
        ("1j", timedelta(days=1)),
        ("2 jours", timedelta(days=2)),
        ("2 JOURS", timedelta(days=2)),
        ("1 jour", timedelta(days=1)),
        ("1 semaine", timedelta(weeks=1)),
        ("2 semaines", timedelta(weeks=2)),
        ("3 heures", timedelta(hours=3)),
        ("1 heure", timedelta(hours=1)),
        ("1h30", timedelta(hours=1, minutes=30)),
        ("1h 30min", timedelta(hours=1, minutes=30)),
        ("1 jour et 2 heures", timedelta(days=1, hours=2)),
        ("1,5h", timedelta(minutes=90)),
        ("1.5 h", timedelta(minutes=90)),
        ("2 days", timedelta(days=2)),
        ("1 week", timedelta(weeks=1)),
        ("30 jours", timedelta(days=30)),
        ("1 mois", timedelta(days=30)),
        ("  2h  ", timedelta(hours=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "h",
        "2",  # no unit: a count, not a duration
        "2 bananes",
        "deux heures",
        "-2h",
        "0h",
        "0 min",
        "30s",  # below one minute
        "31 jours",  # above 30 days
        "5 semaines",
        "2 mois",
        "9" * 400 + "h",  # float overflow must not crash
        "99999999999999999999j",
        "2h; DROP TABLE",
        "١٢h",  # non-ASCII digits
        "1h30x",
    ],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_duration_maximum_is_configurable() -> None:
    assert parse_duration("3j", maximum=timedelta(days=3)) == timedelta(days=3)
    with pytest.raises(UsageError, match="au plus"):
        parse_duration("4j", maximum=timedelta(days=3))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("50", 50), ("200", 200), (" 007 ", 7), (str(MAX_SUMMARY_MESSAGES), 5000)],
)
def test_counts(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text", ["", "0", "000", "-5", "5001", "1e3", "12.5", "douze", "9" * 5000, "²", "٣"]
)
def test_bad_counts(text: str) -> None:
    with pytest.raises(UsageError):
        parse_count(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", CountOrDuration()),
        ("200", CountOrDuration(count=200)),
        ("200 messages", CountOrDuration(count=200)),
        ("2h", CountOrDuration(duration=timedelta(hours=2))),
        ("30min", CountOrDuration(duration=timedelta(minutes=30))),
        ("1j", CountOrDuration(duration=timedelta(days=1))),
        ("45m", CountOrDuration(duration=timedelta(minutes=45))),
        ("2 jours", CountOrDuration(duration=timedelta(days=2))),
        ("1 semaine", CountOrDuration(duration=timedelta(weeks=1))),
    ],
)
def test_count_or_duration(text: str, expected: CountOrDuration) -> None:
    assert parse_count_or_duration(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "-2h", "5001", "10000000", "abc", "2 3", "1 an"])
def test_bad_count_or_duration(text: str) -> None:
    with pytest.raises(UsageError):
        parse_count_or_duration(text)


def test_default_is_flagged() -> None:
    assert parse_count_or_duration("  ").is_default
    assert not parse_count_or_duration("3").is_default


def test_keywords_ignore_case_and_accents() -> None:
    choices = {"tout": "all", "all": "all"}
    assert parse_keyword("", choices, what="argument") is None
    assert parse_keyword("TOUT", choices, what="argument") == "all"
    assert fold(" Défaut ") == "defaut"
    with pytest.raises(UsageError, match="inconnu"):
        parse_keyword("rien", choices, what="argument")


@given(st.text(max_size=40))
def test_never_crashes(text: str) -> None:
    """Whatever is typed, the result is a valid window or a UsageError — nothing else."""
    try:
        parsed = parse_count_or_duration(text)
    except UsageError:
        return
    if parsed.count is not None:
        assert 1 <= parsed.count <= MAX_SUMMARY_MESSAGES
    if parsed.duration is not None:
        assert timedelta(minutes=1) <= parsed.duration <= timedelta(days=30)
