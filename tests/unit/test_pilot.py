"""Pilot evaluation, pure parts and the SQLite side: reactions at the edge, periods, hashes,
settings, quotas, and the report's masking of figures about fewer than 5 people."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.matrix.events import parse_reaction
from bot.models import IncomingMessage, MessageKind
from bot.pilot.pseudonym import Pseudonymizer, homeserver_of, paris_day
from bot.pilot.report import MASK, PeriodError, build_report, parse_period, scrub_identifiers
from bot.pilot.report_csv import write_csv
from bot.pilot.report_html import render_html
from bot.pilot.service import Pilot
from bot.pilot.usage import UsageNote
from bot.store import Store
from bot.store.pilot import AnswerRecord, Feedback, UsageEvent
from config.settings import ConfigError, Settings, load_settings

SECRET = "secret-du-pilote-pour-les-tests"
NOW = 1_780_000_000.0  # 2026-05-28, Paris
TODAY = paris_day(int(NOW * 1000))


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "homeserver": "https://matrix.example",
        "user_id": "@bot:agent.dinum.tchap.gouv.fr",
        "password": "x",
        "mistral_api_key": "k",
        "data_dir": tmp_path,
    }
    values.update(overrides)
    return load_settings(None, **values)


def reaction(key: object = "👍", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.reaction",
        "event_id": "$r",
        "sender": "@a:s",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$ans", "key": key}},
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("key", "rating"),
    [("👍", 1), ("👍🏽", 1), ("👍️", 1), ("👎", -1), ("👎🏿", -1), ("🎉", None), ("+1", None)],
)
def test_reaction_keys_become_ratings(key: str, rating: int | None) -> None:
    parsed = parse_reaction("!r:s", reaction(key))
    assert parsed is not None and parsed.rating == rating and parsed.reacts_to == "$ans"


@pytest.mark.parametrize(
    "event",
    [
        reaction(key=3),
        reaction(key=""),
        reaction(key="x" * 500),
        reaction(
            content={"m.relates_to": {"rel_type": "m.reference", "event_id": "$a", "key": "👍"}}
        ),
        reaction(content={"m.relates_to": "nope"}),
        reaction(content=None),
        reaction(event_id=None),
        reaction(sender=["@a:s"]),
        reaction(type="m.room.message"),
        reaction(unsigned={"redacted_because": {}}),
    ],
)
def test_malformed_reactions_are_ignored(event: dict[str, Any]) -> None:
    assert parse_reaction("!r:s", event) is None


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("30j", date(2026, 4, 29)),
        ("1 jour", date(2026, 5, 28)),
        ("2 semaines", date(2026, 5, 15)),
        ("6 mois", date(2025, 11, 30)),
        ("2026-05-01", date(2026, 5, 1)),
    ],
)
def test_periods(text: str, start: date) -> None:
    assert parse_period(text, date(2026, 5, 28)) == start


@pytest.mark.parametrize(
    "text", ["", "abc", "0j", "-3j", "30x", "99999j", "2026-06-01", "2026-13-01"]
)
def test_nonsensical_periods_are_refused(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_period(text, date(2026, 5, 28))


def test_pseudonyms_are_keyed_and_hide_the_id() -> None:
    one, other = Pseudonymizer(SECRET), Pseudonymizer(SECRET + "!")
    user = "@jean.martin-finances.gouv.fr:agent.finances.tchap.gouv.fr"
    assert one.user(user) == one.user(user) != other.user(user)
    assert one.user(user) != one.room(user)
    assert "jean" not in one.user(user)
    assert homeserver_of(user) == "agent.finances.tchap.gouv.fr"


def test_feedback_and_quotas_refuse_to_start_without_the_secret(tmp_path: Path) -> None:
    for overrides in (
        {"feedback_enabled": True},
        {"user_daily_question_cap": 5},
        {"homeserver_daily_token_budget": 1000},
    ):
        with pytest.raises(ConfigError, match="TCHAP_BOT_PILOT_SECRET"):
            settings(tmp_path, **overrides)
    with pytest.raises(ConfigError, match="16 caractères"):
        settings(tmp_path, pilot_secret="court")
    assert settings(tmp_path).pilot_secret is None  # off by default: starts fine


def test_identifiers_in_comments_are_masked() -> None:
    text = "Voir @jean.martin-x.fr:agent.dinum.tchap.gouv.fr ou jean.martin@x.gouv.fr, merci"
    scrubbed = scrub_identifiers(text)
    assert "jean" not in scrubbed and "merci" in scrubbed


async def _store(tmp_path: Path) -> Store:
    return await Store.open(tmp_path / "db.sqlite3")


def _event(user: int, server: str, day: str = TODAY, **changes: Any) -> UsageEvent:
    names = Pseudonymizer(SECRET)
    values: dict[str, Any] = {
        "at_ms": int(NOW * 1000),
        "day": day,
        "kind": "question",
        "outcome": "answered",
        "homeserver": server,
        "user_hash": names.user(f"@u{user}:{server}"),
        "room_hash": names.room(f"!room{user % 3}:{server}"),
        "model": "mistral-small-latest",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "duration_ms": 1000 + 100 * user,
    }
    values.update(changes)
    return UsageEvent(**values)


async def test_report_masks_figures_about_fewer_than_five_people(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    pilot = Pilot(settings(tmp_path, pilot_secret=SECRET), store, clock=lambda: NOW)
    big, small = "agent.dinum.tchap.gouv.fr", "agent.culture.tchap.gouv.fr"
    for user in range(6):
        await pilot.repository.record(_event(user, big))
    for user in range(2):
        await pilot.repository.record(_event(100 + user, small, kind="summary"))
    report = await build_report(
        pilot.repository,
        settings(tmp_path, pilot_secret=SECRET),
        date.fromisoformat(TODAY),
        NOW,
        "maintenant",
    )
    sections = {section.key: section for section in report.sections}
    servers = {row[0]: row for row in sections["serveurs"].table.rows}
    assert servers[big][1:] == [6, 6, 6, 3, 900]
    assert servers[small][1:] == [MASK] * 5
    activity = sections["activite"].table.rows[-1]
    assert activity == [TODAY, 6, 2, 0, 0], "8 people that day: shown"
    html = render_html(report)
    assert "@u" not in html and "!room" not in html
    assert html.count('<svg class="chart"') >= 7
    files = write_csv(report, tmp_path / "csv")
    serveurs = (tmp_path / "csv" / "serveurs.csv").read_text(encoding="utf-8")
    assert f"{small},{MASK},{MASK}" in serveurs and len(files) == len(report.sections)
    await store.close()


async def test_report_of_an_empty_database_says_there_is_nothing_yet(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    pilot = Pilot(settings(tmp_path), store, clock=lambda: NOW)
    report = await build_report(
        pilot.repository, settings(tmp_path), date(2026, 5, 1), NOW, "maintenant"
    )
    html = render_html(report)
    assert report.empty and "Rien à montrer pour l'instant" in html
    assert "TCHAP_BOT_PILOT_SECRET" in html  # says why: statistics are off
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    await store.close()


async def test_quota_notice_once_per_person_and_day(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    clock = [NOW]
    pilot = Pilot(
        settings(tmp_path, pilot_secret=SECRET, user_daily_question_cap=1),
        store,
        clock=lambda: clock[0],
    )
    message = IncomingMessage(
        room_id="!r:s",
        event_id="$q",
        sender="@a:agent.dinum.tchap.gouv.fr",
        sender_name="A",
        kind=MessageKind.TEXT,
        body="?",
        timestamp_ms=0,
    )
    assert await pilot.quota_refusal(message) is None
    note = UsageNote()
    note.answered("question", ["$ans"], "m", 10, 5)
    await pilot.finish(message, note, None)
    first = await pilot.quota_refusal(message)
    second = await pilot.quota_refusal(message)
    assert first is not None and first.notice is not None and "1 questions" in first.notice
    assert second is not None and second.notice is None
    clock[0] += 86_400  # the next day (Paris): the cap resets
    assert await pilot.quota_refusal(message) is None
    answer = await pilot.repository.answer("$ans")
    assert answer == AnswerRecord(
        event_id="$ans", room_id="!r:s", kind="question", model="m", created_at_ms=int(NOW * 1000)
    )
    await store.close()


async def test_people_reacting_on_several_kinds_are_counted_once(tmp_path: Path) -> None:
    """3 people rating questions and summaries are 3 people, not 6: their rate stays hidden."""
    store = await _store(tmp_path)
    pilot = Pilot(settings(tmp_path, pilot_secret=SECRET), store, clock=lambda: NOW)
    names = Pseudonymizer(SECRET)
    for user in range(3):
        await pilot.repository.record(_event(user, "agent.dinum.tchap.gouv.fr"))
        for kind in ("question", "summary"):
            await pilot.repository.add_feedback(
                Feedback(
                    reaction_event_id=f"$r{user}{kind}",
                    answer_event_id=f"$a{user}{kind}",
                    room_hash=names.room("!room0:agent.dinum.tchap.gouv.fr"),
                    user_hash=names.user(f"@u{user}:agent.dinum.tchap.gouv.fr"),
                    homeserver="agent.dinum.tchap.gouv.fr",
                    rating=1,
                    kind=kind,
                    model="m",
                    day=TODAY,
                    at_ms=int(NOW * 1000),
                )
            )
    report = await build_report(
        pilot.repository,
        settings(tmp_path, pilot_secret=SECRET),
        date.fromisoformat(TODAY),
        NOW,
        "maintenant",
    )
    assert dict(report.headline)["Satisfaction (👍 ÷ réactions)"] == MASK
    figures = await pilot.room_figures("!room0:agent.dinum.tchap.gouv.fr", 30)
    assert figures is not None and figures.reacting_people == 3 and figures.reactions == 6
    await store.close()


@pytest.mark.parametrize("count", [1, 2, 3, 10, 20, 21, 101])
async def test_answer_times_are_the_median_and_nearest_rank_p95(tmp_path: Path, count: int) -> None:
    """Computed in SQLite; checked here against Python's own definitions."""
    import math
    import random
    from statistics import median

    store = await _store(tmp_path)
    values = [random.randint(100, 20_000) for _ in range(count)]
    for index, value in enumerate(values):
        await store.pilot.record(_event(index, "agent.dinum.tchap.gouv.fr", duration_ms=value))
    await store.pilot.record(_event(0, "agent.dinum.tchap.gouv.fr", outcome="error", duration_ms=1))
    times = (await store.pilot.answer_times(TODAY))[TODAY]
    ordered = sorted(values)
    assert times.count == count
    assert times.median_ms == median(ordered)
    assert times.p95_ms == ordered[math.ceil(0.95 * count) - 1]
    await store.close()
