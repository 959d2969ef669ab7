"""Downtime on a real Synapse: a restart after a busy hour, a homeserver outage, a busy database.

- More than a sync timeline (50 events) followed a question while the bot was stopped: the
  gap is fetched with /messages and the question answered.
- During an outage (a proxy cut between the bot and Synapse; users keep talking), a question
  older than the catch-up window is stored for summaries, never answered; a fresh one is.
- A handler that fails for a transient reason (a real SQLite write lock held by the test) is
  retried: the sync token is not saved past the event, the sync is replayed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from sandbox.fake_mistral import FakeMistral
from sandbox.mistral_wire import message_text
from tests.integration.conftest import StartBot
from tests.integration.test_commands import group_room
from tests.support.bot_helpers import ask, bot_replies, replies_to
from tests.support.bot_process import query_database
from tests.support.cuttable_proxy import CuttableProxy
from tests.support.matrix_client import send_text, sync_once, wait_for_event
from tests.support.synapse import SynapseServer


def replies_per_question(client: Any, room_id: str, bot_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in bot_replies(client, room_id, bot_id):
        relates = event["content"].get("m.relates_to", {})
        question = relates.get("m.in_reply_to", {}).get("event_id")
        if isinstance(question, str):
            counts[question] = counts.get(question, 0) + 1
    return counts


def asked(fake_llm: FakeMistral, text: str) -> int:
    """How many model calls had `text` in their last user message (the question asked)."""
    count = 0
    for request in fake_llm.requests:
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        if users and text in message_text(users[-1]):
            count += 1
    return count


def stored_bodies(bot: Any, room_id: str) -> list[str]:
    rows = query_database(
        bot.settings.database_path,
        "SELECT body FROM room_messages WHERE room_id = ? ORDER BY timestamp_ms",
        (room_id,),
    )
    return [str(row[0]) for row in rows]


async def test_a_question_buried_under_more_than_a_timeline_is_answered_after_restart(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await bot.stop()

    question = await send_text(
        alice, room_id, f"{bot.user_id} question avant la foule", mentions=[bot.user_id]
    )
    for n in range(60):  # more than the sync's timeline of 50 events
        await send_text(bob, room_id, f"bavardage {n}")
    await bot.start()

    await wait_for_event(alice, room_id, replies_to(question), timeout=30)
    follow_up = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} question témoin", mentions=[bot.user_id]
    )
    assert follow_up["content"]["body"].startswith("Réponse simulée")
    counts = replies_per_question(alice, room_id, bot.user_id)
    assert counts[question] == 1 and set(counts.values()) == {1}, counts
    assert asked(fake_llm, "question avant la foule") == 1
    bodies = stored_bodies(bot, room_id)
    chatter = [body for body in bodies if body.startswith("bavardage")]
    assert chatter == [f"bavardage {n}" for n in range(60)], "the gap is stored in order"


@pytest.fixture
async def proxy(synapse: SynapseServer) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy("127.0.0.1", synapse.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_after_an_outage_only_questions_younger_than_the_window_are_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, proxy: CuttableProxy
) -> None:
    window_seconds = 6.0
    bot = await start_bot(
        homeserver=proxy.base_url,
        sync_timeout_seconds=1,
        catch_up_window_minutes=window_seconds / 60,
    )
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    mention = {"mentions": [bot.user_id]}
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} question en direct", **mention)

    proxy.cut()  # the homeserver is unreachable for the bot only
    try:
        old = await send_text(alice, room_id, f"{bot.user_id} question ancienne", **mention)
        await asyncio.sleep(window_seconds + 2)  # the outage outlasts the window
        fresh = await send_text(alice, room_id, f"{bot.user_id} question récente", **mention)
    finally:
        proxy.restore()

    await wait_for_event(alice, room_id, replies_to(fresh), timeout=30)
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} question témoin", **mention)
    counts = replies_per_question(alice, room_id, bot.user_id)
    assert old not in counts, "older than the catch-up window: never answered"
    assert counts[fresh] == 1
    assert not fake_llm.requests_containing("question ancienne")
    assert any("question ancienne" in body for body in stored_bodies(bot, room_id)), (
        "stored for summaries"
    )


async def test_a_handler_failing_on_a_locked_database_is_retried_not_dropped(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    mention = {"mentions": [bot.user_id]}
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} question d'échauffement", **mention)
    # Let the bot save the sync that brought its own answer back: Synapse answers a replayed
    # sync from its cache, so the question must come in the batch that fails, not after it.
    await send_text(bob, room_id, "message repère")
    deadline = time.monotonic() + 20
    while "message repère" not in stored_bodies(bot, room_id):
        assert time.monotonic() < deadline, "the marker was never stored"
        await asyncio.sleep(0.1)
    stored_at = time.monotonic()
    while (bot.app.gateway.last_sync_monotonic or 0) < stored_at:
        assert time.monotonic() < deadline, "no sync completed after the marker"
        await asyncio.sleep(0.1)

    # Another process holds SQLite's write lock longer than the bot's busy timeout (5 s).
    locker = sqlite3.connect(bot.settings.database_path, timeout=20, isolation_level=None)
    with structlog.testing.capture_logs() as logs:
        locker.execute("BEGIN IMMEDIATE")
        try:
            question = await send_text(
                alice, room_id, f"{bot.user_id} question pendant le verrou", **mention
            )
            deadline = time.monotonic() + 40
            while not any(
                e["event"] == "matrix.event_retry" and e.get("event_id") == question for e in logs
            ):
                assert time.monotonic() < deadline, "the failed claim was never reported"
                await asyncio.sleep(0.2)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        reply = await wait_for_event(alice, room_id, replies_to(question), timeout=40)

    assert reply["content"]["body"].startswith("Réponse simulée")
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} question témoin", **mention)
    await sync_once(alice)
    counts = replies_per_question(alice, room_id, bot.user_id)
    assert counts[question] == 1 and set(counts.values()) == {1}, counts
    assert asked(fake_llm, "question pendant le verrou") == 1
    assert not [e for e in logs if e["event"] == "matrix.event_given_up"]
    assert not bot.task.done()
