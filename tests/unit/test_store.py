"""The store's guarantees: exactly-once bookkeeping, and personal data that really goes away.

Deletions are checked by reading the SQLite file directly (every table with a `room_id` or
`sender` column), not through the store's own queries, so a table the store forgets is caught.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.models import Action, Decision, IncomingMessage, Invocation, MessageKind
from bot.store import Store
from bot.store.database import PAGE_CACHE_KIB, ConversationTurn, StoredMessage, now_ms
from bot.store.messages import TurnsQuery
from bot.store.pilot import AnswerRecord, UsageEvent
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


async def messages_stored(store: Store, event_id: str) -> int:
    row = await store.db.fetchone(
        "SELECT count(*) FROM room_messages WHERE event_id = ?", (event_id,)
    )
    assert row is not None
    return int(row[0])


async def test_a_claim_stores_the_text_of_a_new_or_pending_trigger_only(store: Store) -> None:
    message = question("$q1", "Quel est le délai ?")

    assert await store.triggers.claim(message, stored(message)), "new: pending"
    assert await store.triggers.claim(message, stored(message)), "a duplicate still pending"
    assert await messages_stored(store, "$q1") == 1, "its text once"
    [job] = await store.triggers.pending()
    assert job.message == message

    await answer(store, message, "Deux mois.", "$a1")
    await store.messages.clear_room(ROOM)  # `!oublie tout` after the answer
    assert not await store.triggers.claim(message, stored(message)), "answered: never again"
    assert await messages_stored(store, "$q1") == 0, "a replay must not bring a forgotten text back"

    withdrawn = question("$q2", "Et le suivant ?")
    assert await store.triggers.claim(withdrawn)
    assert await store.triggers.withdraw(["$q2"]) == 1
    assert not await store.triggers.claim(withdrawn, stored(withdrawn)), "withdrawn: skipped"
    assert await messages_stored(store, "$q2") == 0


async def test_a_claim_can_bring_the_conversation_read_in_the_same_hop(store: Store) -> None:
    first = question("$q1", "Quel est le délai ?")
    assert await store.triggers.claim(first, stored(first))
    await answer(store, first, "Deux mois.", "$a1")
    context = TurnsQuery(ROOM, None, 400)

    second = question("$q2", "Et pour un contractuel ?")
    claim = await store.triggers.claim_reading(second, stored(second), None, context)
    assert claim.claimed and claim.turns is not None
    assert [(t.role, t.content) for t in claim.turns] == [
        ("user", "Quel est le délai ?"),
        ("assistant", "Deux mois."),
    ]
    assert claim.turns == await store.messages.recent_turns(ROOM, None, 400)
    assert await messages_stored(store, "$q2") == 1

    replayed = await store.triggers.claim_reading(first, stored(first), None, context)
    assert not replayed.claimed and replayed.turns is None, "nothing read for a finished one"
    without = await store.triggers.claim_reading(second, stored(second))
    assert without.claimed and without.turns is None


async def test_a_claim_that_fails_midway_leaves_nothing_and_no_open_transaction(
    store: Store, tmp_path: Path
) -> None:
    await store.db.write(
        "CREATE TRIGGER refuse BEFORE INSERT ON triggers BEGIN SELECT RAISE(ABORT, 'refusé'); END"
    )
    message = question("$q1", "Quel est le délai ?")
    with pytest.raises(sqlite3.IntegrityError):
        await store.triggers.claim(message, stored(message))
    assert await messages_stored(store, "$q1") == 0, "the text went with the failed claim"

    await store.db.write("DROP TRIGGER refuse")
    await store.state.set("clé", "valeur")  # autocommit: visible to another connection at once
    other = sqlite3.connect(tmp_path / "bot.sqlite3")
    try:
        row = other.execute("SELECT value FROM bot_state WHERE key = 'clé'").fetchone()
    finally:
        other.close()
    assert row == ("valeur",)


async def test_a_text_stored_without_its_trigger_is_claimed_without_a_second_copy(
    store: Store,
) -> None:
    """A text stored without its trigger (saved as a plain message before, or left by a
    version that wrote the two apart) is claimed as new, without storing the text twice."""
    message = question("$q1", "Quel est le délai ?")
    await store.messages.save([stored(message)])  # what a crash after the first statement leaves

    assert await store.triggers.claim(message, stored(message))
    assert await store.triggers.status("$q1") == "pending"
    assert await messages_stored(store, "$q1") == 1


async def test_a_single_statement_write_never_lands_inside_another_transaction(
    store: Store,
) -> None:
    """Autocommit writes skip BEGIN/COMMIT but still wait for the write lock: run inside an
    open transaction of the one connection, they would be rolled back with it."""
    with pytest.raises(RuntimeError):
        async with store.db.transaction() as db:
            await db.execute(
                "INSERT INTO rooms (room_id, is_direct, joined_at) VALUES ('!x', 0, 1)"
            )
            write = asyncio.ensure_future(store.state.set("clé", "valeur"))
            await db.execute("SELECT 1")  # the write gets its turn to run meanwhile
            raise RuntimeError("rolled back")
    await write
    assert await store.state.get("clé") == "valeur"
    assert await store.db.fetchone("SELECT 1 FROM rooms WHERE room_id = '!x'") is None


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


async def test_purge_forgets_which_old_events_were_answers(store: Store) -> None:
    now = now_ms()
    usage = UsageEvent(
        at_ms=now, day="2026-11-30", kind="question", outcome="answered",
        homeserver="agent.dinum.tchap.gouv.fr", user_hash="u", room_hash="r",
    )  # fmt: skip
    answers = [
        AnswerRecord(event_id=event_id, room_id=room, kind="question", model="m", created_at_ms=at)
        for event_id, room, at in [
            ("$old-answer", ROOM, now - 40 * DAY_MS),
            ("$new-answer", ROOM, now),
            ("$old-elsewhere", OTHER_ROOM, now - 40 * DAY_MS),
        ]
    ]
    await store.pilot.record(usage, answers)

    await store.messages.purge_older_than(ROOM, now - 30 * DAY_MS)

    assert await store.pilot.answer("$old-answer") is None
    assert await store.pilot.answer("$new-answer") is not None
    assert await store.pilot.answer("$old-elsewhere") is not None, "another room keeps its own"


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


# --- Withdrawn questions and personal data (issue 13, items 5 and 6) -------------------------


async def test_finish_never_turns_a_redacted_question_back_to_answered(
    store: Store, tmp_path: Path
) -> None:
    message = question("$late", "Secret collé par erreur 7731")
    assert await store.triggers.claim(message, stored(message))
    await store.messages.delete_event(ROOM, "$late")  # redacted while the model was writing

    recorded = await store.triggers.finish(
        message,
        "answered",
        answer_event_id="$ans",
        turns=[
            ConversationTurn(
                role="user",
                sender=ALICE,
                sender_name=ALICE,
                content=message.body,
                event_id="$late",
                timestamp_ms=message.timestamp_ms,
            )
        ],
        answer_messages=[
            StoredMessage(
                event_id="$ans",
                room_id=ROOM,
                sender=BOT,
                sender_name="Assistant",
                body="Sur « Secret collé par erreur 7731 »",
                timestamp_ms=now_ms(),
            )
        ],
        prompt_tokens=10,
    )

    assert recorded is False
    assert await store.triggers.status("$late") == "skipped"
    assert "7731" not in database_text(tmp_path / "bot.sqlite3")
    counts = rows_about(tmp_path / "bot.sqlite3", "room_id", ROOM)
    assert counts["conversation_turns"] == 0 and counts["room_messages"] == 0
    assert (await store.usage.of_room(ROOM)).questions == 0, "a withdrawn question is not counted"


async def test_finishing_records_all_of_the_exchange_or_none_of_it(store: Store) -> None:
    """The record is one transaction: a statement failing halfway (here the second turn, which
    the table's CHECK refuses) leaves the trigger pending, and no turn, answer or usage."""
    message = question("$q1", "Quel est le délai ?")
    assert await store.triggers.claim(message)
    good = ConversationTurn(
        role="user",
        sender=ALICE,
        sender_name="Alice",
        content=message.body,
        event_id="$q1",
        timestamp_ms=now_ms(),
    )
    refused = dataclasses.replace(good, role="system")  # a role the table's CHECK refuses
    answer_text = StoredMessage(
        event_id="$a1",
        room_id=ROOM,
        sender=BOT,
        sender_name=BOT,
        body="Deux mois.",
        timestamp_ms=now_ms(),
    )

    with pytest.raises(sqlite3.IntegrityError):
        await store.triggers.finish(
            message,
            "answered",
            answer_event_id="$a1",
            turns=[good, refused],
            answer_messages=[answer_text],
            prompt_tokens=10,
        )

    assert await store.triggers.status("$q1") == "pending"
    turns = await store.db.fetchone("SELECT count(*) FROM conversation_turns")
    assert turns is not None and turns[0] == 0
    assert await messages_stored(store, "$a1") == 0
    usage = await store.usage.of_room(ROOM)
    assert (usage.questions, usage.answers) == (0, 0)
    # The connection is usable afterwards: the same record, valid, goes through.
    await answer(store, message, "Deux mois.", "$a1")
    assert await store.triggers.status("$q1") == "answered"


async def test_the_question_text_is_cleared_once_the_trigger_is_finished(
    store: Store, tmp_path: Path
) -> None:
    for status in ("answered", "failed", "skipped"):
        message = question(f"$q-{status}", f"Texte complet {status} 5150")
        assert await store.triggers.claim(message)
        assert "5150" in database_text(tmp_path / "bot.sqlite3")
        assert await store.triggers.finish(message, status)
    rows = await store.db.fetchall("SELECT payload FROM triggers")
    assert [row[0] for row in rows] == ["{}", "{}", "{}"]


async def test_withdrawing_leaves_finished_triggers_alone(store: Store) -> None:
    done, waiting = question("$done", "fini"), question("$wait", "en attente 8080")
    await ask_and_answer(store, done, "Réponse", "$a")
    assert await store.triggers.claim(waiting)

    assert await store.triggers.withdraw(["$done", "$wait", "$unknown"]) == 1

    assert await store.triggers.status("$done") == "answered"
    assert await store.triggers.status("$wait") == "skipped"
    assert await store.triggers.pending() == []


async def test_forget_clears_the_text_of_the_rooms_questions(store: Store, tmp_path: Path) -> None:
    async with store.db.transaction() as db:  # a row written before payloads were cleared
        await db.execute(
            "INSERT INTO triggers (event_id, room_id, sender, status, received_at_ms, "
            "event_timestamp_ms, payload, updated_at_ms) VALUES (?, ?, ?, 'answered', 1, 1, ?, 1)",
            ("$old", ROOM, ALICE, '{"message": "ancien 4242"}'),
        )
    waiting = question("$wait", "en attente 8080")
    assert await store.triggers.claim(waiting)

    await store.messages.clear_conversation(ROOM)

    text = database_text(tmp_path / "bot.sqlite3")
    assert "4242" not in text
    assert "8080" in text, "a question still waiting keeps its text until it is answered"


async def test_purge_covers_questions_audit_texts_custom_commands_and_schedules(
    store: Store, tmp_path: Path
) -> None:
    from bot.store.database import CustomCommand

    path = tmp_path / "bot.sqlite3"
    waiting = question("$wait", "Question en attente Orion-55")
    assert await store.triggers.claim(waiting, stored(waiting))
    command = question("$forget", "!oublie-moi")
    assert await store.triggers.claim(command)
    await store.commands.save_custom(
        CustomCommand(
            room_id=ROOM,
            name="cp",
            template="Modèle d'Alice Lyra-12 : {texte}",
            description="communiqué Lyra-12",
            created_by=ALICE,
            created_at_ms=now_ms(),
        ),
        None,
    )
    await store.commands.save_custom(
        CustomCommand(
            room_id=ROOM,
            name="bob",
            template="Modèle de Bob : {texte}",
            description="de Bob",
            created_by=BOB,
            created_at_ms=now_ms(),
        ),
        None,
    )
    await store.schedules.add(ROOM, "lun-ven 18:00", "resume Vega-9", ALICE, now_ms() + DAY_MS)
    await store.schedules.add(ROOM, "lun 09:00", "resume 1j", BOB, now_ms() + DAY_MS)

    exported = await store.people.export(ALICE)
    assert [c["template"] for c in exported["custom_commands"]] == [
        "Modèle d'Alice Lyra-12 : {texte}"
    ]
    assert [s["command_line"] for s in exported["schedules"]] == ["resume Vega-9"]
    assert {q["event_id"] for q in exported["questions"]} == {"$wait", "$forget"}
    assert any("Orion-55" in (q["pending_payload"] or "") for q in exported["questions"])
    assert {c["key"] for c in exported["settings_changes"]} == {
        "commande-perso:cp",
        "planification:1",
    }

    deleted = await store.people.purge(ALICE, keep_event_id="$forget")

    assert (deleted.custom_commands, deleted.schedules, deleted.questions_withdrawn) == (1, 1, 1)
    assert deleted.audit_texts == 2
    text = database_text(path)
    for gone in ("Orion-55", "Lyra-12", "Vega-9"):
        assert gone not in text, gone
    assert "Modèle de Bob" in text and "resume 1j" in text, "others keep what they wrote"
    assert await store.triggers.status("$wait") == "skipped", "kept, so a replay never answers it"
    assert await store.triggers.status("$forget") == "pending", "the request itself runs on"
    audit = (await store.people.export(ALICE))["settings_changes"]
    assert len(audit) == 2, "who changed what and when stays"
    assert all(row["old_value"] is None and row["new_value"] is None for row in audit)


async def test_migration_0004_clears_old_question_texts_and_re_enables_forget_me(
    tmp_path: Path,
) -> None:
    import aiosqlite

    import bot.store

    path = tmp_path / "old.sqlite3"
    migrations = Path(bot.store.__file__).parent / "migrations"
    async with aiosqlite.connect(path) as db:  # as a database of version 3 left them
        for script in sorted(migrations.glob("000[123]_*.sql")):
            await db.executescript(script.read_text(encoding="utf-8"))
        await db.execute(
            "INSERT INTO triggers (event_id, room_id, sender, status, received_at_ms, "
            "event_timestamp_ms, payload, updated_at_ms) VALUES "
            "('$a', ?, ?, 'answered', 1, 1, 'ancien 4242', 1), "
            "('$p', ?, ?, 'pending', 1, 1, 'en attente 8080', 1)",
            (ROOM, ALICE, ROOM, ALICE),
        )
        await db.execute(
            "INSERT INTO disabled_commands VALUES (?, 'oublie-moi', ?, 1), (?, 'resume', ?, 1)",
            (ROOM, BOB, ROOM, BOB),
        )
        await db.execute("PRAGMA user_version=3")
        await db.commit()

    reopened = await Store.open(path)
    try:
        text = database_text(path)
        assert "4242" not in text and "8080" in text
        assert await reopened.commands.disabled() == {ROOM: {"resume"}}
    finally:
        await reopened.close()


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


async def test_a_schedule_advance_and_its_run_claim_are_one_transaction(store: Store) -> None:
    schedule_id = await store.schedules.add(ROOM, "18:00", "resume 1j", ALICE, 1_000)
    run = question(f"$schedule-{schedule_id}-1000", "!resume 1j").model_copy(
        update={"scheduled": True, "timestamp_ms": 1_000}
    )
    decision = Decision(
        action=Action.COMMAND,
        text=run.body,
        invocation=Invocation(word="resume", arguments="1j", prefix="!"),
    )

    assert await store.schedules.advance(schedule_id, 1_000, 1_000, 2_000, claim=(run, decision))
    assert await store.triggers.status(run.event_id) == "pending"
    [moved] = await store.schedules.list(ROOM)
    assert (moved.next_run_ms, moved.last_run_ms) == (2_000, 1_000)
    assert not await store.schedules.advance(
        schedule_id, 1_000, 1_000, 2_000, claim=(run, decision)
    ), "another tick already moved it: no second run"
    [job] = await store.triggers.pending()
    assert job.message.event_id == run.event_id and job.decision == decision

    # A claim that fails inside the transaction leaves the schedule where it was.
    broken = run.model_copy(update={"event_id": "$schedule-x", "sender": object()})
    with pytest.raises(Exception):  # noqa: B017 - any failure must roll the advance back
        await store.schedules.advance(schedule_id, 2_000, 2_000, 3_000, claim=(broken, decision))
    [unmoved] = await store.schedules.list(ROOM)
    assert unmoved.next_run_ms == 2_000


async def test_the_connection_keeps_a_small_page_cache(store: Store) -> None:
    """SQLite's own cache is capped (the file stays in the kernel's cache): figure 5's memory."""
    row = await store.db.fetchone("PRAGMA cache_size")
    assert row is not None and row[0] == -PAGE_CACHE_KIB
