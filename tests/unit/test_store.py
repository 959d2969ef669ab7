"""The store's guarantees: exactly-once bookkeeping, and personal data that really goes away.

Deletions are checked by reading the SQLite file directly (every table with a `room_id` or
`sender` column), not through the store's own queries, so a table the store forgets is caught.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.models import IncomingMessage, MessageKind
from bot.store import Store
from bot.store.database import ConversationTurn, StoredMessage, now_ms
from tests.support.bot_process import database_text, rows_about

ROOM = "!salon:localhost"
OTHER_ROOM = "!autre:localhost"
ALICE = "@alice:localhost"
BOB = "@bob:localhost"
BOT = "@bot:localhost"
DAY_MS = 86_400_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.sqlite3")
    yield opened
    await opened.close()


def question(event_id: str, body: str, room_id: str = ROOM, sender: str = ALICE) -> IncomingMessage:
    return IncomingMessage(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        sender_name=sender,
        kind=MessageKind.TEXT,
        body=body,
        timestamp_ms=now_ms(),
    )


def stored(message: IncomingMessage, timestamp_ms: int | None = None) -> StoredMessage:
    return StoredMessage(
        event_id=message.event_id,
        room_id=message.room_id,
        sender=message.sender,
        sender_name=message.sender_name,
        body=message.body,
        timestamp_ms=message.timestamp_ms if timestamp_ms is None else timestamp_ms,
    )


async def answer(store: Store, message: IncomingMessage, text: str, answer_id: str) -> None:
    """What the conversation handler records once a reply was sent."""
    await store.triggers.finish(
        message,
        "answered",
        answer_event_id=answer_id,
        turns=[
            ConversationTurn(
                role="user",
                sender=message.sender,
                sender_name=message.sender_name,
                content=message.body,
                event_id=message.event_id,
                timestamp_ms=message.timestamp_ms,
            ),
            ConversationTurn(
                role="assistant",
                sender=BOT,
                sender_name=BOT,
                content=text,
                event_id=answer_id,
                timestamp_ms=now_ms(),
            ),
        ],
        answer_messages=[
            StoredMessage(
                event_id=answer_id,
                room_id=message.room_id,
                sender=BOT,
                sender_name="Assistant",
                body=text,
                timestamp_ms=now_ms(),
            )
        ],
        prompt_tokens=10,
        completion_tokens=5,
    )


async def ask_and_answer(store: Store, message: IncomingMessage, text: str, answer_id: str) -> None:
    assert await store.triggers.claim(message)
    await store.messages.save([stored(message)])
    await answer(store, message, text, answer_id)


# --- Exactly once ----------------------------------------------------------------------------


async def test_a_trigger_is_pending_until_finished_then_never_claimed_again(store: Store) -> None:
    message = question("$q1", "Quel est le délai ?")

    assert await store.triggers.claim(message)
    assert await store.triggers.claim(message), "still pending: a resumed job may run it"
    assert [job.message.event_id for job in await store.triggers.pending()] == ["$q1"]

    await answer(store, message, "Deux mois.", "$a1")

    assert not await store.triggers.claim(message), "a replayed sync must not answer again"
    assert await store.triggers.pending() == []
    assert await store.triggers.status("$q1") == "answered"
    usage = await store.usage.of_room(ROOM)
    assert (usage.questions, usage.answers, usage.prompt_tokens) == (1, 1, 10)


async def test_pending_triggers_survive_a_reopen_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    first = await Store.open(path)
    for index in range(3):
        await first.triggers.claim(question(f"$q{index}", f"question {index}"))
    version = await first.migrate()
    await first.close()

    reopened = await Store.open(path)
    try:
        pending = await reopened.triggers.pending()
        assert [job.message.event_id for job in pending] == ["$q0", "$q1", "$q2"]
        assert pending[1].message.body == "question 1", (
            "the payload is enough to answer after a crash"
        )
        assert await reopened.migrate() == version, "migrations run once"
    finally:
        await reopened.close()


async def test_database_file_is_private(store: Store, tmp_path: Path) -> None:
    mode = stat.S_IMODE((tmp_path / "bot.sqlite3").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)


# --- Redactions and edits --------------------------------------------------------------------


async def test_redacting_a_question_forgets_it_and_the_answer_built_from_it(
    store: Store, tmp_path: Path
) -> None:
    secret = question("$q1", "Mon numéro fiscal est 1234567890123")
    await ask_and_answer(store, secret, "Réponse simulée : numéro fiscal 1234567890123", "$a1")
    kept = question("$q2", "Quelle heure est-il ?")
    await ask_and_answer(store, kept, "Il est midi.", "$a2")

    await store.messages.delete_event(ROOM, "$q1")

    assert await store.messages.get("$q1") is None
    turns = await store.messages.recent_turns(ROOM, None, 100)
    assert [turn.event_id for turn in turns] == ["$q2", "$a2"]
    assert "1234567890123" not in database_text(tmp_path / "bot.sqlite3")
    assert not await store.triggers.claim(secret), "still known as handled (no second answer)"


async def test_redacting_a_pending_question_means_it_is_not_resumed(store: Store) -> None:
    message = question("$q1", "Question effacée avant la réponse")
    assert await store.triggers.claim(message)

    await store.messages.delete_event(ROOM, "$q1")

    assert await store.triggers.pending() == []


async def test_redaction_in_another_room_changes_nothing(store: Store) -> None:
    message = question("$q1", "Bonjour")
    await ask_and_answer(store, message, "Bonjour !", "$a1")

    await store.messages.delete_event(OTHER_ROOM, "$q1")

    assert await store.messages.get("$q1") is not None
    assert len(await store.messages.recent_turns(ROOM, None, 100)) == 2


async def test_only_the_sender_can_edit_what_is_stored(store: Store) -> None:
    message = question("$q1", "Texte d'origine")
    await ask_and_answer(store, message, "Réponse", "$a1")

    await store.messages.apply_edit(ROOM, "$q1", BOB, "Texte de Bob")
    await store.messages.apply_edit(ROOM, "$q1", ALICE, "Texte corrigé")

    edited = await store.messages.get("$q1")
    assert edited is not None and edited.body == "Texte corrigé"
    turns = await store.messages.recent_turns(ROOM, None, 100)
    assert turns[0].content == "Texte corrigé"


# --- Retention, leaving a room, data subject requests ---------------------------------------


async def test_purge_removes_only_what_is_older_than_the_cutoff(store: Store) -> None:
    now = now_ms()
    old = question("$old", "Vieux message")
    new = question("$new", "Message récent")
    await store.messages.save([stored(old, now - 40 * DAY_MS), stored(new, now)])

    removed = await store.messages.purge_older_than(ROOM, now - 30 * DAY_MS)

    assert removed == 1
    assert await store.messages.get("$old") is None
    assert await store.messages.get("$new") is not None


async def test_rooms_with_data_include_rooms_never_registered(store: Store) -> None:
    await store.rooms.remember(ROOM, is_direct=False)
    await store.messages.save([stored(question("$x", "Bonjour", room_id=OTHER_ROOM))])

    assert set(await store.rooms.with_data()) == {ROOM, OTHER_ROOM}


async def test_forgetting_a_room_deletes_every_row_about_it_and_nothing_else(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "bot.sqlite3"
    for room_id in (ROOM, OTHER_ROOM):
        await store.rooms.remember(room_id, is_direct=False)
        await ask_and_answer(
            store, question(f"$q{room_id}", "Bonjour", room_id), "Oui", f"$a{room_id}"
        )
        await store.settings.change(room_id, ALICE, "consigne", {"consigne": "x"}, None, "x")
    assert sum(rows_about(path, "room_id", ROOM).values()) > 0

    await store.rooms.forget(ROOM)

    leftovers = {table: n for table, n in rows_about(path, "room_id", ROOM).items() if n}
    assert leftovers == {}
    assert rows_about(path, "room_id", OTHER_ROOM)["room_messages"] == 2


async def test_export_then_purge_a_user(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await ask_and_answer(
        store, question("$q1", "Ma question personnelle"), "Sur « Ma question personnelle »", "$a1"
    )
    await ask_and_answer(store, question("$q2", "Question de Bob", sender=BOB), "Réponse", "$a2")

    exported = await store.people.export(ALICE)
    assert [m["body"] for m in exported["messages"]] == ["Ma question personnelle"]
    assert [t["content"] for t in exported["conversation_turns"]] == ["Ma question personnelle"]

    deleted = await store.people.purge(ALICE)

    assert (deleted.messages, deleted.conversation_turns) == (1, 2), "question and its answer"
    assert "Ma question personnelle" not in database_text(path)
    assert (await store.people.export(ALICE))["messages"] == []
    assert await store.messages.get("$q2") is not None, "other users keep their data"


async def test_read_receipts_keep_the_previous_reading_session(store: Store) -> None:
    from bot.models import ReadReceipt

    gap = 15 * 60_000
    base = 1_700_000_000_000
    await store.messages.save(
        [
            stored(question("$m1", "un"), base),
            stored(question("$m2", "deux"), base + 60_000),
        ]
    )

    async def receipt(event_id: str, at_ms: int, user: str = BOB) -> None:
        await store.receipts.save(
            ReadReceipt(room_id=ROOM, user_id=user, event_id=event_id, read_at_ms=at_ms), gap
        )

    assert await store.receipts.positions(ROOM, BOB) == []
    await receipt("$m1", base + 30_000)
    [only] = await store.receipts.positions(ROOM, BOB)
    assert (only.event_id, only.event_ms, only.since_ms) == ("$m1", base, base + 1)
    # Read again a minute later: the same session, nothing earlier is kept.
    await receipt("$m2", base + 90_000)
    assert [p.event_id for p in await store.receipts.positions(ROOM, BOB)] == ["$m2"]
    # Back an hour later (a receipt sent as the room opens): the last one becomes "earlier".
    await receipt("$unknown", base + 3_600_000)
    newest, earlier = await store.receipts.positions(ROOM, BOB)
    assert (newest.event_id, newest.event_ms, newest.since_ms) == (
        "$unknown",
        None,
        base + 3_600_001,
    ), "an event the bot never stored is placed at the receipt's time"
    assert (earlier.event_id, earlier.since_ms) == ("$m2", base + 60_001)
    # An older receipt arriving late changes nothing.
    await receipt("$m1", base + 100)
    assert [p.event_id for p in await store.receipts.positions(ROOM, BOB)] == ["$unknown", "$m2"]
    assert await store.receipts.positions(ROOM, ALICE) == []
    assert await store.receipts.positions(OTHER_ROOM, BOB) == []

    assert [r["event_id"] for r in (await store.people.export(BOB))["read_receipts"]] == [
        "$unknown"
    ]
    await store.people.purge(BOB)
    assert await store.receipts.positions(ROOM, BOB) == []
    await receipt("$m1", base)
    await store.rooms.forget(ROOM)
    assert await store.receipts.positions(ROOM, BOB) == []
