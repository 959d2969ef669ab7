"""Scheduled commands: `"lun-ven 18:00"` specs in Europe/Paris time, and the loop that runs them.

A schedule is advanced in SQLite (compare-and-set on its next run) before its command is
queued, so a run happens at most once; the queued command is an ordinary trigger, so it also
happens at least once across a crash. A run missed while the bot was down is made up at start
only if it is less than an hour late.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from bot.french import PARIS, fold
from bot.store import Store
from bot.store.database import Schedule

log = structlog.get_logger(__name__)

MAX_LATENESS_MS = 3_600_000
IDLE_WAKE_SECONDS = 30.0

_DAY_NAMES = {
    "lun": 0, "lundi": 0, "mon": 0, "monday": 0,
    "mar": 1, "mardi": 1, "tue": 1, "tuesday": 1,
    "mer": 2, "mercredi": 2, "wed": 2, "wednesday": 2,
    "jeu": 3, "jeudi": 3, "thu": 3, "thursday": 3,
    "ven": 4, "vendredi": 4, "fri": 4, "friday": 4,
    "sam": 5, "samedi": 5, "sat": 5, "saturday": 5,
    "dim": 6, "dimanche": 6, "sun": 6, "sunday": 6,
}  # fmt: skip
_EVERY_DAY = {
    "tous-les-jours",
    "tous les jours",
    "quotidien",
    "chaque jour",
    "chaque-jour",
    "tlj",
    "daily",
    "every day",
}
_TIME = re.compile(r"^(\d{1,2})(?:[:h](\d{2})?)?$")


class ScheduleError(ValueError):
    """A spec the bot cannot understand; the message is French, for the moderator."""


@dataclass(frozen=True)
class ScheduleSpec:
    weekdays: frozenset[int]
    hour: int
    minute: int

    def next_run_after(self, moment_ms: int) -> int:
        """The first run strictly after `moment_ms`, in Paris time (DST handled by zoneinfo)."""
        after = datetime.fromtimestamp(moment_ms / 1000, PARIS)
        for offset in range(8):
            day = (after + timedelta(days=offset)).date()
            if day.weekday() not in self.weekdays:
                continue
            candidate = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=PARIS)
            # A time skipped by the spring change does not exist: zoneinfo maps it an hour on.
            candidate_ms = int(candidate.timestamp() * 1000)
            if candidate_ms > moment_ms:
                return candidate_ms
        raise AssertionError("a weekly schedule always has a run within 8 days")


def looks_like_time(token: str) -> bool:
    return bool(_TIME.match(fold(token)))


def parse_spec(spec: str) -> ScheduleSpec:
    """`lun-ven 18:00`, `lun,mer 8h30`, `tous les jours 9h`, `18:00` (every day)."""
    folded = " ".join(fold(spec).split())
    if not folded:
        raise ScheduleError("indiquez des jours et une heure, par exemple « lun-ven 18:00 »")
    days_text, _, time_text = folded.rpartition(" ")
    match = _TIME.match(time_text)
    if match is None:
        raise ScheduleError(f"heure invalide « {time_text} » (exemples : 18:00, 8h30)")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        raise ScheduleError(f"heure invalide « {time_text} »")
    return ScheduleSpec(weekdays=_parse_days(days_text), hour=hour, minute=minute)


def _parse_days(text: str) -> frozenset[int]:
    if not text or text in _EVERY_DAY:
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        start_name, dash, end_name = item.partition("-")
        if start_name not in _DAY_NAMES or (dash and end_name not in _DAY_NAMES):
            raise ScheduleError(f"jour inconnu dans « {item} » (exemples : lun-ven, sam, lun,mer)")
        start = _DAY_NAMES[start_name]
        end = _DAY_NAMES[end_name] if dash else start
        day = start
        days.add(day)
        while day != end:
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


RunScheduled = Callable[[Schedule, int], Awaitable[None]]


class Scheduler:
    """Runs due schedules. `clock` returns Unix seconds; tests move it instead of waiting."""

    def __init__(
        self, store: Store, run: RunScheduled, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._run = run
        self.clock = clock
        self._wake = asyncio.Event()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def changed(self) -> None:
        """A schedule was added or removed: recompute the next wake-up."""
        self._wake.set()

    async def tick(self) -> int:
        """Run every due schedule once; returns how many runs were queued."""
        now = self.now_ms()
        queued = 0
        for schedule in await self._store.schedules.list():
            if schedule.next_run_ms > now:
                continue
            try:
                following = parse_spec(schedule.spec).next_run_after(now)
            except ScheduleError:
                log.warning(
                    "schedule.invalid_spec", schedule_id=schedule.id, room_id=schedule.room_id
                )
                continue
            on_time = now - schedule.next_run_ms <= MAX_LATENESS_MS
            ran_at = schedule.next_run_ms if on_time else None
            if not await self._store.schedules.advance(
                schedule.id, schedule.next_run_ms, ran_at, following
            ):
                continue  # another tick already moved it: never twice
            if on_time:
                queued += 1
                await self._run(schedule, schedule.next_run_ms)
            else:
                log.info(
                    "schedule.skipped_too_late", schedule_id=schedule.id, room_id=schedule.room_id
                )
        return queued

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("schedule.tick_failed")
            self._wake.clear()
            delay = await self._seconds_to_next()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _seconds_to_next(self) -> float:
        schedules = await self._store.schedules.list()
        if not schedules:
            return IDLE_WAKE_SECONDS
        soonest = min(schedule.next_run_ms for schedule in schedules)
        return min(IDLE_WAKE_SECONDS, max(0.05, (soonest - self.now_ms()) / 1000))
