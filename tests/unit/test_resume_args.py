"""`!resume` windows: every French date form, resolved exactly in Paris time (tables)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.french import PARIS
from commands.base import UsageError
from commands.resume_args import ResumeArgs, describe, parse_resume, resolve_dates

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=PARIS)  # a Wednesday


def at(day: int, month: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("hier", at(17, 11), at(18, 11), "hier, mardi 17/11"),
        ("Hier", at(17, 11), at(18, 11), "hier, mardi 17/11"),
        ("aujourd'hui", at(18, 11), at(19, 11), "aujourd'hui"),
        ("aujourd’hui", at(18, 11), at(19, 11), "aujourd'hui"),
        ("avant-hier", at(16, 11), at(17, 11), "le lundi 16/11"),
        ("lundi", at(16, 11), at(17, 11), "le lundi 16/11"),
        ("depuis lundi", at(16, 11), None, "depuis le lundi 16/11"),
        ("DEPUIS LUNDI", at(16, 11), None, "depuis le lundi 16/11"),
        ("depuis lun", at(16, 11), None, "depuis le lundi 16/11"),
        ("depuis mercredi", at(18, 11), None, "depuis le mercredi 18/11"),
        ("depuis jeudi", at(12, 11), None, "depuis le jeudi 12/11"),
        ("cette semaine", at(16, 11), None, "depuis le lundi 16/11"),
        ("depuis hier", at(17, 11), None, "depuis le mardi 17/11"),
        ("depuis 9h", at(18, 11, 9), None, "depuis 9h00"),
        ("depuis 9 h", at(18, 11, 9), None, "depuis 9h00"),
        ("depuis 9h30", at(18, 11, 9, 30), None, "depuis 9h30"),
        ("depuis 09:30", at(18, 11, 9, 30), None, "depuis 9h30"),
        ("depuis 14h", at(17, 11, 14), None, "depuis hier 14h00"),
        ("depuis ce matin", at(18, 11), None, "depuis 0h00"),
        ("12/11", at(12, 11), at(13, 11), "le jeudi 12/11"),
        ("le 12/11", at(12, 11), at(13, 11), "le jeudi 12/11"),
        ("12/11/2026", at(12, 11), at(13, 11), "le jeudi 12/11"),
        ("12/11/26", at(12, 11), at(13, 11), "le jeudi 12/11"),
        ("25/12", at(25, 12, year=2025), at(26, 12, year=2025), "le jeudi 25/12"),
        ("29/02", at(29, 2, year=2024), at(1, 3, year=2024), "le jeudi 29/02"),
        ("depuis le 12/11", at(12, 11), None, "depuis le jeudi 12/11"),
        ("depuis 12/11", at(12, 11), None, "depuis le jeudi 12/11"),
        ("12/11-15/11", at(12, 11), at(16, 11), "du jeudi 12/11 au dimanche 15/11"),
        ("12/11 - 15/11", at(12, 11), at(16, 11), "du jeudi 12/11 au dimanche 15/11"),
        ("du 12/11 au 15/11", at(12, 11), at(16, 11), "du jeudi 12/11 au dimanche 15/11"),
        ("12/11-12/11", at(12, 11), at(13, 11), "du jeudi 12/11 au jeudi 12/11"),
        # Summer time ends on 25/10/2026: the day has 25 hours, midnight stays midnight.
        ("24/10-25/10", at(24, 10), at(26, 10), "du samedi 24/10 au dimanche 25/10"),
    ],
)
def test_date_forms_resolve_to_paris_intervals(
    text: str, start: datetime, end: datetime | None, label: str
) -> None:
    args = parse_resume(text)
    assert args.dates is not None and args.count is None and args.duration is None
    interval = resolve_dates(args.dates, NOW)
    assert (interval.start, interval.end) == (start, end)
    assert interval.start.utcoffset() == start.utcoffset()
    assert describe(args.dates, interval, NOW) == label


def test_summer_time_range_is_exact_in_utc() -> None:
    args = parse_resume("24/10-25/10")
    assert args.dates is not None
    interval = resolve_dates(args.dates, NOW)
    assert interval.end is not None
    # 24 + 25 hours (aware datetimes of one zone subtract as wall time: compare timestamps)
    assert interval.end.timestamp() - interval.start.timestamp() == 49 * 3600
    assert interval.start.utcoffset() == timedelta(hours=2)
    assert interval.end.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ResumeArgs()),
        ("fil", ResumeArgs(thread=True)),
        ("le fil", ResumeArgs(thread=True)),
        ("en privé", ResumeArgs(private=True)),
        ("privé", ResumeArgs(private=True)),
        ("prive", ResumeArgs(private=True)),
        ("fil en privé", ResumeArgs(thread=True, private=True)),
        ("200", ResumeArgs(count=200)),
        ("200 messages privé", ResumeArgs(count=200, private=True)),
        ("2h", ResumeArgs(duration=timedelta(hours=2))),
        ("en privé 2 jours", ResumeArgs(duration=timedelta(days=2), private=True)),
        ("9h", ResumeArgs(duration=timedelta(hours=9))),  # a duration; `depuis 9h` is a time
    ],
)
def test_counts_durations_and_modifiers(text: str, expected: ResumeArgs) -> None:
    assert parse_resume(text) == expected


def test_modifiers_combine_with_dates() -> None:
    args = parse_resume("hier en privé")
    assert args.private and not args.thread and args.dates is not None
    args = parse_resume("fil depuis 9h")
    assert args.thread and not args.private and args.dates is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("n'importe quoi", "ni un nombre, ni une durée, ni une date"),
        ("32/11", "date inconnue : 32/11"),
        ("12/13", "date inconnue : 12/13"),
        ("29/02/2026", "date inconnue : 29/02"),
        ("12/11-", "date inconnue"),
        ("depuis mardi soir", "date inconnue : « mardi soir »"),
        ("depuis 25h", "heure inconnue"),
        ("depuis 9h75", "heure inconnue"),
        ("-3", "un nombre positif est attendu"),
        ("6000", "au plus 5000 messages"),
        ("2 ans", "unité inconnue"),
    ],
)
def test_bad_input_gets_a_french_reason(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse_resume(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("15/11-12/11", "période inversée : le 12/11 est avant le 15/11"),
        ("12/11/2027", "le 12/11/2027 n'est pas encore arrivé"),
    ],
)
def test_impossible_windows_are_refused_when_resolved(text: str, reason: str) -> None:
    args = parse_resume(text)
    assert args.dates is not None
    with pytest.raises(UsageError, match=reason):
        resolve_dates(args.dates, NOW)
