"""Moderators configure the room's commands on a real Synapse: enable/disable, custom
commands, scheduled digests (with a clock the test moves, never real waiting)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from bot.schedule import PARIS
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import StartBot
from tests.integration.test_commands import group_room
from tests.support.bot_helpers import ask, room_with_bot
from tests.support.matrix_client import events_in, send_text, sync_once, wait_for_event

CP_TEMPLATE = "Rédige un communiqué de presse à partir de : {texte}"


async def test_non_moderators_cannot_change_room_commands(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    for attempt in (
        f'!commande ajouter cp "{CP_TEMPLATE}"',
        "!commandes désactiver resume",
        "!commandes activer resume",
        '!planifier "lun-ven 18:00" resume 1j',
    ):
        refused = await ask(bob, room_id, bot.user_id, attempt)
        assert "réservée aux modérateurs" in refused["content"]["body"], attempt
    await ask(alice, room_id, bot.user_id, f'!commande ajouter cp "{CP_TEMPLATE}"')
    refused = await ask(bob, room_id, bot.user_id, "!commande supprimer cp")
    assert "réservée aux modérateurs" in refused["content"]["body"]

    assert await bot.store.schedules.list(room_id) == []
    assert bot.app.router._room_commands.disabled(room_id) == set()
    assert bot.app.router._room_commands.custom(room_id, "cp") is not None
    assert fake_llm.requests == []


async def test_custom_command_fills_its_template(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    added = await ask(
        alice, room_id, bot.user_id, f'!commande ajouter cp "{CP_TEMPLATE}" Communiqué de presse'
    )
    assert "✅" in added["content"]["body"]
    shadow = await ask(alice, room_id, bot.user_id, '!commande ajouter resume "x {texte}"')
    assert "déjà une commande" in shadow["content"]["body"]

    answer = await ask(bob, room_id, bot.user_id, "!cp inauguration du guichet unique {lundi}")

    assert fake_llm.requests[-1]["messages"][-1]["content"] == (
        "Rédige un communiqué de presse à partir de : inauguration du guichet unique {lundi}"
    )
    assert answer["content"]["msgtype"] == "m.text"
    help_text = (await ask(bob, room_id, bot.user_id, "!aide"))["content"]["body"]
    assert "!cp" in help_text and "Communiqué de presse" in help_text
    audit = await bot.store.settings.audit_of(room_id)
    assert [(row.key, row.new_value) for row in audit] == [("commande-perso:cp", CP_TEMPLATE)]

    await ask(alice, room_id, bot.user_id, "!commande supprimer cp")
    gone = await ask(bob, room_id, bot.user_id, f"{bot.user_id} !cp encore", mentions=[bot.user_id])
    assert "Commande inconnue" in gone["content"]["body"]


async def test_custom_command_room_messages_come_from_this_room_only(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    elsewhere = await room_with_bot(alice, bot.user_id, name="Autre")
    await send_text(alice, elsewhere, "Confidentiel ailleurs : opération Mistral gagnant")
    await send_text(bob, room_id, "Le comité valide le budget 2027")
    await sync_once(alice)
    await ask(
        alice, room_id, bot.user_id, '!commande ajouter cr "Fais un compte rendu de : {resume}"'
    )

    await ask(bob, room_id, bot.user_id, "!cr")

    prompt = fake_llm.requests[-1]["messages"][-1]["content"]
    assert prompt.startswith("Fais un compte rendu de : ")
    assert "Le comité valide le budget 2027" in prompt
    assert "opération Mistral gagnant" not in prompt


async def test_disabled_command_is_refused_and_hidden_from_help(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)

    await ask(alice, room_id, bot.user_id, "!commandes désactiver resume")
    refused = await ask(bob, room_id, bot.user_id, "!resume 10")
    help_text = (await ask(bob, room_id, bot.user_id, "!aide"))["content"]["body"]
    cannot = await ask(alice, room_id, bot.user_id, "!commandes désactiver aide")

    assert "désactivée dans ce salon" in refused["content"]["body"]
    assert "!resume" not in help_text
    assert "ne peut pas être désactivée" in cannot["content"]["body"]
    assert fake_llm.requests == []
    await ask(alice, room_id, bot.user_id, "!commandes activer resume")
    assert "!resume" in (await ask(bob, room_id, bot.user_id, "!aide"))["content"]["body"]


def bot_posts(client: Any, room_id: str, bot_id: str, text: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events_in(client, room_id)
        if e["sender"] == bot_id and text in e["content"].get("body", "")
    ]


async def test_schedule_fires_once_survives_restart_and_skips_empty_windows(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    quiet_room = await room_with_bot(alice, bot.user_id, name="Salon calme")
    soon = datetime.fromtimestamp(time.time() + 180, PARIS)
    spec = f"tous-les-jours {soon:%H:%M}"

    confirmation = await ask(alice, room_id, bot.user_id, f'!planifier "{spec}" resume 1j')
    assert "Planification n°" in confirmation["content"]["body"]
    await ask(alice, quiet_room, bot.user_id, f'!planifier "{spec}" resume 1j')
    await send_text(bob, room_id, "Décision : la note part demain")
    await sync_once(alice)
    [schedule] = await bot.store.schedules.list(room_id)

    await bot.restart()
    assert bot.app.scheduler is not None
    bot.app.scheduler.clock = lambda: schedule.next_run_ms / 1000 + 600  # 10 min late: made up
    assert await bot.app.scheduler.tick() == 2
    digest = await wait_for_event(
        alice,
        room_id,
        lambda e: "Résumé" in e["content"].get("body", "") and e["sender"] == bot.user_id,
    )
    assert "m.relates_to" not in digest["content"], "a scheduled post replies to nobody"
    assert "la note part demain" in fake_llm.requests[-1]["messages"][-1]["content"]

    assert await bot.app.scheduler.tick() == 0, "never twice"
    await bot.restart()
    bot.app.scheduler.clock = lambda: schedule.next_run_ms / 1000 + 600
    assert await bot.app.scheduler.tick() == 0, "never twice, even after a restart"
    await asyncio.sleep(1.0)
    await sync_once(alice)
    assert len(bot_posts(alice, room_id, bot.user_id, "Résumé")) == 1
    assert bot_posts(alice, quiet_room, bot.user_id, "Résumé") == [], "empty window: nothing"

    [moved] = await bot.store.schedules.list(room_id)
    assert moved.next_run_ms > schedule.next_run_ms
    bot.app.scheduler.clock = lambda: moved.next_run_ms / 1000 + 2 * 3600  # 2 h late: skipped
    assert await bot.app.scheduler.tick() == 0
    listing = await ask(alice, room_id, bot.user_id, "!planifier liste")
    assert spec in listing["content"]["body"]
    removed = await ask(alice, room_id, bot.user_id, f"!planifier supprimer {schedule.id}")
    assert "supprimée" in removed["content"]["body"]
    assert await bot.store.schedules.list(room_id) == []
