"""The command registry and every command, driven through `dispatch` with a real SQLite store.

Only Matrix and the LLM are replaced (a recording outbox, a scripted LLM); power levels come
from a dict. Integration tests against Synapse cover the wiring.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench import team_week
from bot import texts
from bot.answer.conversation import ConversationHandler
from bot.answer.llm import ChatRequest, Completion
from bot.answer.llm_failures import LLMError, LLMErrorKind
from bot.answer.summary import Summarizer
from bot.classify import Invocation, parse_invocation
from bot.french import PARIS
from bot.french import command_key as normalise
from bot.models import IncomingMessage, MessageKind, RoomContext
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.store import Store
from bot.store.database import ConversationTurn, StoredMessage, now_ms
from commands import build_registry
from commands.base import CommandContext, Power
from commands.registry import CommandRegistry
from config.settings import Settings

ROOM = "!room:localhost"
OTHER_ROOM = "!other:localhost"
ALICE = "@alice:localhost"
BOB = "@bob:localhost"
MODERATOR = "@mod:localhost"
PREFIXES = ["!", "/"]
_ids = itertools.count()


# --- Registry ------------------------------------------------------------------------------------
def test_commands_are_registered_in_order() -> None:
    names = [command.name for command in build_registry().commands]
    assert names == [
        "aide",
        "resume",
        "documents",
        "oublie",
        "config",
        "modele",
        "stats",
        "transcrire",
        "oublie-moi",
        "avis",
        "commandes",
        "commande",
        "planifier",
    ]


def test_no_word_is_used_twice() -> None:
    words = [
        normalise(word)
        for command in build_registry().commands
        for word in (command.name, *command.aliases)
    ]
    assert len(words) == len(set(words))


def test_every_command_is_documented() -> None:
    for command in build_registry().commands:
        assert command.summary.strip() and command.details.strip(), command.name
        assert command.usage.split()[0] == command.name  # usage is written without prefix
        assert command.usage_line("!").startswith(f"!{command.name}")


def test_registering_a_word_twice_fails() -> None:
    registry = build_registry()
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.commands[0])


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("resume", "resume"),
        ("Résumé", "resume"),
        ("RÉSUMÉ", "resume"),
        ("summary", "resume"),
        ("help", "aide"),
        ("reset", "oublie"),
        ("settings", "config"),
        ("réglages", "config"),
        ("modèle", "modele"),
        ("model", "modele"),
        ("stats", "stats"),
        ("oublie-moi", "oublie-moi"),
        ("oublie_moi", "oublie-moi"),
        ("Forget-Me", "oublie-moi"),
    ],
)
def test_lookup_ignores_case_and_accents(word: str, name: str) -> None:
    command = build_registry().lookup(word)
    assert command is not None and command.name == name


def test_unknown_words_are_not_reserved() -> None:
    registry = build_registry()
    assert registry.lookup("meteo") is None
    assert not registry.is_reserved("bonjour")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!resume", Invocation("resume", "", "!")),
        ("/resume 2h", Invocation("resume", "2h", "/")),
        ("  !résumé 2 jours  ", Invocation("résumé", "2 jours", "!")),
        (
            "!config consigne Réponds en vers.",
            Invocation("config", "consigne Réponds en vers.", "!"),
        ),
        (
            "!config consigne ligne 1\nligne 2",
            Invocation("config", "consigne ligne 1\nligne 2", "!"),
        ),
        ("!oublie-moi", Invocation("oublie-moi", "", "!")),
        ("!", None),
        ("! resume", None),
        ("!!", None),
        ("!2h", None),
        ("bonjour !resume", None),
        ("/home/alice/fichier.txt", None),
        ("!important: réunion déplacée", None),
        ("resume 2h", None),
    ],
)
def test_parse_invocation(text: str, expected: Invocation | None) -> None:
    assert parse_invocation(text, PREFIXES) == expected


def test_prefix_is_optional_after_a_mention() -> None:
    assert parse_invocation("resume 2h", PREFIXES, prefix_optional=True) == Invocation(
        "resume", "2h", "!"
    )
    assert parse_invocation("", PREFIXES, prefix_optional=True) is None


def test_help_lists_moderator_variants_for_everyone() -> None:
    registry = build_registry()
    listed = {c.name: c.listed_power for c in registry.commands}
    assert listed["stats"] is Power.MODERATOR
    assert listed["config"] is listed["oublie"] is listed["modele"] is Power.EVERYONE


# --- Commands through dispatch ------------------------------------------------------------------
class WordCounter:
    async def warm_up(self) -> None:
        pass

    def count(self, text: str) -> int:
        return len(text.split())


class ScriptedLLM:
    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self.error: LLMError | None = None
        self.answer = "**Résumé** : tout va bien."
        self.respond: Callable[[ChatRequest], str] | None = None

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        text = self.respond(request) if self.respond is not None else self.answer
        return Completion(text=text, prompt_tokens=70, completion_tokens=7)


@dataclass
class Reply:
    text: str
    notice: bool
    purpose: str


@dataclass
class RecordingOutbox:
    replies: list[Reply] = field(default_factory=list)
    typing_calls: list[bool] = field(default_factory=list)

    async def reply(
        self,
        trigger: IncomingMessage,
        markdown: str,
        *,
        purpose: str = "answer",
        notice: bool = False,
    ) -> list[str]:
        self.replies.append(Reply(markdown, notice, purpose))
        return [f"$reply{next(_ids)}"]

    async def typing(self, room_id: str, typing: bool) -> None:
        self.typing_calls.append(typing)


@dataclass
class Env:
    store: Store
    settings: Settings
    registry: CommandRegistry
    room_config: RoomConfigRepository
    room_commands: RoomCommandsRepository
    llm: ScriptedLLM
    outbox: RecordingOutbox
    levels: dict[str, int]

    async def run(
        self,
        text: str,
        *,
        sender: str = ALICE,
        room_id: str = ROOM,
        direct: bool = False,
        thread: str | None = None,
        at_ms: int | None = None,
    ) -> list[Reply]:
        """Dispatch one command like the router does; return the replies it produced."""
        invocation = parse_invocation(text, PREFIXES)
        assert invocation is not None
        message = IncomingMessage(
            room_id=room_id,
            event_id=f"$cmd{next(_ids)}",
            sender=sender,
            sender_name=sender[1:].split(":")[0].title(),
            kind=MessageKind.TEXT,
            body=text,
            timestamp_ms=at_ms or now_ms(),
            thread_root_id=thread,
        )
        room = RoomContext(
            room_id=room_id,
            name="Équipe projet",
            is_direct=direct,
            encrypted=False,
        )

        async def power_level_of(user_id: str) -> int:
            return self.levels.get(user_id, 0)

        ctx = CommandContext(
            message=message,
            room=room,
            room_settings=self.room_config.get(room_id),
            settings=self.settings,
            store=self.store,
            llm=self.llm,  # type: ignore[arg-type]
            outbox=self.outbox,  # type: ignore[arg-type]
            registry=self.registry,
            conversation=ConversationHandler(
                self.settings,
                self.store,
                self.llm,  # type: ignore[arg-type]
                WordCounter(),
                self.outbox,  # type: ignore[arg-type]
            ),
            room_config=self.room_config,
            power_level_of=power_level_of,
            room_commands=self.room_commands,
            prefix=invocation.prefix,
            summarizer=Summarizer(self.llm, WordCounter(), self.settings),  # type: ignore[arg-type]
        )
        before = len(self.outbox.replies)
        await self.registry.dispatch(ctx, invocation)
        return self.outbox.replies[before:]

    async def say(
        self,
        body: str,
        *,
        sender: str = ALICE,
        minutes_ago: float,
        room_id: str = ROOM,
        **extra: Any,
    ) -> StoredMessage:
        stored = StoredMessage(
            event_id=f"$m{next(_ids)}",
            room_id=room_id,
            sender=sender,
            sender_name=sender[1:].split(":")[0].title(),
            body=body,
            timestamp_ms=now_ms() - int(minutes_ago * 60_000),
            **extra,
        )
        await self.store.messages.save([stored])
        return stored


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = await Store.open(tmp_path / "bot.sqlite3")
    settings = Settings(
        homeserver="https://matrix.example",
        user_id="@bot:localhost",
        password="secret",
        mistral_api_key="key",
        allowed_models=["mistral-small-latest", "mistral-large-latest"],
        context_token_budget=4_000,
        max_answer_tokens=300,
    )
    room_config = RoomConfigRepository(store)
    await room_config.load_all()
    try:
        yield Env(
            store=store,
            settings=settings,
            registry=build_registry(),
            room_config=room_config,
            room_commands=RoomCommandsRepository(store),
            llm=ScriptedLLM(),
            outbox=RecordingOutbox(),
            levels={MODERATOR: 100},
        )
    finally:
        await store.close()


def only(replies: list[Reply]) -> str:
    assert len(replies) == 1, replies
    return replies[0].text


async def test_unknown_command_gets_a_hint_and_no_llm_call(env: Env) -> None:
    text = only(await env.run("!meteo demain"))
    assert "Commande inconnue" in text and "!aide" in text
    assert env.llm.requests == []


async def test_bad_arguments_get_the_usage_line(env: Env) -> None:
    text = only(await env.run("/resume n'importe quoi"))
    assert "Usage : `/resume [N | durée | date] [fil] [en privé]`" in text
    assert env.llm.requests == []
    assert "Usage : `!stats`" in only(await env.run("!stats maintenant", sender=MODERATOR))


# aide
async def test_help_lists_what_the_user_may_run(env: Env) -> None:
    text = only(await env.run("!aide"))
    assert "`!resume [N | durée | date] [fil] [en privé]`" in text and "`!oublie-moi`" in text
    assert "!stats" not in text
    assert "`!stats`" in only(await env.run("!help", sender=MODERATOR))
    assert "`!stats`" in only(await env.run("!aide", direct=True))


async def test_help_on_one_command(env: Env) -> None:
    text = only(await env.run("!aide résumé"))
    assert (
        "`!resume [N | durée | date] [fil] [en privé]`" in text
        and "`!summary`" in text
        and "30 jours" in text
    )
    assert texts.HELP_POWER_EVERYONE in text
    assert "modérateurs" in only(await env.run("!aide !stats"))
    assert "certaines variantes" in only(await env.run("!aide config"))
    unknown = only(await env.run("!aide meteo"))
    assert "Je ne connais pas la commande `meteo`" in unknown


# oublie
async def _remember_a_turn(env: Env) -> None:
    turn = ConversationTurn(
        role="user", sender=ALICE, sender_name="Alice", content="q", event_id="$q", timestamp_ms=1
    )
    message = IncomingMessage(
        room_id=ROOM,
        event_id="$q",
        sender=ALICE,
        sender_name="Alice",
        kind=MessageKind.TEXT,
        body="q",
        timestamp_ms=1,
    )
    await env.store.triggers.finish(message, "answered", turns=[turn])


async def test_reset_clears_the_conversation_but_keeps_room_messages(env: Env) -> None:
    await _remember_a_turn(env)
    await env.say("bonjour", minutes_ago=5)
    text = only(await env.run("!oublie"))
    assert "oublié" in text
    assert await env.store.messages.recent_turns(ROOM, None, 10) == []
    assert len(await env.store.messages.in_window(ROOM)) == 1


async def test_reset_everything_is_for_moderators(env: Env) -> None:
    await env.say("bonjour", minutes_ago=5)
    assert "réservée aux modérateurs" in only(await env.run("!reset all"))
    assert len(await env.store.messages.in_window(ROOM)) == 1
    text = only(await env.run("!oublie TOUT", sender=MODERATOR))
    assert "1 messages" in text or "1 message" in text
    assert await env.store.messages.in_window(ROOM) == []
    assert "Usage" in only(await env.run("!oublie n'importe"))


async def test_reset_everything_is_allowed_in_a_direct_chat(env: Env) -> None:
    assert "Tout est oublié" in only(await env.run("!oublie tout", direct=True))


# config
async def test_config_shows_every_setting(env: Env) -> None:
    text = only(await env.run("!config"))
    for key in ("consigne", "mode", "modele", "temperature", "langue", "resumes", "streaming"):
        assert f"`{key}`" in text
    assert "(par défaut : `mistral-small-latest`)" in text
    assert "Consigne ajoutée au prompt système" in text


async def test_config_change_is_for_moderators_and_audited(env: Env) -> None:
    refused = only(await env.run("!config consigne Réponds en vers."))
    assert "réservée aux modérateurs" in refused
    assert env.room_config.get(ROOM).consigne == ""

    done = only(await env.run("!config Consigne Réponds en vers.", sender=MODERATOR))
    assert done == "✅ consigne : (aucune) → `Réponds en vers.`"
    assert env.room_config.get(ROOM).consigne == "Réponds en vers."
    audit = await env.store.settings.audit_of(ROOM)
    assert [(a.user_id, a.key, a.new_value) for a in audit] == [
        (MODERATOR, "consigne", "Réponds en vers.")
    ]
    assert "Réponds en vers." in only(await env.run("!settings prompt"))  # anyone can read

    again = only(await env.run("!config consigne Réponds en vers.", sender=MODERATOR))
    assert "rien n'a changé" in again
    assert len(await env.store.settings.audit_of(ROOM)) == 1

    reset = only(await env.run("!config consigne défaut", sender=MODERATOR))
    assert reset == "✅ consigne : `Réponds en vers.` → (aucune)"
    assert env.room_config.get(ROOM).consigne == ""


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("!config temperature 3", "trop grande"),
        ("!config température beaucoup", "nombre"),
        ("!config resumes peut-être", "oui ou non"),
        ("!config mode parfois", "mentions, tous"),
        ("!config modele gpt-4", "non autorisé"),
        ("!config langue x", "trop court"),
        ("!config consigne " + "a" * 2001, "trop long"),
    ],
)
async def test_invalid_values_change_nothing(env: Env, command: str, reason: str) -> None:
    text = only(await env.run(command, sender=MODERATOR))
    assert text.startswith("❌") and reason in text and "Rien n'a été modifié" in text
    assert await env.store.settings.audit_of(ROOM) == []


async def test_config_values_in_french(env: Env) -> None:
    assert only(await env.run("!config température 0,7", sender=MODERATOR)).endswith(
        "(par défaut : `0,3`) → `0,7`"
    )
    assert env.room_config.get(ROOM).temperature == 0.7
    await env.run("!config résumés non", sender=MODERATOR)
    assert env.room_config.get(ROOM).resumes is False
    await env.run("!config mode tous", sender=MODERATOR)
    assert env.room_config.get(ROOM).mode.value == "tous"


async def test_config_unknown_key_is_a_usage_error(env: Env) -> None:
    text = only(await env.run("!config couleur bleu", sender=MODERATOR))
    assert "réglage inconnu : `couleur`" in text and "Usage" in text


# modele
async def test_model_show_and_switch(env: Env) -> None:
    shown = only(await env.run("!modele"))
    assert "`mistral-small-latest` (modèle par défaut)" in shown
    assert "`mistral-large-latest`" in shown
    assert "réservée" in only(await env.run("!model mistral-large-latest"))
    done = only(await env.run("!modèle Mistral-Large-Latest", sender=MODERATOR))
    assert done == "✅ modele : (par défaut : `mistral-small-latest`) → `mistral-large-latest`"
    assert env.room_config.get(ROOM).modele == "mistral-large-latest"
    assert [a.key for a in await env.store.settings.audit_of(ROOM)] == ["modele"]
    assert "non autorisé" in only(await env.run("!modele gpt-4", sender=MODERATOR))
    await env.run("!modele defaut", sender=MODERATOR)
    assert env.room_config.get(ROOM).modele is None


# stats
async def test_stats_for_moderators(env: Env) -> None:
    assert "réservée aux modérateurs" in only(await env.run("!stats"))
    await env.store.usage.record(ROOM, 12_000, 345)
    text = only(await env.run("!stats", sender=MODERATOR))
    assert "12\u202f345" in text and "Dernière activité" in text and " à " in text
    assert "aucune" in only(await env.run("!stats", room_id=OTHER_ROOM, direct=True))


# oublie-moi
async def test_forget_me_deletes_the_asker_data_everywhere(env: Env) -> None:
    await env.say("un", minutes_ago=3)
    await env.say("deux", minutes_ago=2, room_id=OTHER_ROOM)
    await env.say("de Bob", minutes_ago=1, sender=BOB)
    text = only(await env.run("!forget-me"))
    assert "2 message(s)" in text
    remaining = await env.store.messages.in_window(ROOM)
    assert [m.sender for m in remaining] == [BOB]
    assert await env.store.messages.in_window(OTHER_ROOM) == []


# resume
async def test_summary_of_the_default_window(env: Env) -> None:
    await env.say("ancien message", minutes_ago=120)
    await env.say("ma dernière question", minutes_ago=60)
    await env.say("Réunion jeudi 10h", sender=BOB, minutes_ago=30)
    await env.say("!resume", sender=BOB, minutes_ago=20)  # commands are not summarised
    await env.say("Je prépare l'ordre du jour", sender=MODERATOR, minutes_ago=10)
    replies = await env.run("!resume")
    assert len(replies) == 1 and replies[0].notice is False
    assert replies[0].text.startswith("**Résumé du salon** — depuis votre dernier message, ")
    assert replies[0].text.split("\n")[0].endswith(" — 2 messages")
    assert "tout va bien" in replies[0].text
    [request] = env.llm.requests
    prompt = request.messages[-1].content
    assert "Bob : Réunion jeudi 10h" in prompt and "Mod : Je prépare" in prompt
    assert "ancien message" not in prompt and "!resume" not in prompt
    assert "ma dernière question" not in prompt  # from after the asker last spoke
    assert "Équipe projet" in request.messages[0].content
    usage = await env.store.usage.of_room(ROOM)
    assert (usage.prompt_tokens, usage.completion_tokens) == (70, 7)
    assert env.outbox.typing_calls == [True, False]


async def test_summary_by_count_and_by_duration(env: Env) -> None:
    for i in range(10):
        await env.say(f"message {i}", sender=BOB, minutes_ago=295 - i * 30)
    assert "— les 4 derniers messages" in only(await env.run("!resume 4"))
    assert "message 9" in env.llm.requests[-1].messages[-1].content
    assert "message 5" not in env.llm.requests[-1].messages[-1].content
    assert "— 2 messages" in only(await env.run("!résumé 1h"))
    assert "— 10 messages" in only(await env.run("!summary 1 semaine"))


async def test_summary_of_a_thread_reads_only_the_thread(env: Env) -> None:
    root = await env.say("Sujet : budget", sender=BOB, minutes_ago=30)
    await env.say("Dans le fil", minutes_ago=20, thread_root_id=root.event_id)
    await env.say("Hors du fil", minutes_ago=10)
    text = only(await env.run("!resume 50", thread=root.event_id))
    assert text.startswith("**Résumé du fil de discussion** — les 2 derniers messages")
    prompt = env.llm.requests[-1].messages[-1].content
    assert "Sujet : budget" in prompt and "Dans le fil" in prompt and "Hors du fil" not in prompt


async def test_summary_never_reads_another_room(env: Env) -> None:
    await env.say("secret d'un autre salon", minutes_ago=5, room_id=OTHER_ROOM)
    await env.say("ici", sender=BOB, minutes_ago=5)
    await env.run("!resume 100")
    assert "secret" not in env.llm.requests[-1].messages[-1].content


async def test_empty_window_makes_no_llm_call(env: Env) -> None:
    empty = only(await env.run("!resume 2h"))
    assert "Rien à résumer" in empty and "Usage : `!resume [N | durée | date]" in empty
    assert "Usage : `!resume" in only(await env.run("!resume 12/11-13/11"))
    await env.say("ma question", minutes_ago=1)
    text = only(await env.run("!resume"))
    assert "depuis votre dernier message" in text and "`!resume 50`" in text
    assert env.llm.requests == []


async def test_summaries_can_be_disabled(env: Env) -> None:
    await env.say("bonjour", sender=BOB, minutes_ago=1)
    await env.run("!config resumes non", sender=MODERATOR)
    text = only(await env.run("!resume 10"))
    assert "désactivés" in text and env.llm.requests == []


async def test_llm_failure_gives_the_french_error(env: Env) -> None:
    await env.say("bonjour", sender=BOB, minutes_ago=1)
    env.llm.error = LLMError(LLMErrorKind.RATE_LIMITED)
    replies = await env.run("!resume 10")
    assert [r.text for r in replies] == [texts.LLM_RATE_LIMITED]
    assert (await env.store.usage.of_room(ROOM)).prompt_tokens == 0


async def test_commands_run_concurrently_in_different_rooms(env: Env) -> None:
    """No shared state between invocations: two rooms' commands interleave safely."""
    await env.say("a", sender=BOB, minutes_ago=1)
    await env.say("b", sender=BOB, minutes_ago=1, room_id=OTHER_ROOM)
    await asyncio.gather(env.run("!resume 5"), env.run("!resume 5", room_id=OTHER_ROOM))
    assert [
        r.text.startswith("**Résumé du salon** — le dernier message") for r in env.outbox.replies
    ] == [
        True,
        True,
    ]
    prompts = [request.messages[-1].content for request in env.llm.requests]
    assert sorted(p.split("Bob : ")[1][0] for p in prompts) == ["a", "b"]


async def test_summary_starts_where_the_asker_last_read(env: Env) -> None:
    from bot.models import ReadReceipt

    first = await env.say("lu depuis longtemps", sender=BOB, minutes_ago=200)
    await env.say("ma dernière question", minutes_ago=150)
    read = await env.say("lu aussi", sender=BOB, minutes_ago=100)
    await env.say("pas encore lu", sender=BOB, minutes_ago=50)

    async def receipt(event: StoredMessage, minutes_ago: float) -> None:
        await env.store.receipts.save(
            ReadReceipt(
                room_id=ROOM,
                user_id=ALICE,
                event_id=event.event_id,
                read_at_ms=now_ms() - int(minutes_ago * 60_000),
            ),
            15 * 60_000,
        )

    await receipt(first, 190)
    await receipt(read, 90)
    text = only(await env.run("!resume"))
    assert text.startswith("**Résumé du salon** — depuis votre dernière lecture, ")
    assert text.split("\n")[0].endswith(" — 1 message")
    prompt = env.llm.requests[-1].messages[-1].content
    assert "pas encore lu" in prompt and "lu aussi" not in prompt
    assert "ma dernière question" not in prompt, "a receipt beats the asker's last message"

    # The room opened again: the newest receipt marks everything read; the previous
    # session's last receipt is where the asker stopped.
    latest = await env.say("tout dernier", sender=BOB, minutes_ago=1)
    await receipt(latest, 0.5)
    only(await env.run("!resume"))
    prompt = env.llm.requests[-1].messages[-1].content
    assert "pas encore lu" in prompt and "tout dernier" in prompt and "lu aussi" not in prompt


async def test_everything_read_is_said_without_a_model_call(env: Env) -> None:
    from bot.models import ReadReceipt

    last = await env.say("fin", sender=BOB, minutes_ago=5)
    await env.store.receipts.save(
        ReadReceipt(room_id=ROOM, user_id=ALICE, event_id=last.event_id, read_at_ms=now_ms()),
        15 * 60_000,
    )
    assert "Rien de nouveau depuis votre dernière lecture" in only(await env.run("!resume"))
    assert env.llm.requests == []


async def test_without_receipt_or_message_the_last_day_is_summarised(env: Env) -> None:
    await env.say("avant-hier", sender=BOB, minutes_ago=25 * 60)
    await env.say("ce matin", sender=BOB, minutes_ago=60)
    text = only(await env.run("!resume"))
    assert text.startswith("**Résumé du salon** — dernières 24 heures — 1 message")
    prompt = env.llm.requests[-1].messages[-1].content
    assert "ce matin" in prompt and "avant-hier" not in prompt


async def test_date_windows_and_their_bad_forms(env: Env) -> None:
    from datetime import datetime, timedelta

    now = datetime.now(PARIS)
    yesterday_noon = now.replace(hour=12, minute=0) - timedelta(days=1)
    minutes = (now - yesterday_noon).total_seconds() / 60
    await env.say("hier midi", sender=BOB, minutes_ago=minutes)
    await env.say("à l'instant", sender=BOB, minutes_ago=0.1)
    text = only(await env.run("!resume hier"))
    assert text.startswith("**Résumé du salon** — hier, ") and text.split("\n")[0].endswith(
        " — 1 message"
    )
    prompt = env.llm.requests[-1].messages[-1].content
    assert "hier midi" in prompt and "à l'instant" not in prompt
    calls = len(env.llm.requests)
    for bad, reason in [
        ("!resume 15/11-12/11", "période inversée"),
        ("!resume 31/02", "date inconnue"),
        ("!resume fil", "pour résumer un fil"),
        ("!resume demain", "ni un nombre, ni une durée, ni une date"),
    ]:
        reply = only(await env.run(bad))
        assert reason in reply and "Usage : `!resume [N | durée | date]" in reply
        assert "Traceback" not in reply
    assert len(env.llm.requests) == calls


async def test_a_window_over_the_cap_is_refused(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from commands import resume

    await env.store.messages.save(
        [
            StoredMessage(
                event_id=f"$cap{i}",
                room_id=ROOM,
                sender=BOB,
                sender_name="Bob",
                body=f"m{i}",
                timestamp_ms=now_ms() - 60_000 + i,
            )
            for i in range(30)
        ]
    )
    monkeypatch.setattr(resume, "MAX_SUMMARY_MESSAGES", 20)
    reply = only(await env.run("!resume 2h"))
    assert "plus de 20 messages sur cette période" in reply and "Usage" in reply
    assert env.llm.requests == []


async def test_summary_points_link_to_their_messages(env: Env) -> None:
    decided = await env.say("On livre vendredi", sender=BOB, minutes_ago=3)
    asked = await env.say("Qui fait la note ?", sender=MODERATOR, minutes_ago=2)
    env.llm.answer = (
        "### Décisions\n- Livraison vendredi [1] ([voir](https://evil.example))\n"
        "### Actions\n- **Bob** : la note [2, 7]\n### Questions ouvertes\n- Aucune."
    )
    text = only(await env.run("!resume 2"))
    prompt = env.llm.requests[-1].messages[-1].content
    assert "[1] " in prompt and "Bob : On livre vendredi" in prompt
    assert "[2] " in prompt and "Mod : Qui fait la note ?" in prompt
    link = "https://matrix.to/#/{room}/{event}?via=localhost"
    assert f"[1]({link.format(room=ROOM, event=decided.event_id)})" in text
    assert f"[2]({link.format(room=ROOM, event=asked.event_id)})" in text
    assert "evil.example" not in text and "[7]" not in text
    assert "[Bob](https://matrix.to/#/@bob:localhost)" in text
    assert "Questions ouvertes" not in text


# resume over the generated week of a team (bench/team_week.py): exact windows and links
WEEK_NOW = datetime(2026, 11, 13, 18, 0, tzinfo=PARIS)  # Friday evening of that week
NUMBERED = re.compile(r"^\[(\d+)\] (?:\d\d/\d\d )?\d\d:\d\d (.+?) : (.*)$", re.MULTILINE)


@pytest.mark.parametrize(
    ("form", "days", "from_hour", "label"),
    [
        ("hier", range(3, 4), 0, "hier, jeudi 12/11"),
        ("12/11", range(3, 4), 0, "hier, jeudi 12/11"),
        ("11/11", range(2, 3), 0, "le mercredi 11/11"),
        ("10/11-12/11", range(1, 4), 0, "du mardi 10/11 au jeudi 12/11"),
        ("depuis lundi", range(0, 5), 0, "depuis le lundi 09/11"),
        ("depuis mercredi", range(2, 5), 0, "depuis le mercredi 11/11"),
        ("depuis 9h", range(4, 5), 9, "depuis 9h00"),
        ("depuis 14h", range(4, 5), 14, "depuis 14h00"),
        ("3h", range(4, 5), 15, "depuis 15:00"),
    ],
)
async def test_team_week_windows_numbering_and_links_are_exact(
    env: Env, form: str, days: range, from_hour: int, label: str
) -> None:
    corpus = team_week.build()
    await env.store.messages.save(
        StoredMessage(
            event_id=m.event_id,
            room_id=ROOM,
            sender=m.sender,
            sender_name=m.sender_name,
            body=m.body,
            timestamp_ms=m.timestamp_ms,
        )
        for m in corpus
    )
    expected = [
        m
        for m in corpus
        if m.line.day in days and (m.line.day != days[0] or m.line.hour >= from_hour)
    ]
    decisions = {m.body for m in corpus if m.line.decision}

    def cite_decisions(request: ChatRequest) -> str:
        lines = NUMBERED.findall(request.messages[-1].content)
        cited = [f"- {text} [{n}]" for n, _, text in lines if text in decisions]
        return "### Décisions\n" + "\n".join(cited) if cited else "Rien de notable [999]."

    env.llm.respond = cite_decisions
    text = only(await env.run(f"!resume {form}", at_ms=int(WEEK_NOW.timestamp() * 1000)))

    numbered = NUMBERED.findall(env.llm.requests[-1].messages[-1].content)
    assert [(int(n), name, body) for n, name, body in numbered] == [
        (i, m.sender_name, m.body) for i, m in enumerate(expected, start=1)
    ]
    assert text.split("\n")[0] == (f"**Résumé du salon** — {label} — {len(expected)} messages")
    linked = re.findall(
        r"\]\(https://matrix\.to/#/!room:localhost/(\$[^?]+)\?via=localhost\)", text
    )
    assert linked == [m.event_id for m in expected if m.line.decision]
    assert "999" not in text
