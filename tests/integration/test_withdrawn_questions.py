"""What people delete stays deleted (issue 13, items 5 and 6) on a real Synapse.

A question redacted, forgotten (`!oublie`, `!oublie-moi`) or left behind (the bot kicked) while it
waits in its room's queue or while the model answers: the model is not called if it has not
been, an answer being written stops and everything sent for it is redacted, and nothing of it
is stored. Each test proves the bot moved on by a follow-up that is handled after the withdrawn
question, then reads the SQLite file and the fake model's requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import texts
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, eventually, replies_to, room_with_bot
from tests.support.bot_process import database_text, query_database, rows_about
from tests.support.matrix_client import events_in, send_text, wait_for_event

LONG_ANSWER = (
    "Voici la procédure détaillée. "
    + " ".join(f"Étape {n} : vérifier la pièce {n} puis la classer." for n in range(1, 40))
    + " Fin."
)


def redaction_of(event_id: str) -> Callable[[dict[str, Any]], bool]:
    def predicate(event: dict[str, Any]) -> bool:
        return event["type"] == "m.room.redaction" and event_id in (
            event.get("redacts"),
            event["content"].get("redacts"),
        )

    return predicate


def answers_to(client: Any, room_id: str, event_id: str) -> list[dict[str, Any]]:
    return [e for e in events_in(client, room_id) if replies_to(event_id)(e)]


def trigger_row(bot: Any, event_id: str) -> tuple[str, str] | None:
    rows = query_database(
        bot.settings.database_path,
        "SELECT status, payload FROM triggers WHERE event_id = ?",
        (event_id,),
    )
    return rows[0] if rows else None


async def test_a_question_redacted_while_the_model_answers_is_never_answered_nor_stored(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.hang_next(60)
    question = await send_text(alice, room_id, "Mon mot de passe est Zorglub-17, est-il solide ?")
    await eventually(lambda: bool(fake_llm.requests_containing("Zorglub-17")))

    await alice.room_redact(room_id, question, reason="collé par erreur")
    follow_up = await ask(alice, room_id, bot.user_id, "Question suivante, sans secret")

    assert follow_up["content"]["body"].startswith("Réponse simulée")
    assert answers_to(alice, room_id, question) == [], "the hanging answer was stopped"
    assert trigger_row(bot, question) == ("skipped", "{}")
    assert "Zorglub-17" not in database_text(bot.settings.database_path)
    assert len(fake_llm.requests_containing("Zorglub-17")) == 1
    assert "Zorglub-17" not in str(fake_llm.last_request), "nor in the next prompt"


async def test_a_question_redacted_while_it_waits_in_the_queue_never_reaches_the_model(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.hang_next(4)  # the first question keeps the room busy for a while
    first = await send_text(alice, room_id, "Première question, lente")
    await eventually(lambda: bool(fake_llm.requests_containing("Première question")))
    waiting = await send_text(alice, room_id, "Deuxième question Cassiopée-3")
    await eventually(lambda: trigger_row(bot, waiting) is not None)

    await alice.room_redact(room_id, waiting)
    await eventually(lambda: (trigger_row(bot, waiting) or ("",))[0] == "skipped")
    await wait_for_event(alice, room_id, replies_to(first), timeout=20)
    await ask(alice, room_id, bot.user_id, "Troisième question")

    assert not fake_llm.requests_containing("Cassiopée-3"), "the model was never called for it"
    assert answers_to(alice, room_id, waiting) == []
    assert "Cassiopée-3" not in database_text(bot.settings.database_path)

    def statuses() -> list[str]:
        rows = query_database(
            bot.settings.database_path, "SELECT status FROM triggers ORDER BY received_at_ms"
        )
        return [str(row[0]) for row in rows]

    # The last answer is recorded right after its send: seen by Alice is not yet recorded.
    await eventually(lambda: statuses()[-1] == "answered")
    assert statuses() == ["answered", "skipped", "answered"]


async def test_a_streamed_answer_is_stopped_and_every_event_sent_for_it_redacted(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda body: (
        LONG_ANSWER if "procédure" in str(body["messages"][-1]) else "Réponse courte."
    )
    fake_llm.stream_tokens_per_second = 10
    bot = await start_bot(streaming=True, stream_edit_interval_seconds=0.3)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    question = await send_text(alice, room_id, "Quelle est la procédure pour le dossier Hydre-8 ?")
    partial = await wait_for_event(alice, room_id, replies_to(question))
    edit = await wait_for_event(
        alice,
        room_id,
        lambda e: (
            e["content"]["m.relates_to"]["rel_type"] == "m.replace"
            and e["content"]["m.relates_to"]["event_id"] == partial["event_id"]
        ),
    )

    await alice.room_redact(room_id, question)
    fake_llm.stream_tokens_per_second = None
    follow_up = await ask(alice, room_id, bot.user_id, "Autre chose")

    assert follow_up["content"]["body"].startswith("Réponse")
    for sent in (partial, edit):
        await wait_for_event(alice, room_id, redaction_of(sent["event_id"]))
    finished = [
        e
        for e in events_in(alice, room_id)
        if e["content"].get("m.new_content", {}).get("body") == LONG_ANSWER
    ]
    assert finished == [], "the answer never reached its final edit"
    assert trigger_row(bot, question) == ("skipped", "{}")
    await eventually(  # the follow-up is recorded after its final edit: only it and its answer
        lambda: (
            rows_about(bot.settings.database_path, "room_id", room_id)["conversation_turns"] == 2
        )
    )
    assert "Hydre-8" not in database_text(bot.settings.database_path)


async def test_forget_me_in_another_room_stops_the_askers_answer_and_erases_it(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_a = await room_with_bot(alice, bot.user_id, is_direct=True)
    room_b = await room_with_bot(alice, bot.user_id, name="Salle B")
    fake_llm.hang_next(60)
    question = await send_text(alice, room_a, "Mon dossier médical Pégase-4 dit ceci")
    await eventually(lambda: bool(fake_llm.requests_containing("Pégase-4")))

    forget = await send_text(alice, room_b, "!oublie-moi")
    done = await wait_for_event(alice, room_b, replies_to(forget))
    follow_up = await ask(alice, room_a, bot.user_id, "Nouvelle question")

    assert "C'est fait" in done["content"]["body"]
    assert follow_up["content"]["body"].startswith("Réponse simulée")
    assert answers_to(alice, room_a, question) == []
    assert trigger_row(bot, question) == ("skipped", "{}")
    assert "Pégase-4" not in database_text(bot.settings.database_path)


async def test_forget_in_the_same_room_takes_back_the_question_being_answered(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.hang_next(60)
    question = await send_text(alice, room_id, "Question Andromède-2 que je regrette")
    await eventually(lambda: bool(fake_llm.requests_containing("Andromède-2")))

    forget = await send_text(alice, room_id, "!oublie")
    done = await wait_for_event(alice, room_id, replies_to(forget))
    follow_up = await ask(alice, room_id, bot.user_id, "On repart de zéro")

    assert done["content"]["body"] == texts.FORGET_DONE.format(prefix="!")
    assert answers_to(alice, room_id, question) == []
    assert "Andromède-2" not in str(fake_llm.last_request)
    assert follow_up["content"]["body"].startswith("Réponse simulée")
    assert trigger_row(bot, question) == ("skipped", "{}")


async def test_a_kicked_bot_stops_answering_and_stores_nothing_of_that_room(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle fermée")
    other = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.hang_next(60)
    await send_text(alice, room_id, f"{bot.user_id} question Orion-6", mentions=[bot.user_id])
    await eventually(lambda: bool(fake_llm.requests_containing("Orion-6")))

    await alice.room_kick(room_id, bot.user_id)
    await eventually(lambda: bot.app.router.workers.pending == 0, timeout=20)  # well before 60 s
    await ask(alice, other, bot.user_id, "Question ailleurs")

    assert sum(rows_about(bot.settings.database_path, "room_id", room_id).values()) == 0
    assert "Orion-6" not in database_text(bot.settings.database_path)
    assert len(fake_llm.requests) == 2


async def test_forget_me_deletes_the_askers_commands_and_schedules_and_cannot_be_disabled(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")  # creator of the room: a moderator
    room_id = await room_with_bot(alice, bot.user_id, name="Salle outillée")
    for line in (
        '!commande ajouter cp "Communiqué Lyra-12 : {texte}" Communiqué',
        '!planifier "lun-ven 18:00" resume 1j',
    ):
        reply = await ask(alice, room_id, bot.user_id, line)
        assert reply["content"]["body"].startswith("✅"), reply["content"]["body"]

    refused = await ask(alice, room_id, bot.user_id, "!commandes désactiver oublie-moi")
    assert refused["content"]["body"] == texts.FORGET_ME_CANNOT_DISABLE.format(prefix="!")
    done = await ask(alice, room_id, bot.user_id, "!oublie-moi")
    after = await ask(alice, room_id, bot.user_id, "!commande liste")

    assert "1 commande(s) de salon, 1 planification(s)" in done["content"]["body"]
    assert after["content"]["body"] == texts.CUSTOM_LIST_EMPTY.format(prefix="!")
    path = bot.settings.database_path
    assert "Lyra-12" not in database_text(path)
    assert query_database(path, "SELECT count(*) FROM schedules") == [(0,)]
    audit = query_database(path, "SELECT old_value, new_value FROM settings_audit")
    assert audit and all(row == (None, None) for row in audit), "who and when stay, not texts"
