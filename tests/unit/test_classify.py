"""One pass decides what a message is: tables of message + room facts → decision."""

from __future__ import annotations

from typing import Any

import pytest

from bot.classify import RoomFacts, classify
from bot.french import command_key
from bot.matrix.events import parse_message
from bot.models import BOT_MARKER, Action, IncomingMessage, Invocation
from bot.triggers import BotIdentity

ROOM = "!salon:agent.dinum.tchap.gouv.fr"
BOT_ID = "@assistant-ia-dinum.gouv.fr:agent.dinum.tchap.gouv.fr"
ALICE = "@alice.martin-modernisation.fr:agent.dinum.tchap.gouv.fr"
BOT = BotIdentity(user_id=BOT_ID, display_names=("Assistant IA [DINUM]",))
BUILTINS = frozenset(command_key(word) for word in ("aide", "help", "resume", "résumé"))


def message(body: str, sender: str = ALICE, **content: Any) -> IncomingMessage:
    source = {
        "type": "m.room.message",
        "event_id": "$e",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": content.pop("msgtype", "m.text"), "body": body, **content},
    }
    parsed = parse_message(ROOM, source, "Alice Martin [Modernisation]", False)
    assert parsed is not None
    return parsed


def facts(**overrides: Any) -> RoomFacts:
    values: dict[str, Any] = {"bot": BOT, "is_direct": False, "builtin_commands": BUILTINS}
    values.update(overrides)
    return RoomFacts(**values)


REPLY = {"m.relates_to": {"m.in_reply_to": {"event_id": "$parent"}}}
FALLBACK = f"> <{BOT_ID}> ancienne réponse\n\nEt pour demain ?"

TABLE: list[tuple[str, IncomingMessage, RoomFacts, Action, str, Invocation | None]] = [
    ("own message", message("x", sender=BOT_ID), facts(), Action.IGNORE, "", None),
    ("image", message("photo.png", msgtype="m.image"), facts(), Action.IGNORE, "", None),
    ("chatter in a group", message("bonjour à tous"), facts(), Action.STORE, "", None),
    ("DM question", message("Quelle heure ?"), facts(is_direct=True), Action.QUESTION,
     "Quelle heure ?", None),
    ("answer-all room", message("Quelle heure ?"), facts(answers_all=True), Action.QUESTION,
     "Quelle heure ?", None),
    ("leading name mention", message("Assistant IA [DINUM] : Quelle heure ?"), facts(),
     Action.QUESTION, "Quelle heure ?", None),
    ("known command, no mention", message("!resume 2h"), facts(), Action.COMMAND, "!resume 2h",
     Invocation("resume", "2h", "!")),
    ("accented command", message("/Résumé"), facts(), Action.COMMAND, "/Résumé",
     Invocation("Résumé", "", "/")),
    ("unknown command, no mention: another bot's", message("!meteo"), facts(), Action.STORE, "",
     None),
    ("unknown command with a mention", message("Assistant IA : !meteo"), facts(),
     Action.COMMAND, "!meteo", Invocation("meteo", "", "!")),
    ("room's own command", message("!compterendu"), facts(room_commands=frozenset({"compterendu"})),
     Action.COMMAND, "!compterendu", Invocation("compterendu", "", "!")),
    ("command word after a mention, no prefix", message("Assistant IA aide"), facts(),
     Action.COMMAND, "aide", Invocation("aide", "", "!")),
    ("reply to the bot", message(FALLBACK, **REPLY), facts(replied_to_sender=BOT_ID),
     Action.QUESTION, "Et pour demain ?", None),
    ("reply to someone else", message(FALLBACK, **REPLY), facts(replied_to_sender=ALICE),
     Action.STORE, "", None),
    ("history is stored, never answered", message("Quelle heure ?"),
     facts(is_direct=True, answerable=False), Action.STORE, "", None),
    ("sender not allowed", message("Quelle heure ?"), facts(is_direct=True, sender_allowed=False),
     Action.STORE, "", None),
    ("notice from another bot", message("Réponse", msgtype="m.notice"), facts(is_direct=True),
     Action.STORE, "", None),
    ("name in passing, m.mentions present", message("j'en ai parlé à l'Assistant IA hier",
     **{"m.mentions": {}}), facts(), Action.STORE, "", None),
    ("name without m.mentions (older client)", message("Assistant IA : une question"), facts(),
     Action.QUESTION, "une question", None),
    ("m.mentions names the bot", message("une question", **{"m.mentions": {"user_ids": [BOT_ID]}}),
     facts(), Action.QUESTION, "une question", None),
    ("another instance of this bot", message("Assistant IA : réponse", **{BOT_MARKER: {}}),
     facts(is_direct=True), Action.STORE, "", None),
    ("edit", message("* corrigé", **{"m.new_content": {"msgtype": "m.text", "body": "corrigé"},
     "m.relates_to": {"rel_type": "m.replace", "event_id": "$old"}}), facts(is_direct=True),
     Action.IGNORE, "", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "msg", "room", "action", "question", "invocation"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_classify(
    name: str,
    msg: IncomingMessage,
    room: RoomFacts,
    action: Action,
    question: str,
    invocation: Invocation | None,
) -> None:
    decision = classify(msg, room)
    assert decision.action is action
    assert decision.invocation == invocation
    if action in (Action.QUESTION, Action.COMMAND):
        assert decision.question == question


def test_stored_text_has_no_reply_fallback() -> None:
    decision = classify(message(FALLBACK, **REPLY), facts(replied_to_sender=ALICE))
    assert decision.text == "Et pour demain ?"


def test_decision_survives_the_trigger_row() -> None:
    decision = classify(message("!resume 2h"), facts())
    assert type(decision).model_validate_json(decision.model_dump_json()) == decision
