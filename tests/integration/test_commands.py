"""Commands on a real Synapse: summaries, help, reset, settings, model, stats, forget-me.

Power levels are set through the room's real `m.room.power_levels` state.
"""

from __future__ import annotations

from typing import Any

import nio

from bot import texts
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import RunningBot, StartBot
from tests.support.bot_helpers import ask, room_with_bot
from tests.support.matrix_client import join_room, send_text, sync_once, wait_for_event


async def group_room(alice: nio.AsyncClient, bob: nio.AsyncClient, bot: RunningBot) -> str:
    """Alice creates the room (its creator: highest power), invites the bot and Bob (level 0)."""
    room_id = await room_with_bot(alice, bot.user_id, name="Équipe projet")
    await alice.room_invite(room_id, bob.user_id)
    await join_room(bob, room_id)
    return room_id


async def set_power_level(client: nio.AsyncClient, room_id: str, user_id: str, level: int) -> None:
    current = await client.room_get_state_event(room_id, "m.room.power_levels")
    content = dict(current.content)
    content["users"] = {**content.get("users", {}), user_id: level}
    response = await client.room_put_state(room_id, "m.room.power_levels", content)
    assert isinstance(response, nio.RoomPutStateResponse), response


def summary_requests(fake_llm: FakeMistral) -> list[dict[str, Any]]:
    return [
        r
        for r in fake_llm.requests
        if "Transcription" in r["messages"][-1]["content"]
        or "Extrait" in r["messages"][-1]["content"]
        or "Résumés partiels" in r["messages"][-1]["content"]
    ]


async def test_help_lists_what_the_user_may_run(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    for_bob = await ask(bob, room_id, bot.user_id, "!aide")
    for_alice = await ask(alice, room_id, bot.user_id, "!help")
    detail = await ask(bob, room_id, bot.user_id, "!aide resume")

    assert "!resume" in for_bob["content"]["body"] and "!stats" not in for_bob["content"]["body"]
    assert "!stats" in for_alice["content"]["body"]
    assert "!resume" in detail["content"]["body"] and "summary" in detail["content"]["body"]
    assert fake_llm.requests == [], "commands never call the model"


async def test_unknown_command_and_bad_arguments_get_usage(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    unknown = await ask(alice, room_id, bot.user_id, "!inconnue")
    bad = await ask(alice, room_id, bot.user_id, "!resume -3 patates")

    assert "Commande inconnue" in unknown["content"]["body"]
    assert "Usage" in bad["content"]["body"] and "!resume" in bad["content"]["body"]
    assert fake_llm.requests == []


async def test_summary_covers_unmentioned_messages_of_the_window_only(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    other_room = await room_with_bot(alice, bot.user_id, name="Autre salon")
    await send_text(alice, other_room, "Ailleurs : le dossier Zéphyr est confidentiel")

    await send_text(alice, room_id, "Vieux message hors fenêtre : Boréal")
    for text in (
        "Décision : on livre vendredi",
        "Action : Bob prépare la note",
        "Question ouverte : budget ?",
    ):
        await send_text(bob, room_id, text)
    await sync_once(alice)
    answer = await ask(alice, room_id, bot.user_id, "!resume 3")

    request = summary_requests(fake_llm)[-1]
    prompt = "\n".join(m["content"] for m in request["messages"])
    for text in ("on livre vendredi", "Bob prépare la note", "budget ?"):
        assert text in prompt
    assert "Boréal" not in prompt and "Zéphyr" not in prompt
    assert bob.user_id.split(":")[0][1:] in prompt or "bob" in prompt.lower(), "speakers are named"
    assert answer["content"]["msgtype"] == "m.text"
    assert "Résumé" in answer["content"]["body"]


async def test_summary_of_empty_window_is_friendly(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    answer = await ask(alice, room_id, bot.user_id, "!resume 2h")

    assert "Rien à résumer" in answer["content"]["body"]
    assert fake_llm.requests == []


async def test_summary_map_reduce_on_history_larger_than_context(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(context_token_budget=1200, max_answer_tokens=200)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Comité")
    for n in range(40):
        await send_text(
            alice, room_id, f"Point {n} : " + "le comité examine la convention de partenariat " * 3
        )
    await sync_once(alice)

    progress = await ask(alice, room_id, bot.user_id, "!resume 40")
    await wait_for_event(
        alice,
        room_id,
        lambda e: (
            e["content"].get("m.relates_to", {}).get("event_id") == progress["event_id"]
            and e["content"].get("m.new_content", {}).get("body", "").startswith("**Résumé")
        ),
        timeout=60,
    )

    requests = summary_requests(fake_llm)
    chunks = [r for r in requests if r["messages"][-1]["content"].startswith("Extrait")]
    merges = [r for r in requests if r["messages"][-1]["content"].startswith("Résumés partiels")]
    assert len(chunks) >= 2
    assert merges and requests[-1] is merges[-1], "the partial summaries are merged last"
    assert "en un seul résumé cohérent" in merges[-1]["messages"][0]["content"]
    covered = "\n".join(r["messages"][-1]["content"] for r in chunks)
    assert all(f"Point {n} :" in covered for n in range(40))


async def test_reset_forgets_context(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    await ask(alice, room_id, bot.user_id, "Le code du projet est Pégase")
    await ask(alice, room_id, bot.user_id, "!oublie")
    await ask(alice, room_id, bot.user_id, "Quel est le code ?")

    assert "Pégase" not in " ".join(m["content"] for m in fake_llm.requests[-1]["messages"])


async def test_settings_change_needs_moderator_and_is_audited(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    refused = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en alexandrins.")
    assert "réservée aux modérateurs" in refused["content"]["body"]
    assert bot.app.router is not None
    assert (await bot.store.settings.audit_of(room_id)) == []

    shown = await ask(bob, room_id, bot.user_id, "!config")
    assert "consigne" in shown["content"]["body"]

    await set_power_level(alice, room_id, bob.user_id, 50)
    changed = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en alexandrins.")
    assert "✅" in changed["content"]["body"]
    invalid = await ask(bob, room_id, bot.user_id, "!config temperature 9")
    assert "Rien n'a été modifié" in invalid["content"]["body"]

    await ask(bob, room_id, bot.user_id, f"{bot.user_id} une question", mentions=[bot.user_id])
    assert "Réponds en alexandrins." in fake_llm.requests[-1]["messages"][0]["content"]
    audit = await bot.store.settings.audit_of(room_id)
    assert [(row.user_id, row.key, row.new_value) for row in audit] == [
        (bob.user_id, "consigne", "Réponds en alexandrins.")
    ]

    await bot.restart()
    await ask(bob, room_id, bot.user_id, f"{bot.user_id} encore", mentions=[bot.user_id])
    assert "Réponds en alexandrins." in fake_llm.requests[-1]["messages"][0]["content"], (
        "settings persist"
    )


async def test_model_switch_and_stats_for_moderators(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(allowed_models="mistral-small-latest,mistral-large-latest")
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    shown = await ask(bob, room_id, bot.user_id, "!modele")
    assert "mistral-small-latest" in shown["content"]["body"]
    refused = await ask(bob, room_id, bot.user_id, "!model mistral-large-latest")
    assert "réservée aux modérateurs" in refused["content"]["body"]
    not_allowed = await ask(alice, room_id, bot.user_id, "!modele gpt-4")
    assert "mistral-large-latest" in not_allowed["content"]["body"]
    await ask(alice, room_id, bot.user_id, "!modele mistral-large-latest")
    await ask(bob, room_id, bot.user_id, f"{bot.user_id} question", mentions=[bot.user_id])
    assert fake_llm.requests[-1]["model"] == "mistral-large-latest"

    stats_refused = await ask(bob, room_id, bot.user_id, "!stats")
    assert "réservée aux modérateurs" in stats_refused["content"]["body"]
    stats = await ask(alice, room_id, bot.user_id, "!stats")
    assert "Questions reçues : 1" in stats["content"]["body"]
    assert "Jetons consommés" in stats["content"]["body"]


async def test_forget_me_deletes_the_users_data_everywhere(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    dm = await room_with_bot(bob, bot.user_id, is_direct=True)
    await send_text(bob, room_id, "Mon numéro de poste est le 4242")
    await ask(bob, dm, bot.user_id, "Ma question personnelle")
    await send_text(alice, room_id, "Message d'Alice")

    confirmation = await ask(bob, dm, bot.user_id, "!oublie-moi")

    exported = await bot.store.people.export(bob.user_id)
    assert exported["messages"] == [] and exported["conversation_turns"] == []
    assert (await bot.store.people.export(alice.user_id))["messages"], "others keep their data"
    assert any(char.isdigit() for char in confirmation["content"]["body"])
    assert texts.UNKNOWN_COMMAND.split(":")[0] not in confirmation["content"]["body"]


async def test_forget_everything_is_for_moderators_and_drops_stored_messages(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await send_text(bob, room_id, "Note interne : le prestataire est retenu")
    await sync_once(alice)

    refused = await ask(bob, room_id, bot.user_id, "!oublie tout")
    assert "réservée aux modérateurs" in refused["content"]["body"]
    assert await bot.store.messages.in_window(room_id), "nothing was deleted"

    done = await ask(alice, room_id, bot.user_id, "!reset all")
    assert done["sender"] == bot.user_id
    remaining = await bot.store.messages.in_window(room_id)
    assert not any("prestataire" in message.body for message in remaining)
    empty = await ask(alice, room_id, bot.user_id, "!resume 10")
    assert "Rien à résumer" in empty["content"]["body"]
