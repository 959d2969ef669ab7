"""The pilot's evaluation on a real Synapse: 👍/👎 reactions on answers, `!avis`, quotas,
`!stats`, and the metrics, with real nio clients reacting and redacting.

What is recorded is read from the SQLite file itself; that it holds no user ID is checked on
every text value of every table.
"""

from __future__ import annotations

from typing import Any

import nio
from prometheus_client import REGISTRY

from bot import texts
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import RunningBot, StartBot
from tests.integration.test_commands import group_room
from tests.integration.test_summaries import bot_dm
from tests.support.bot_helpers import ask, bot_replies, eventually, replies_to, room_with_bot
from tests.support.bot_process import database_text, query_database
from tests.support.matrix_client import (
    join_room,
    send_text,
    sync_once,
    wait_for_event,
    wait_for_invite,
)

SECRET = "secret-du-pilote-pour-les-tests"
PILOT = {"pilot_secret": SECRET, "feedback_enabled": True}


async def react(client: nio.AsyncClient, room_id: str, event_id: str, key: str) -> str:
    response = await client.room_send(
        room_id,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
    )
    assert isinstance(response, nio.RoomSendResponse), response
    return str(response.event_id)


def rows(bot: RunningBot, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return query_database(bot.settings.database_path, sql, params)


async def recorded_answer(bot: RunningBot, answer: dict[str, Any]) -> dict[str, Any]:
    """The bot records an answer's events just after sending them; a person takes longer to
    react than that, a test client does not: wait for the record first."""
    await eventually(
        lambda: rows(bot, "SELECT 1 FROM bot_answers WHERE event_id = ?", (answer["event_id"],))
    )
    return answer


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dislike_acks(client: nio.AsyncClient, room_id: str, bot_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in bot_replies(client, room_id, bot_id)
        if "avis" in e["content"]["body"] and "👎" in e["content"]["body"]
    ]


async def test_reactions_on_answers_are_feedback_and_redaction_unrecords_them(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(**PILOT)
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    mention = {"mentions": [bot.user_id]}
    liked_before = metric(
        "tchapbot_feedback_total", homeserver="localhost", rating="positive", kind="question"
    )

    answer = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} Qu'est-ce que Tchap ?", **mention
    )
    summary = await ask(alice, room_id, bot.user_id, "!resume 3")
    await recorded_answer(bot, answer)
    await recorded_answer(bot, summary)
    thumbs_up = await react(alice, room_id, answer["event_id"], "👍")
    await react(bob, room_id, answer["event_id"], "👍🏽")  # a skin tone is still 👍
    await react(bob, room_id, summary["event_id"], "👎️")  # variation selector too
    await eventually(lambda: len(rows(bot, "SELECT * FROM feedback")) == 3)

    ack = await wait_for_event(alice, room_id, replies_to(summary["event_id"]))
    assert ack["content"]["msgtype"] == "m.notice"
    assert "!avis" in ack["content"]["body"]
    assert ack["content"]["m.mentions"] == {"user_ids": [bob.user_id]}

    by_kind = dict(rows(bot, "SELECT kind, sum(rating) FROM feedback GROUP BY kind"))
    assert by_kind == {"question": 2, "summary": -1}
    models = {row[0] for row in rows(bot, "SELECT model FROM feedback")}
    assert models == {bot.settings.model}
    assert (
        metric(
            "tchapbot_feedback_total", homeserver="localhost", rating="positive", kind="question"
        )
        == liked_before + 2
    )

    # Not feedback: other emojis, reactions to a person's message, a second 👎 on the same answer.
    question_id = await send_text(alice, room_id, "Un message d'Alice")
    await react(bob, room_id, question_id, "👍")
    await react(alice, room_id, answer["event_id"], "🎉")
    await react(alice, room_id, summary["event_id"], "👎")
    await alice.room_redact(room_id, thumbs_up)
    # A follow-up handled after all of the above: once it is answered, they were handled too.
    follow_up = await ask(alice, room_id, bot.user_id, "!avis Les résumés sont trop longs")
    assert follow_up["content"]["body"] == texts.FEEDBACK_COMMENT_THANKS

    assert len(dislike_acks(alice, room_id, bot.user_id)) == 1, "one acknowledgement per answer"
    recorded = rows(bot, "SELECT answer_event_id, rating FROM feedback ORDER BY at_ms")
    assert sorted(recorded) == sorted(
        [(answer["event_id"], 1), (summary["event_id"], -1), (summary["event_id"], -1)]
    ), "the redacted 👍 is gone; only answers count"
    assert rows(bot, "SELECT text, homeserver FROM feedback_comments") == [
        ("Les résumés sont trop longs", "localhost")
    ]
    stored = database_text(bot.settings.database_path)
    for table in ("feedback", "feedback_comments", "usage_events"):
        for row in rows(bot, f"SELECT * FROM {table}"):
            for value in row:
                assert not (isinstance(value, str) and "@" in value), (table, row)
    assert alice.user_id in stored  # (the ordinary tables still hold messages)


async def test_feedback_off_records_nothing_and_avis_says_so(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot(pilot_secret=SECRET)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    answer = await ask(alice, room_id, bot.user_id, "Bonjour")
    await recorded_answer(bot, answer)
    await react(alice, room_id, answer["event_id"], "👎")

    reply = await ask(alice, room_id, bot.user_id, "!avis super")
    empty = await ask(alice, room_id, bot.user_id, "!avis")

    assert reply["content"]["body"] == texts.FEEDBACK_OFF
    assert "Usage" in empty["content"]["body"]
    assert rows(bot, "SELECT count(*) FROM feedback") == [(0,)]
    assert rows(bot, "SELECT count(*) FROM feedback_comments") == [(0,)]
    assert dislike_acks(alice, room_id, bot.user_id) == []
    # The usage event is written just after the reply is sent: wait for the last one.
    await eventually(lambda: len(rows(bot, "SELECT id FROM usage_events")) == 3)
    kinds = rows(bot, "SELECT kind, outcome, model IS NOT NULL FROM usage_events ORDER BY id")
    assert kinds == [
        ("question", "answered", 1),
        ("command", "answered", 0),
        ("command", "answered", 0),
    ]


async def test_daily_question_cap_one_notice_then_silence(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(pilot_secret=SECRET, user_daily_question_cap=2)
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    refused_before = metric(
        "tchapbot_quota_refusals_total", homeserver="localhost", quota="questions"
    )

    await ask(alice, room_id, bot.user_id, "Question 1")
    await ask(alice, room_id, bot.user_id, "Question 2")
    notice = await ask(alice, room_id, bot.user_id, "Question 3")
    silent = await send_text(alice, room_id, "Question 4")
    summary = await send_text(alice, room_id, "!resume 2")  # uses the model: refused too
    help_reply = await ask(alice, room_id, bot.user_id, "!aide")  # no model: still served

    assert notice["content"]["msgtype"] == "m.notice"
    assert "2 questions par jour" in notice["content"]["body"]
    assert "demain à minuit" in notice["content"]["body"]
    assert "!resume" in help_reply["content"]["body"]
    replies = bot_replies(alice, room_id, bot.user_id)
    assert not [e for e in replies if replies_to(silent)(e) or replies_to(summary)(e)]
    assert len(fake_llm.requests) == 2, "refused requests never reach the model"
    assert len([e for e in replies if "questions par jour" in e["content"]["body"]]) == 1
    await eventually(lambda: len(rows(bot, "SELECT id FROM usage_events")) == 6)
    outcomes = rows(bot, "SELECT kind, outcome FROM usage_events ORDER BY id")
    assert outcomes == [
        ("question", "answered"),
        ("question", "answered"),
        ("question", "quota"),
        ("question", "quota"),
        ("command", "quota"),
        ("command", "answered"),
    ]
    assert (
        metric("tchapbot_quota_refusals_total", homeserver="localhost", quota="questions")
        == refused_before + 3
    )

    other_room = await room_with_bot(bob, bot.user_id, is_direct=True)
    assert (
        "questions par jour"
        not in (await ask(bob, other_room, bot.user_id, "Moi ?"))["content"]["body"]
    ), "the cap is per person"


async def test_homeserver_token_budget_refuses_until_tomorrow(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(pilot_secret=SECRET, homeserver_daily_token_budget=1)
    alice, bob = await user_client("alice"), await user_client("bob")
    alice_room = await room_with_bot(alice, bot.user_id, is_direct=True)
    bob_room = await room_with_bot(bob, bot.user_id, is_direct=True)

    first = await ask(alice, alice_room, bot.user_id, "Bonjour")
    refused = await ask(bob, bob_room, bot.user_id, "Et moi ?")  # same homeserver: budget spent

    assert "localhost" not in first["content"]["body"]
    assert refused["content"]["msgtype"] == "m.notice"
    assert "(localhost)" in refused["content"]["body"]
    assert "renouvelé demain à minuit" in refused["content"]["body"]
    assert len(fake_llm.requests) == 1
    assert metric("tchapbot_quota_tokens_today", homeserver="localhost") > 1


async def test_stats_shows_the_room_pilot_figures_to_moderators(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot(**PILOT)
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    mention = {"mentions": [bot.user_id]}
    answer = await ask(alice, room_id, bot.user_id, f"{bot.user_id} Une question", **mention)
    await recorded_answer(bot, answer)
    await ask(bob, room_id, bot.user_id, f"{bot.user_id} Une autre", **mention)
    await react(bob, room_id, answer["event_id"], "👍")

    refused = await ask(bob, room_id, bot.user_id, "!stats")
    stats = await ask(alice, room_id, bot.user_id, "!stats")

    assert "modérateurs" in refused["content"]["body"]
    body = stats["content"]["body"]
    assert "Sur les 30 derniers jours" in body
    assert "Questions : 2" in body
    assert "Personnes actives : < 5" in body
    assert "Satisfaction : < 5" in body, "one person's reaction is not shown as a rate"
    assert "médiane" in body and " s" in body


async def send_encrypted_reaction(
    client: nio.AsyncClient, room_id: str, event_id: str, key: str
) -> str:
    """An `m.reaction` inside `m.room.encrypted`, as Element and Tchap send it (nio's own
    room_send leaves reactions in clear)."""
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    assert client.olm is not None
    await sync_once(client)
    if not client.rooms[room_id].members_synced:
        await client.joined_members(room_id)
    if client.should_query_keys:
        await client.keys_query()
    if client.olm.should_share_group_session(room_id):
        await client.share_group_session(room_id, ignore_unverified_devices=True)
    event_type, encrypted = client.encrypt(room_id, "m.reaction", content)
    assert event_type == "m.room.encrypted"
    method, path, data = nio.Api.room_send(
        client.access_token, room_id, event_type, encrypted, f"reaction-{event_id}-{len(key)}"
    )
    response = await client._send(nio.RoomSendResponse, method, path, data, (room_id,))
    assert isinstance(response, nio.RoomSendResponse), response
    return str(response.event_id)


async def test_encrypted_reaction_in_an_encrypted_dm_is_feedback(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot(**PILOT)
    alice = await user_client("alice", encryption=True)
    room_id = await room_with_bot(alice, bot.user_id, encrypted=True, is_direct=True)
    answer = await ask(alice, room_id, bot.user_id, "Une question confidentielle")
    await recorded_answer(bot, answer)

    reaction_id = await send_encrypted_reaction(alice, room_id, answer["event_id"], "👎")
    ack = await wait_for_event(alice, room_id, replies_to(answer["event_id"]))

    assert "!avis" in ack["content"]["body"]
    assert rows(bot, "SELECT reaction_event_id, rating, kind FROM feedback") == [
        (reaction_id, -1, "question")
    ]
    await alice.room_redact(room_id, reaction_id)
    await ask(alice, room_id, bot.user_id, "!aide")  # handled after the redaction
    assert rows(bot, "SELECT count(*) FROM feedback") == [(0,)]


async def test_reactions_while_an_answer_still_streams_count_once_it_ends(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda _body: " ".join(f"Étape {n} du dossier." for n in range(1, 40))
    fake_llm.stream_tokens_per_second = 40
    bot = await start_bot(**PILOT, streaming=True, stream_edit_interval_seconds=0.5)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    question = await send_text(alice, room_id, "La procédure ?")
    first = await wait_for_event(alice, room_id, replies_to(question))
    early = await react(alice, room_id, first["event_id"], "👎")  # the answer is still growing
    assert rows(bot, "SELECT count(*) FROM bot_answers") == [(0,)], "really before the end"
    ack = await wait_for_event(
        alice,
        room_id,
        lambda e: replies_to(first["event_id"])(e) and "!avis" in e["content"]["body"],
    )

    assert ack["content"]["msgtype"] == "m.notice"
    assert rows(bot, "SELECT reaction_event_id, kind FROM feedback") == [(early, "question")]


async def test_a_private_summary_in_the_dm_takes_feedback_there(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot(**PILOT)
    alice = await user_client("alice", encryption=True)
    bob = await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await send_text(bob, room_id, "Décision : le comité est reporté")
    await sync_once(alice)

    command = await send_text(alice, room_id, "!resume 3 en privé")
    await wait_for_event(alice, room_id, replies_to(command), timeout=30)
    dm_id = await bot_dm(bot, exclude={room_id})
    await wait_for_invite(alice, dm_id)
    await join_room(alice, dm_id)
    summary = await wait_for_event(
        alice, dm_id, lambda e: "Résumé de" in e["content"].get("body", ""), timeout=30
    )
    await recorded_answer(bot, summary)
    reaction_id = await send_encrypted_reaction(alice, dm_id, summary["event_id"], "👎")
    ack = await wait_for_event(alice, dm_id, replies_to(summary["event_id"]))

    assert "!avis" in ack["content"]["body"]
    assert rows(bot, "SELECT reaction_event_id, kind, rating FROM feedback") == [
        (reaction_id, "summary", -1)
    ]
    assert rows(bot, "SELECT room_id FROM bot_answers") == [(dm_id,)]
