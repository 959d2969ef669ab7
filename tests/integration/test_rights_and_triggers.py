"""Issue 13, rights and triggers, on a real Synapse: DMs are the bot and one person, intentional
mentions are honoured, commands that call the model are rate-limited, bots never answer bots."""

from __future__ import annotations

from typing import Any

from bot import texts
from bot.models import BOT_MARKER
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import join_room, send_text, wait_for_event


def asked(fake_llm: FakeMistral, text: str) -> bool:
    return bool(fake_llm.requests_containing(text))


async def test_a_flagged_dm_with_a_third_member_is_a_group_room(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    gateway = bot.app.gateway
    assert gateway is not None

    # A room flagged as a DM by its inviter, with a third person in it: not a DM.
    crowded = await room_with_bot(alice, bot.user_id, is_direct=True)
    await alice.room_invite(crowded, bob.user_id)
    await join_room(bob, crowded)
    await send_text(bob, crowded, "Question cachée dans une foule")
    follow_up = await ask(alice, crowded, bot.user_id, "!aide")  # a command: answered after it
    assert follow_up["sender"] == bot.user_id
    assert not asked(fake_llm, "Question cachée dans une foule")
    refused = await ask(bob, crowded, bot.user_id, "!config consigne Parle comme un pirate.")
    assert "réservée aux modérateurs" in refused["content"]["body"], "real power levels decide"

    # A real DM answers everything; once a third person is invited it is a group room.
    dm = await room_with_bot(alice, bot.user_id, is_direct=True)
    answer = await ask(alice, dm, bot.user_id, "Bonjour sans mention")
    assert answer["content"]["body"].startswith("Réponse simulée")
    assert gateway.room_context(dm).is_direct
    await alice.room_invite(dm, bob.user_id)
    await wait_for_event(
        alice,
        dm,
        lambda e: e["type"] == "m.room.member" and e.get("state_key") == bob.user_id,
    )
    await send_text(alice, dm, "Plus un DM maintenant")
    marker = await ask(alice, dm, bot.user_id, "!aide")
    assert marker["sender"] == bot.user_id
    assert not asked(fake_llm, "Plus un DM maintenant")
    assert not gateway.room_context(dm).is_direct


async def test_intentional_mentions_decide_when_present(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Équipe")

    # Element sends m.mentions on every message: naming the bot in passing is not a question.
    await send_text(alice, room_id, "j'en ai parlé à l'Assistant IA hier", mentions=[])
    # An older client without m.mentions that names the bot is still heard.
    legacy = await ask(alice, room_id, bot.user_id, "Assistant IA : quelle heure est-il ?")
    assert legacy["content"]["body"].startswith("Réponse simulée")
    assert not asked(fake_llm, "j'en ai parlé")
    # With m.mentions, only its user_ids (or a pill) count.
    pill = f'<a href="https://matrix.to/#/{bot.user_id}">Assistant IA</a> et demain ?'
    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        "Assistant IA et demain ?",
        formatted_body=pill,
        mentions=[],
    )
    assert answer["content"]["body"].startswith("Réponse simulée")


async def test_commands_that_call_the_model_share_the_question_limits(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(user_rate_limit_per_minute=2)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Équipe")
    for index in range(3):
        await send_text(alice, room_id, f"message {index} à résumer")
    first = await ask(alice, room_id, bot.user_id, "!resume 3")
    second = await ask(alice, room_id, bot.user_id, "!resume 3")
    assert first["sender"] == second["sender"] == bot.user_id
    calls = len(fake_llm.requests)
    refused = await ask(alice, room_id, bot.user_id, "!resume 3")
    assert refused["content"]["body"] == texts.USER_RATE_LIMITED
    help_reply = await ask(alice, room_id, bot.user_id, "!aide")  # no model: never limited
    assert "resume" in help_reply["content"]["body"]
    assert len(fake_llm.requests) == calls, "the refused summary called no model"


async def test_large_summaries_have_a_room_cooldown(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(large_summary_messages=3, large_summary_cooldown_seconds=3600)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Équipe")
    for index in range(5):
        await send_text(alice, room_id, f"point {index} de la réunion")
    large = await ask(alice, room_id, bot.user_id, "!resume 5")
    assert "Résumé" in large["content"]["body"] or large["content"]["body"].startswith("**")
    calls = len(fake_llm.requests)
    again = await ask(alice, room_id, bot.user_id, "!resume 5")
    assert again["content"]["body"].startswith("⏳ Un long résumé vient d'être fait")
    assert len(fake_llm.requests) == calls
    small = await ask(alice, room_id, bot.user_id, "!resume 2")  # under the threshold: allowed
    assert not small["content"]["body"].startswith("⏳")


async def test_bots_never_answer_bots(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, other_bot = await user_client("alice"), await user_client("autre-assistant")
    room_id = await room_with_bot(alice, bot.user_id, name="Deux assistants")
    await alice.room_invite(room_id, other_bot.user_id)
    await join_room(other_bot, room_id)
    answer = await ask(alice, room_id, bot.user_id, f"{bot.user_id} : bonjour")
    assert answer["content"][BOT_MARKER] == {"generated": True}, "answers carry the marker"

    # Another instance of this bot, in "answer everything" style: its marked message mentions us.
    looped = await send_text(
        other_bot,
        room_id,
        f"{bot.user_id} : voici ma réponse",
        mentions=[bot.user_id],
        extra_content={BOT_MARKER: {"generated": True}},
    )
    notice = await send_text(
        other_bot,
        room_id,
        f"{bot.user_id} : une notice",
        mentions=[bot.user_id],
        extra_content={"msgtype": "m.notice"},
    )
    follow_up = await ask(alice, room_id, bot.user_id, f"{bot.user_id} : et ensuite ?")
    assert follow_up["sender"] == bot.user_id
    answered = {
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        for e in bot_replies(alice, room_id, bot.user_id)
    }
    assert looped not in answered and notice not in answered
    assert not asked(fake_llm, "voici ma réponse") and not asked(fake_llm, "une notice")
    assert replies_to(looped)(follow_up) is False
