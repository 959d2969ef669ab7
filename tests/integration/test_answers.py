"""The vertical slice on a real Synapse: invites, triggers, DMs, context, restarts, LLM errors."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import BOT_DISPLAY_NAME, StartBot
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import create_room, send_text, sync_once, wait_for_event


async def test_invite_from_allowed_user_is_accepted_and_mention_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Bureau des études")

    answer = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} quelle heure est-il ?", mentions=[bot.user_id]
    )

    assert answer["sender"] == bot.user_id
    assert answer["content"]["body"].startswith("Réponse simulée")
    assert "quelle heure est-il" in answer["content"]["body"]
    assert answer["content"]["format"] == "org.matrix.custom.html"
    prompt = fake_llm.requests[-1]["messages"]
    assert prompt[0]["role"] == "system"
    assert "Bureau des études" in prompt[0]["content"]
    assert prompt[-1]["content"].endswith("quelle heure est-il ?")
    assert bot.user_id not in prompt[-1]["content"], "the mention is stripped from the question"


async def test_invite_from_disallowed_user_is_rejected(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot(allowed_users="@trusted-*:localhost")
    mallory = await user_client("mallory")
    room_id = await create_room(mallory, invite=[bot.user_id])

    await wait_for_event(
        mallory,
        room_id,
        lambda e: (
            e["type"] == "m.room.member"
            and e["state_key"] == bot.user_id
            and e["content"]["membership"] == "leave"
        ),
    )
    assert room_id not in bot.app.gateway.client.rooms


async def test_no_answer_without_mention_and_every_mention_shape_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await room_with_bot(
        alice,
        bot.user_id,
    )
    await alice.room_invite(room_id, bob.user_id)
    await bob.join(room_id)
    await sync_once(bob)

    quiet = await send_text(alice, room_id, "Réunion à 15 h, salle Marianne.")
    bot_id = bot.user_id
    shapes = {
        "element": dict(
            body=f"{BOT_DISPLAY_NAME}: question element",
            formatted_body=f'<a href="https://matrix.to/#/{bot_id}">{BOT_DISPLAY_NAME}</a>: question element',
            mentions=[bot_id],
        ),
        "tchap-mobile": dict(
            body=f"{BOT_DISPLAY_NAME} question mobile",
            formatted_body=f'<a href="https://tchap.gouv.fr/#/user/{bot_id}">{BOT_DISPLAY_NAME}</a> question mobile',
        ),
        "name-with-suffix": dict(body=f"{BOT_DISPLAY_NAME} question suffixe"),
        "name-without-suffix": dict(body="Assistant IA, question sans suffixe"),
        "user-id": dict(body=f"{bot_id} question identifiant"),
    }
    for shape, kwargs in shapes.items():
        body = kwargs.pop("body")
        answer = await ask(bob, room_id, bot_id, body, **kwargs)
        assert answer["sender"] == bot_id, shape

    first_answer = bot_replies(bob, room_id, bot_id)[0]
    follow_up = await send_text(
        bob, room_id, "et pour la suite ?", reply_to=first_answer["event_id"]
    )
    await wait_for_event(bob, room_id, replies_to(follow_up))

    assert not any(
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == quiet
        for e in bot_replies(bob, room_id, bot_id)
    )
    assert not any("salle Marianne" in r["messages"][-1]["content"] for r in fake_llm.requests)
    assert len(fake_llm.requests) == len(shapes) + 1


async def test_direct_message_is_answered_without_mention(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    answer = await ask(alice, room_id, bot.user_id, "Bonjour, peux-tu m'aider ?")

    assert answer["content"]["body"].startswith("Réponse simulée")
    assert bot.app.gateway.room_context(room_id).is_direct


async def test_follow_up_carries_the_first_exchange(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    await ask(alice, room_id, bot.user_id, "Quel est le délai de recours contentieux ?")
    await ask(alice, room_id, bot.user_id, "Et en appel ?")

    second = fake_llm.requests[-1]["messages"]
    contents = [m["content"] for m in second]
    assert any("délai de recours contentieux" in c for c in contents[1:-1])
    assert any(m["role"] == "assistant" and "Réponse simulée" in m["content"] for m in second)
    assert contents[-1] == "Et en appel ?"


async def test_two_rooms_never_see_each_other(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_a = await room_with_bot(alice, bot.user_id, is_direct=True)
    room_b = await room_with_bot(bob, bot.user_id, is_direct=True)

    await ask(alice, room_a, bot.user_id, "Secret A : le projet Hermès")
    await ask(bob, room_b, bot.user_id, "Secret B : le budget Athéna")
    await ask(alice, room_a, bot.user_id, "Rappelle-moi le projet")
    await ask(bob, room_b, bot.user_id, "Rappelle-moi le budget")

    for request in fake_llm.requests:
        text = " ".join(m["content"] for m in request["messages"])
        assert not ("Hermès" in text and "Athéna" in text), "one prompt mixed two rooms"
    assert len(fake_llm.requests_containing("Hermès")) == 2
    assert len(fake_llm.requests_containing("Athéna")) == 2


async def test_restart_answers_nothing_twice_and_catches_up(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Première question")
    device_before = bot.app.gateway.device_id

    await bot.stop()
    while_down = await send_text(alice, room_id, "Question posée pendant l'arrêt")
    await bot.start()

    await wait_for_event(alice, room_id, replies_to(while_down))
    await ask(alice, room_id, bot.user_id, "Troisième question")
    await asyncio.sleep(0.5)
    await sync_once(alice)

    assert bot.app.gateway.device_id == device_before, "a restart must reuse the device"
    answered_to = [
        e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
        for e in bot_replies(alice, room_id, bot.user_id)
    ]
    assert len(answered_to) == len(set(answered_to)) == 3
    assert len(fake_llm.requests_containing("Première question")) >= 1
    assert (
        sum(1 for r in fake_llm.requests if r["messages"][-1]["content"] == "Première question")
        == 1
    )


async def test_first_start_ignores_history(
    start_bot: StartBot,
    user_client: Any,
    fake_llm: FakeMistral,
    new_user: Any,
    synapse: Any,
    tmp_path: Any,
) -> None:
    from bot.app import BotApp
    from tests.integration.conftest import RunningBot, bot_settings

    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    alice = await user_client("alice")
    room_id = await create_room(alice, invite=[account.user_id], is_direct=True)
    helper = await user_client(account)
    await helper.join(room_id)
    old = await send_text(
        alice, room_id, "Message d'avant le premier démarrage", mentions=[account.user_id]
    )
    await helper.close()

    settings = bot_settings(synapse, fake_llm, account, tmp_path / "first")
    bot = RunningBot(account=account, settings=settings, app=BotApp(settings))
    await bot.start()
    try:
        fresh = await send_text(alice, room_id, "Nouvelle question", mentions=[account.user_id])
        await wait_for_event(alice, room_id, replies_to(fresh))
        assert not any(
            e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == old
            for e in bot_replies(alice, room_id, account.user_id)
        )
        assert not any(
            "avant le premier démarrage" in r["messages"][-1]["content"] for r in fake_llm.requests
        )
    finally:
        await bot.stop()


async def test_llm_error_gives_french_message_and_bot_keeps_serving(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(llm_max_retries=0)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    fake_llm.fail_next(1, status=500)
    failure = await ask(alice, room_id, bot.user_id, "Question qui échoue")
    assert failure["content"]["msgtype"] == "m.notice"
    assert "service d'IA" in failure["content"]["body"]

    answer = await ask(alice, room_id, bot.user_id, "Question qui marche")
    assert answer["content"]["body"].startswith("Réponse simulée")


async def test_question_in_a_thread_is_answered_in_that_thread(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Fils")
    root = await send_text(alice, room_id, "Sujet : le déménagement du service")

    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        f"{bot.user_id} quand ?",
        mentions=[bot.user_id],
        thread_root=root,
    )

    relation = answer["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == root
    assert relation["m.in_reply_to"]["event_id"] != root


async def test_edit_of_an_old_question_does_not_trigger_a_new_answer(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    question = await send_text(alice, room_id, "Quelle est la date limite ?")
    await wait_for_event(alice, room_id, replies_to(question))

    await send_text(
        alice,
        room_id,
        "* Quelle est la date limite du dépôt ?",
        extra_content={
            "m.new_content": {"msgtype": "m.text", "body": "Quelle est la date limite du dépôt ?"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": question},
        },
    )
    marker = await ask(alice, room_id, bot.user_id, "Autre question")

    assert marker["content"]["body"].startswith("Réponse simulée")
    assert len(fake_llm.requests) == 2, "the edit itself got no answer"
    assert "date limite du dépôt" in " ".join(
        m["content"] for m in fake_llm.requests[-1]["messages"]
    )


async def test_mention_older_than_catch_up_window_is_not_answered_after_restart(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(catch_up_window_minutes=0.02)  # 1.2 s
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Première question")

    await bot.stop()
    stale = await send_text(alice, room_id, "Question trop ancienne")
    await asyncio.sleep(1.5)
    await bot.start()
    fresh = await ask(alice, room_id, bot.user_id, "Question récente")

    assert fresh["content"]["body"].startswith("Réponse simulée")
    assert not any(
        "Question trop ancienne" in r["messages"][-1]["content"] for r in fake_llm.requests
    )
    assert not any(
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == stale
        for e in bot_replies(alice, room_id, bot.user_id)
    )


async def test_direct_rooms_follow_m_direct_both_ways(
    start_bot: StartBot, user_client: Any, synapse: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    dm = await room_with_bot(alice, bot.user_id, is_direct=True)
    gateway = bot.app.gateway
    path = f"/_matrix/client/v3/user/{bot.user_id}/account_data/m.direct"
    token = gateway.client.access_token
    for _ in range(100):  # recorded right after the join, which the client may see first
        listed = await synapse.admin_request("GET", path, token, check=lambda status: True)
        if dm in listed.get(alice.user_id, []):
            break
        await asyncio.sleep(0.05)
    assert dm in listed[alice.user_id], "an accepted DM is recorded in the bot's m.direct"

    group = await room_with_bot(alice, bot.user_id, name="Deux personnes, pas un DM")
    quiet = await send_text(alice, group, "Bonjour à toi")
    await ask(alice, dm, bot.user_id, "Repère")
    assert not any("Bonjour à toi" in r["messages"][-1]["content"] for r in fake_llm.requests)
    assert quiet and not gateway.room_context(group).is_direct

    listed[alice.user_id].append(group)
    await synapse.admin_request("PUT", path, gateway.client.access_token, json_body=listed)
    for _ in range(100):  # the change reaches the bot with its next sync
        if gateway.room_context(group).is_direct:
            break
        await asyncio.sleep(0.05)
    assert gateway.room_context(group).is_direct
    answer = await ask(alice, group, bot.user_id, "Maintenant sans mention")
    assert answer["content"]["body"].startswith("Réponse simulée")
