"""`!resume` arguments: what people type in French, and the window it means in Paris time.

Parsing is pure and needs no clock: `parse_resume` turns the text into `ResumeArgs` (a count, a
duration, or a calendar form such as `hier`, `depuis lundi`, `depuis 9h`, `12/11`,
`12/11-15/11`), plus the `fil` and `en privé` modifiers. `resolve_dates` then turns a calendar
form into a [start, end) interval against a given "now". Both raise UsageError with a short
French reason, so a typo never reaches the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from bot import texts
from bot.french import fold
from commands.arguments import MAX_SUMMARY_MESSAGES, parse_count_or_duration
from commands.base import UsageError

_WEEKDAYS = {
    **dict.fromkeys(("lundi", "lun"), 0),
    **dict.fromkeys(("mardi", "mar"), 1),
    **dict.fromkeys(("mercredi", "mer"), 2),
    **dict.fromkeys(("jeudi", "jeu"), 3),
    **dict.fromkeys(("vendredi", "ven"), 4),
    **dict.fromkeys(("samedi", "sam"), 5),
    **dict.fromkeys(("dimanche", "dim"), 6),
}
_PRIVATE = re.compile(r"(?:^|\s)(?:en\s+)?prive(?=\s|$)")
_THREAD = re.compile(r"(?:^|\s)(?:le\s+)?fil(?=\s|$)")
_DATE = r"(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?"
_ONE_DATE = re.compile(rf"^(?:le\s+)?{_DATE}$")
_RANGE = re.compile(rf"^(?:du\s+)?{_DATE}\s*(?:-|au|a)\s*{_DATE}$")
_CLOCK = re.compile(r"^(\d{1,2})\s*(?:h|:)\s*(\d{2})?$")


class DateKind(StrEnum):
    DAY = "day"  # one whole day
    SINCE_DAY = "since_day"  # from a day's midnight until now
    SINCE_TIME = "since_time"  # from the latest past occurrence of a clock time
    RANGE = "range"  # from the first day's midnight to the end of the last day


@dataclass(frozen=True)
class DayRef:
    """A day as typed: a date (`12/11`, year optional), an offset (`hier` = -1) or a weekday."""

    day: int = 0
    month: int = 0
    year: int | None = None
    days_ago: int | None = None
    weekday: int | None = None

    def resolve(self, today: date) -> date:
        """The day meant, never in the future: `12/11` is the latest 12 November up to today."""
        if self.days_ago is not None:
            return today - timedelta(days=self.days_ago)
        if self.weekday is not None:
            return today - timedelta(days=(today.weekday() - self.weekday) % 7)
        if self.year is not None:
            found = _valid(self.year, self.month, self.day)
            if found > today:
                raise UsageError(f"le {found:%d/%m/%Y} n'est pas encore arrivé")
            return found
        year = today.year
        while True:
            try:
                found = date(year, self.month, self.day)
            except ValueError:  # 29/02 outside a leap year: the latest leap year's
                year -= 1
                continue
            if found <= today:
                return found
            year -= 1


@dataclass(frozen=True)
class DateForm:
    kind: DateKind
    first: DayRef | None = None
    last: DayRef | None = None
    hour: int = 0
    minute: int = 0


@dataclass(frozen=True)
class ResumeArgs:
    """What `!resume` was asked; no window at all means "since you last read"."""

    count: int | None = None
    duration: timedelta | None = None
    dates: DateForm | None = None
    thread: bool = False
    private: bool = False

    @property
    def is_default(self) -> bool:
        return self.count is None and self.duration is None and self.dates is None


@dataclass(frozen=True)
class Interval:
    """[start, end) in Paris time; `end` None means up to the command."""

    start: datetime
    end: datetime | None


def _valid(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise UsageError(f"date inconnue : {day:02d}/{month:02d}") from None


def _day_ref(day: str, month: str, year: str | None) -> DayRef:
    full_year = None
    if year is not None:
        full_year = int(year) + 2000 if len(year) == 2 else int(year)
    ref = DayRef(day=int(day), month=int(month), year=full_year)
    _valid(full_year or 2024, ref.month, ref.day)  # 2024 is a leap year: 29/02 is a date
    return ref


def _named_day(word: str) -> DayRef | None:
    if word in ("aujourd'hui", "aujourdhui", "auj"):
        return DayRef(days_ago=0)
    if word == "hier":
        return DayRef(days_ago=1)
    if word in ("avant-hier", "avant hier"):
        return DayRef(days_ago=2)
    if word in _WEEKDAYS:
        return DayRef(weekday=_WEEKDAYS[word])
    match = _ONE_DATE.match(word)
    if match:
        return _day_ref(*match.groups())
    return None


def parse_dates(text: str) -> DateForm | None:
    """A French calendar form (already folded), or None when the text is not one."""
    if text in ("cette semaine", "la semaine"):
        return DateForm(DateKind.SINCE_DAY, first=DayRef(weekday=0))
    if text.startswith("depuis "):
        rest = text.removeprefix("depuis ").strip()
        rest = rest.removeprefix("ce ").removeprefix("le ").strip()
        clock = _CLOCK.match(rest)
        if clock:
            hour, minute = int(clock.group(1)), int(clock.group(2) or 0)
            if hour > 23 or minute > 59:
                raise UsageError(f"heure inconnue : « {rest} »")
            return DateForm(DateKind.SINCE_TIME, hour=hour, minute=minute)
        if rest == "matin":
            return DateForm(DateKind.SINCE_TIME, hour=0)
        day = _named_day(rest)
        if day is None:
            raise UsageError(f"date inconnue : « {rest} » (exemples : hier, lundi, 9h, 12/11)")
        return DateForm(DateKind.SINCE_DAY, first=day)
    range_match = _RANGE.match(text)
    if range_match:
        groups = range_match.groups()
        return DateForm(DateKind.RANGE, first=_day_ref(*groups[:3]), last=_day_ref(*groups[3:]))
    day = _named_day(text.removeprefix("le ").strip())
    if day is not None:
        return DateForm(DateKind.DAY, first=day)
    return None


def parse_resume(text: str) -> ResumeArgs:
    """`[N | durée | date] [fil] [en privé]` in any order of the modifiers."""
    cleaned = " ".join(fold(text.replace("’", "'")).split())
    private = bool(_PRIVATE.search(cleaned))
    cleaned = _PRIVATE.sub(" ", cleaned)
    thread = bool(_THREAD.search(cleaned))
    cleaned = " ".join(_THREAD.sub(" ", cleaned).split())
    if not cleaned:
        return ResumeArgs(thread=thread, private=private)
    dates = parse_dates(cleaned)
    if dates is not None:
        return ResumeArgs(dates=dates, thread=thread, private=private)
    if _looks_like_date(cleaned):
        raise UsageError(
            f"date inconnue : « {text.strip()} » (exemples : hier, 12/11, 12/11-15/11)"
        )
    if not any(char.isdigit() for char in cleaned):
        raise UsageError(
            f"« {text.strip()} » n'est ni un nombre, ni une durée, ni une date "
            "(exemples : 50, 2h, hier, depuis lundi, depuis 9h, 12/11)"
        )
    window = parse_count_or_duration(cleaned, max_count=MAX_SUMMARY_MESSAGES)
    return ResumeArgs(count=window.count, duration=window.duration, thread=thread, private=private)


def _looks_like_date(text: str) -> bool:
    return "/" in text or text.startswith(("le ", "du ", "depuis"))


def _midnight(day: date, zone: datetime) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone.tzinfo)


def resolve_dates(form: DateForm, now: datetime) -> Interval:
    """The interval a calendar form means at `now` (an aware datetime in Paris time)."""
    today = now.date()
    if form.kind is DateKind.SINCE_TIME:
        start = datetime.combine(today, time(form.hour, form.minute), tzinfo=now.tzinfo)
        if start > now:
            start -= timedelta(days=1)  # `depuis 18h` at 9:00: yesterday evening
        return Interval(start, None)
    assert form.first is not None
    first = form.first.resolve(today)
    if form.kind is DateKind.SINCE_DAY:
        return Interval(_midnight(first, now), None)
    if form.kind is DateKind.DAY:
        return Interval(_midnight(first, now), _midnight(first + timedelta(days=1), now))
    assert form.last is not None
    last_ref = form.last
    if last_ref.year is None:
        last = _valid(first.year, last_ref.month, last_ref.day)
    else:
        last = _valid(last_ref.year, last_ref.month, last_ref.day)
    if last < first:
        raise UsageError(f"période inversée : le {last:%d/%m} est avant le {first:%d/%m}")
    return Interval(_midnight(first, now), _midnight(last + timedelta(days=1), now))


def _day_label(day: date) -> str:
    return f"{texts.WEEKDAYS[day.weekday()]} {day:%d/%m}"


def describe(form: DateForm, interval: Interval, now: datetime) -> str:
    """The window in words for the reply's header: `hier, dimanche 29/11`, `depuis 9h00`."""
    start = interval.start.date()
    if form.kind is DateKind.SINCE_TIME:
        clock = f"{interval.start.hour}h{interval.start.minute:02d}"
        if start < now.date():
            return texts.SUMMARY_WINDOW_SINCE_TIME_YESTERDAY.format(time=clock)
        return texts.SUMMARY_WINDOW_SINCE_TIME.format(time=clock)
    if form.kind is DateKind.SINCE_DAY:
        return texts.SUMMARY_WINDOW_SINCE_DAY.format(day=_day_label(start))
    if form.kind is DateKind.DAY:
        if start == now.date():
            return texts.SUMMARY_WINDOW_TODAY
        if start == now.date() - timedelta(days=1):
            return texts.SUMMARY_WINDOW_YESTERDAY.format(day=_day_label(start))
        return texts.SUMMARY_WINDOW_DAY.format(day=_day_label(start))
    assert interval.end is not None
    last = interval.end.date() - timedelta(days=1)
    return texts.SUMMARY_WINDOW_RANGE.format(first=_day_label(start), last=_day_label(last))
