"""Schedule specs and next-run computation in Paris time, daylight saving included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.schedule import PARIS, ScheduleError, parse_spec


def paris_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=PARIS).timestamp() * 1000)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.mark.parametrize(
    ("spec", "weekdays", "hour", "minute"),
    [
        ("lun-ven 18:00", {0, 1, 2, 3, 4}, 18, 0),
        ("lun,mer 8h30", {0, 2}, 8, 30),
        ("Samedi 9h", {5}, 9, 0),
        ("tous les jours 07:05", set(range(7)), 7, 5),
        ("quotidien 23:59", set(range(7)), 23, 59),
        ("18:00", set(range(7)), 18, 0),
        ("ven-lun 12:00", {4, 5, 6, 0}, 12, 0),
        ("mon-fri 6h", {0, 1, 2, 3, 4}, 6, 0),
    ],
)
def test_specs_parse(spec: str, weekdays: set[int], hour: int, minute: int) -> None:
    parsed = parse_spec(spec)
    assert (set(parsed.weekdays), parsed.hour, parsed.minute) == (weekdays, hour, minute)


@pytest.mark.parametrize(
    "spec",
    ["", "lun-ven", "lun-ven 25:00", "lun-ven 18:61", "lundo 18:00", "tous 18:00", "lun-xyz 9h"],
)
def test_bad_specs_are_refused_in_french(spec: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_spec(spec)
    assert any(word in str(error.value) for word in ("heure", "jour", "indiquez"))


def test_next_weekday_run_skips_the_weekend() -> None:
    friday_evening = paris_ms(2026, 11, 27, 18, 30)  # a Friday, after 18:00
    assert parse_spec("lun-ven 18:00").next_run_after(friday_evening) == paris_ms(
        2026, 11, 30, 18, 0
    )


def test_a_run_at_the_exact_time_moves_to_the_next_one() -> None:
    at_six = paris_ms(2026, 11, 30, 18, 0)
    assert parse_spec("lun-ven 18:00").next_run_after(at_six) == paris_ms(2026, 12, 1, 18, 0)


def test_autumn_change_keeps_paris_wall_clock() -> None:
    friday = paris_ms(2026, 10, 23, 19, 0)  # summer time (UTC+2)
    monday = parse_spec("lun-ven 18:00").next_run_after(friday)  # winter time (UTC+1)
    assert utc(monday) == datetime(2026, 10, 26, 17, 0, tzinfo=UTC)
    assert utc(paris_ms(2026, 10, 23, 18, 0)) == datetime(2026, 10, 23, 16, 0, tzinfo=UTC)


def test_spring_change_time_that_does_not_exist_still_runs_that_day() -> None:
    saturday_night = paris_ms(2027, 3, 27, 23, 0)
    run = parse_spec("tous-les-jours 02:30").next_run_after(saturday_night)
    local = datetime.fromtimestamp(run / 1000, PARIS)
    assert local.date() == datetime(2027, 3, 28).date()
    assert run > saturday_night
    assert utc(run).hour == 1  # 02:30 does not exist; it runs at 03:30 summer time
