"""Argument parsers shared by the commands: counts, durations, keywords.

They accept what people really type in French (`2h`, `30 min`, `1j`, `2 jours`, `1 semaine`,
`1h30`) and raise UsageError with a short French reason, so a typo gets the usage line and
never reaches the LLM.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from bot.french import fold
from commands.base import UsageError

MAX_SUMMARY_MESSAGES = 5000
MAX_SUMMARY_WINDOW = timedelta(days=30)

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY

# Unit words, accent-free and lower-case, to their length in seconds.
_UNITS: dict[str, int] = {
    **dict.fromkeys(("s", "sec", "seconde", "secondes", "second", "seconds"), 1),
    **dict.fromkeys(("m", "mn", "min", "mins", "minute", "minutes"), _MINUTE),
    **dict.fromkeys(("h", "hr", "hrs", "heure", "heures", "hour", "hours"), _HOUR),
    **dict.fromkeys(("j", "jr", "jrs", "jour", "jours", "d", "day", "days"), _DAY),
    **dict.fromkeys(("sem", "semaine", "semaines", "w", "wk", "week", "weeks"), _WEEK),
    **dict.fromkeys(("mois", "month", "months"), 30 * _DAY),
}
# After a number with this unit, a bare trailing number means the next smaller unit: `1h30`.
_NEXT_UNIT = {_HOUR: _MINUTE, _MINUTE: 1}
_COUNT_WORDS = {"message", "messages", "msg", "msgs"}

_PART = re.compile(r"\s*(\d+(?:[.,]\d+)?)\s*([a-z]*)\s*", re.ASCII)
# Words and signs between parts: `1h 30min`, `1 jour et 2 heures`, `1h+30`.
_SEPARATORS = re.compile(r"\bet\b|\+")


def parse_count(text: str, *, minimum: int = 1, maximum: int = MAX_SUMMARY_MESSAGES) -> int:
    """A whole number of messages within bounds."""
    cleaned = text.strip()
    if not cleaned.isascii() or not cleaned.isdigit():
        raise UsageError(f"« {cleaned} » n'est pas un nombre de messages")
    # Compare as text first: int() on a thousand-digit string is slow and useless.
    if len(cleaned.lstrip("0")) > len(str(maximum)) or int(cleaned) > maximum:
        raise UsageError(f"au plus {maximum} messages")
    value = int(cleaned)
    if value < minimum:
        raise UsageError(f"au moins {minimum} message" + ("s" if minimum > 1 else ""))
    return value


def parse_duration(text: str, *, maximum: timedelta = MAX_SUMMARY_WINDOW) -> timedelta:
    """`2h`, `30min`, `1j`, `45m`, `2 jours`, `1 semaine`, `1h30`, `1,5 h` → a positive duration."""
    cleaned = _SEPARATORS.sub(" ", fold(text)).strip()
    if not cleaned:
        raise UsageError("durée manquante")
    seconds = 0.0
    position = 0
    previous_unit: int | None = None
    while position < len(cleaned):
        match = _PART.match(cleaned, position)
        if match is None:
            raise UsageError(f"durée illisible : « {text.strip()} » (exemples : 2h, 30min, 1j)")
        number, word = match.groups()
        if word:
            unit = _UNITS.get(word)
            if unit is None:
                raise UsageError(f"unité inconnue : « {word} » (min, h, j, semaine)")
        elif previous_unit in _NEXT_UNIT:
            unit = _NEXT_UNIT[previous_unit]
        else:
            raise UsageError(f"précisez l'unité de « {number} » (exemples : 2h, 30min, 1j)")
        seconds += float(number.replace(",", ".")) * unit
        previous_unit = unit
        position = match.end()
    if not math.isfinite(seconds) or seconds > maximum.total_seconds():
        raise UsageError(f"durée trop longue (au plus {_describe(maximum)})")
    if seconds < 60:
        raise UsageError("durée trop courte (au moins 1 minute)")
    return timedelta(seconds=round(seconds))


def _describe(duration: timedelta) -> str:
    days = duration.days
    if days and duration.seconds == 0:
        return f"{days} jour" + ("s" if days > 1 else "")
    return f"{int(duration.total_seconds() // 60)} minutes"


@dataclass(frozen=True)
class CountOrDuration:
    """Either the last `count` messages or a time window; neither means the command's default."""

    count: int | None = None
    duration: timedelta | None = None

    @property
    def is_default(self) -> bool:
        return self.count is None and self.duration is None


def parse_count_or_duration(
    text: str,
    *,
    max_count: int = MAX_SUMMARY_MESSAGES,
    max_duration: timedelta = MAX_SUMMARY_WINDOW,
) -> CountOrDuration:
    """`` → default, `200` or `200 messages` → a count, `2h` / `2 jours` → a duration."""
    cleaned = fold(text)
    if not cleaned:
        return CountOrDuration()
    if cleaned.startswith("-"):
        raise UsageError("un nombre positif est attendu")
    number, _, rest = cleaned.partition(" ")
    if number.isascii() and number.isdigit() and (not rest or rest.strip() in _COUNT_WORDS):
        return CountOrDuration(count=parse_count(number, maximum=max_count))
    return CountOrDuration(duration=parse_duration(text, maximum=max_duration))


def parse_keyword(text: str, choices: dict[str, str], *, what: str) -> str | None:
    """One optional keyword among `choices` (folded word → meaning); empty text → None."""
    cleaned = fold(text)
    if not cleaned:
        return None
    try:
        return choices[cleaned]
    except KeyError:
        expected = ", ".join(sorted(set(choices)))
        raise UsageError(f"{what} inconnu : « {text.strip()} » (possible : {expected})") from None
