"""`!resume` on a real Synapse: since the last read receipt, points linked to their messages,
private summaries in a real DM, progress edits, a thread summarised from the main timeline.

The fake model answers summaries with a responder that cites transcript numbers, so the links
the bot builds can be checked against the real event IDs.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

import nio

from bot import texts
from bot.french import PARIS
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import RunningBot, StartBot
from tests.integration.test_commands import group_room, summary_requests
from tests.support.bot_helpers import ask, replies_to
from tests.support.matrix_client import (
    join_room,
    send_file,
    send_text,
    sync_once,
    wait_for_event,
    wait_for_invite,
)

LINE = re.compile(r"^\[(\d+)\] \S+ (.+?) : (.*)$", re.MULTILINE)


def citing_responder(body: dict[str, Any]) -> str:
    """A "model" that puts every transcript line in a section by its first word, citing it."""
    prompt = body["messages"][-1]["content"]
    sections: dict[str, list[str]] = {"Décisions": [], "Actions": [], "Points clés": []}
    for number, name, text in LINE.findall(prompt):
        if text.startswith("Décision"):
            sections["Décisions"].append(f"- {text} [{number}]")
        elif text.startswith("Action"):
            sections["Actions"].append(f"- **{name}** : {text} [{number}]")
        else:
            sections["Points clés"].append(f"- {text} [{number}] [lien](https://evil.example)")
    if not LINE.search(prompt):  # merging partial summaries: keep them as they are
        return "\n".join(line for line in prompt.splitlines() if line.startswith(("- ", "### ")))
    return "\n\n".join(
        f"### {title}\n" + "\n".join(lines) for title, lines in sections.items() if lines
    )


def permalink(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{room_id}/{event_id}?via=localhost"


async def wait_for_receipt(bot: RunningBot, room_id: str, user_id: str, event_id: str) -> None:
    """The bot stores receipts from its sync; wait until this one is stored (presence, not
    absence: the loop ends as soon as it is there)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        positions = await bot.store.receipts.positions(room_id, user_id)
        if positions and positions[0].event_id == event_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the bot never stored {user_id}'s receipt on {event_id}")


async def test_bare_resume_starts_at_the_last_read_receipt_and_links_each_point(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = citing_responder
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await send_text(bob, room_id, "Déjà lu : le planning de la semaine")
    read = await send_text(bob, room_id, "Déjà lu aussi : ordre du jour")
    await sync_once(alice)
    response = await alice.room_read_markers(room_id, fully_read_event=read, read_event=read)
    assert isinstance(response, nio.RoomReadMarkersResponse), response
    await wait_for_receipt(bot, room_id, alice.user_id, read)

    decided = await send_text(bob, room_id, "Décision : on livre vendredi")
    action = await send_text(bob, room_id, "Action : je prépare la note pour jeudi")
    chatter = await send_text(bob, room_id, "Il fait beau à Paris")
    await sync_once(alice)
    answer = await ask(alice, room_id, bot.user_id, "!resume")

    prompt = summary_requests(fake_llm)[-1]["messages"][-1]["content"]
    assert "Déjà lu" not in prompt
    numbered = LINE.findall(prompt)
    assert [(n, t) for n, _, t in numbered] == [
        ("1", "Décision : on livre vendredi"),
        ("2", "Action : je prépare la note pour jeudi"),
        ("3", "Il fait beau à Paris"),
    ]
    body = answer["content"]["body"]
    first_line = body.splitlines()[0]
    assert first_line.startswith("**Résumé du salon** — depuis votre dernière lecture, ")
    assert first_line.endswith(" — 3 messages")
    html = answer["content"]["formatted_body"]
    for event_id in (decided, action, chatter):
        assert f'href="{permalink(room_id, event_id)}"' in html
    assert "<h3>Décisions</h3>" in html and "<h3>Questions ouvertes</h3>" not in html
    assert f'href="https://matrix.to/#/{bob.user_id}"' in html, "the action's owner is a pill"
    assert "evil.example" not in html and "evil.example" not in body
    assert answer["content"]["m.mentions"] == {"user_ids": [alice.user_id]}, "pills never ping"


async def test_private_summary_lands_in_a_real_dm_with_a_notice_in_the_room(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = citing_responder
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    bob = await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    decided = await send_text(bob, room_id, "Décision : le comité est reporté")
    await sync_once(alice)

    command = await send_text(alice, room_id, "!resume 5 en privé")
    notice = await wait_for_event(alice, room_id, replies_to(command), timeout=30)
    assert notice["content"]["body"] == texts.SUMMARY_SENT_PRIVATELY
    assert notice["content"]["msgtype"] == "m.notice"

    dm_id = await bot_dm(bot, exclude={room_id})
    await wait_for_invite(alice, dm_id)
    await join_room(alice, dm_id)
    summary = await wait_for_event(
        alice,
        dm_id,
        lambda e: e["type"] == "m.room.message" and "Résumé de" in e["content"].get("body", ""),
        timeout=30,
    )
    assert summary["content"]["body"].startswith(
        "**Résumé de `Équipe projet`** — le dernier message\n"
    )
    assert f'href="{permalink(room_id, decided)}"' in summary["content"]["formatted_body"]
    history = await alice.room_messages(dm_id, start=alice.next_batch, limit=50)
    assert isinstance(history, nio.RoomMessagesResponse), history
    invites = [
        e.source["content"]
        for e in history.chunk
        if isinstance(e, nio.RoomMemberEvent) and e.membership == "invite"
    ]
    assert invites and invites[0].get("is_direct") is True, "the invite says it is a DM"
    dm = alice.rooms[dm_id]
    assert set(dm.users) == {alice.user_id, bot.user_id}, "the bot and exactly that person"
    assert dm.encrypted
    assert await bot.store.rooms.is_direct(dm_id)
    state = await alice.room_get_state_event(dm_id, "im.vector.room.access_rules")
    assert state.content == {"rule": "direct"}

    # Asked again, the same DM is used: no second room, no second invite.
    await send_text(bob, room_id, "Décision : le comité aura lieu en décembre")
    again = await send_text(alice, room_id, "!resume 1 privé")
    await wait_for_event(alice, room_id, replies_to(again), timeout=30)
    await wait_for_event(
        alice,
        dm_id,
        lambda e: (
            "en décembre" in e["content"].get("body", "") and "Résumé de" in e["content"]["body"]
        ),
        timeout=30,
    )
    await sync_once(alice)
    assert set(alice.invited_rooms) == set(), "no second DM"
    assert [r for r in await bot.store.rooms.known_ids() if r not in (room_id, dm_id)] == []


async def test_scheduled_summary_can_be_private_to_its_author(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = citing_responder
    bot = await start_bot()
    alice, bob = await user_client("alice", encryption=True), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    soon = datetime.fromtimestamp(time.time() + 180, PARIS)
    confirmation = await ask(
        alice, room_id, bot.user_id, f'!planifier "tous-les-jours {soon:%H:%M}" resume 1j privé'
    )
    assert "Planification n°" in confirmation["content"]["body"]
    note = await send_text(bob, room_id, "Décision : la note part demain")
    await wait_until_stored(bot, note)
    [schedule] = await bot.store.schedules.list(room_id)
    assert bot.app.scheduler is not None
    bot.app.scheduler.clock = lambda: schedule.next_run_ms / 1000 + 60
    assert await bot.app.scheduler.tick() == 1

    dm_id = await bot_dm(bot, exclude={room_id})
    await wait_for_invite(alice, dm_id)
    await join_room(alice, dm_id)
    digest = await wait_for_event(
        alice, dm_id, lambda e: "la note part demain" in e["content"].get("body", "")
    )
    assert digest["content"]["body"].startswith("**Résumé de `Équipe projet`** — depuis le ")
    # Nothing was posted in the room for the scheduled private digest: a follow-up command is
    # answered, and the only bot messages after the schedule's confirmation are its answer.
    marker = await ask(alice, room_id, bot.user_id, "!resume 1")
    bot_posts = [
        e
        for e in _room_events(alice, room_id)
        if e["sender"] == bot.user_id and e["type"] == "m.room.message"
    ]
    assert [e["event_id"] for e in bot_posts][-2:] == [
        confirmation["event_id"],
        marker["event_id"],
    ]


def _room_events(client: nio.AsyncClient, room_id: str) -> list[dict[str, Any]]:
    from tests.support.matrix_client import events_in

    return events_in(client, room_id)


async def wait_until_stored(bot: RunningBot, event_id: str) -> None:
    deadline = time.monotonic() + 15
    while await bot.store.messages.get(event_id) is None:
        assert time.monotonic() < deadline, f"the bot never stored {event_id}"
        await asyncio.sleep(0.05)


async def bot_dm(bot: RunningBot, exclude: set[str]) -> str:
    """The DM the bot created (recorded as direct in its store), once it exists."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for room_id in await bot.store.rooms.known_ids():
            if room_id not in exclude and await bot.store.rooms.is_direct(room_id):
                return room_id
        await asyncio.sleep(0.05)
    raise AssertionError("the bot never made a DM")


async def test_long_summary_shows_progress_then_becomes_the_summary(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(context_token_budget=1200, max_answer_tokens=200)
    alice = await user_client("alice")
    room_id = await group_room(alice, await user_client("bob"), bot)
    for n in range(40):
        await send_text(
            alice, room_id, f"Point {n} : " + "le comité examine la convention de partenariat " * 3
        )
    await sync_once(alice)

    command = await send_text(alice, room_id, "!resume 40")
    first = await wait_for_event(alice, room_id, replies_to(command), timeout=60)
    match = re.fullmatch(r"Résumé en cours… 0/(\d+) parties", first["content"]["body"])
    assert match is not None and int(match.group(1)) >= 3, first["content"]["body"]
    final = await wait_for_event(
        alice,
        room_id,
        lambda e: (
            e["content"].get("m.relates_to", {}).get("event_id") == first["event_id"]
            and e["content"]
            .get("m.new_content", {})
            .get("body", "")
            .startswith("**Résumé du salon")
        ),
        timeout=60,
    )
    total = int(match.group(1))
    edits = [
        e["content"]["m.new_content"]["body"]
        for e in _room_events(alice, room_id)
        if e["content"].get("m.relates_to", {}).get("event_id") == first["event_id"]
    ]
    assert edits[-1] == final["content"]["m.new_content"]["body"]
    assert f"Résumé en cours… {total}/{total} parties" in edits
    chunks = [
        r for r in summary_requests(fake_llm) if r["messages"][-1]["content"].startswith("Extrait")
    ]
    assert len(chunks) == total


async def test_thread_summary_from_the_main_timeline(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = citing_responder
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    root = await send_text(bob, room_id, "Sujet : le budget 2027")
    in_thread = await send_text(bob, room_id, "Décision : budget gelé", thread_root=root)
    await send_text(bob, room_id, "Hors du fil : la cantine")
    await sync_once(alice)

    answer = await ask(alice, room_id, bot.user_id, "!resume fil", reply_to=root)
    prompt = summary_requests(fake_llm)[-1]["messages"][-1]["content"]
    assert "le budget 2027" in prompt and "budget gelé" in prompt and "cantine" not in prompt
    assert answer["content"]["body"].startswith("**Résumé du fil de discussion** — tout le fil")
    assert f'href="{permalink(room_id, in_thread)}"' in answer["content"]["formatted_body"]

    lost = await ask(alice, room_id, bot.user_id, "!resume fil")
    assert "pour résumer un fil" in lost["content"]["body"]
    assert "Usage" in lost["content"]["body"]


async def test_a_window_names_the_files_shared_in_it(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await send_text(bob, room_id, "Je partage le compte rendu de la réunion.")
    file_event = await send_file(
        bob, room_id, b"Decision : budget vote.\n", "compte-rendu.txt", "text/plain"
    )
    await send_text(alice, room_id, "Merci, je le lis.")
    summary = await ask(alice, room_id, bot.user_id, "!resume 3")
    assert summary["sender"] == bot.user_id
    transcript = summary_requests(fake_llm)[-1]["messages"][-1]["content"]
    assert "[fichier partagé : compte-rendu.txt]" in transcript
    stored = await bot.store.messages.get(file_event)
    assert stored is not None and stored.body == "[fichier partagé : compte-rendu.txt]"
