"""The command registry and every command, driven through `dispatch` with a real SQLite store.

Only Matrix and the LLM are replaced (a recording outbox, a scripted LLM); power levels come
from a dict. Integration tests against Synapse cover the wiring.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot import texts
from bot.answer.conversation import ConversationHandler
from bot.answer.llm import ChatRequest, Completion, LLMError, LLMErrorKind
from bot.answer.summary import Summarizer
from bot.classify import Invocation, parse_invocation
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
        "oublie-moi",
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
    def count(self, text: str) -> int:
        return len(text.split())


class ScriptedLLM:
    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self.error: LLMError | None = None

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return Completion(text="**Résumé** : tout va bien.", prompt_tokens=70, completion_tokens=7)


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
            member_count=2 if direct else 5,
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
    assert "Usage : `/resume [N | durée]`" in text
    assert env.llm.requests == []
    assert "Usage : `!stats`" in only(await env.run("!stats maintenant", sender=MODERATOR))


# aide
async def test_help_lists_what_the_user_may_run(env: Env) -> None:
    text = only(await env.run("!aide"))
    assert "`!resume [N | durée]`" in text and "`!oublie-moi`" in text
    assert "!stats" not in text
    assert "`!stats`" in only(await env.run("!help", sender=MODERATOR))
    assert "`!stats`" in only(await env.run("!aide", direct=True))


async def test_help_on_one_command(env: Env) -> None:
    text = only(await env.run("!aide résumé"))
    assert "`!resume [N | durée]`" in text and "`!summary`" in text and "30 jours" in text
    assert texts.HELP_POWER_EVERYONE in text
    assert "modérateurs" in only(await env.run("!aide !stats"))
    assert "certaines variantes" in only(await env.run("!aide config"))
    unknown = only(await env.run("!aide meteo"))
    assert "Je ne connais pas la commande « meteo »" in unknown


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
    assert "(par défaut : mistral-small-latest)" in text
    assert "Consigne ajoutée au prompt système" in text


async def test_config_change_is_for_moderators_and_audited(env: Env) -> None:
    refused = only(await env.run("!config consigne Réponds en vers."))
    assert "réservée aux modérateurs" in refused
    assert env.room_config.get(ROOM).consigne == ""

    done = only(await env.run("!config Consigne Réponds en vers.", sender=MODERATOR))
    assert done == "✅ consigne : (aucune) → Réponds en vers."
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
    assert reset == "✅ consigne : Réponds en vers. → (aucune)"
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
        "(par défaut : 0,3) → 0,7"
    )
    assert env.room_config.get(ROOM).temperature == 0.7
    await env.run("!config résumés non", sender=MODERATOR)
    assert env.room_config.get(ROOM).resumes is False
    await env.run("!config mode tous", sender=MODERATOR)
    assert env.room_config.get(ROOM).mode.value == "tous"


async def test_config_unknown_key_is_a_usage_error(env: Env) -> None:
    text = only(await env.run("!config couleur bleu", sender=MODERATOR))
    assert "réglage inconnu : « couleur »" in text and "Usage" in text


# modele
async def test_model_show_and_switch(env: Env) -> None:
    shown = only(await env.run("!modele"))
    assert "`mistral-small-latest` (modèle par défaut)" in shown
    assert "`mistral-large-latest`" in shown
    assert "réservée" in only(await env.run("!model mistral-large-latest"))
    done = only(await env.run("!modèle Mistral-Large-Latest", sender=MODERATOR))
    assert done == "✅ modele : (par défaut : mistral-small-latest) → mistral-large-latest"
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
    assert replies[0].text.startswith("**Résumé des 2 derniers messages (depuis ")
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
    assert "des 4 derniers messages" in only(await env.run("!resume 4"))
    assert "message 9" in env.llm.requests[-1].messages[-1].content
    assert "message 5" not in env.llm.requests[-1].messages[-1].content
    assert "des 2 derniers messages" in only(await env.run("!résumé 1h"))
    assert "des 10 derniers messages" in only(await env.run("!summary 1 semaine"))


async def test_summary_of_a_thread_reads_only_the_thread(env: Env) -> None:
    root = await env.say("Sujet : budget", sender=BOB, minutes_ago=30)
    await env.say("Dans le fil", minutes_ago=20, thread_root_id=root.event_id)
    await env.say("Hors du fil", minutes_ago=10)
    text = only(await env.run("!resume 50", thread=root.event_id))
    assert text.startswith("**Résumé du fil de discussion, 2 messages")
    prompt = env.llm.requests[-1].messages[-1].content
    assert "Sujet : budget" in prompt and "Dans le fil" in prompt and "Hors du fil" not in prompt


async def test_summary_never_reads_another_room(env: Env) -> None:
    await env.say("secret d'un autre salon", minutes_ago=5, room_id=OTHER_ROOM)
    await env.say("ici", sender=BOB, minutes_ago=5)
    await env.run("!resume 100")
    assert "secret" not in env.llm.requests[-1].messages[-1].content


async def test_empty_window_makes_no_llm_call(env: Env) -> None:
    assert "Rien à résumer" in only(await env.run("!resume 2h"))
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
    assert [r.text.startswith("**Résumé du dernier message") for r in env.outbox.replies] == [
        True,
        True,
    ]
    prompts = sorted(request.messages[-1].content for request in env.llm.requests)
    assert prompts[0].endswith("Bob : a") and prompts[1].endswith("Bob : b")
