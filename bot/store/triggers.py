"""Exactly-once bookkeeping: one row per event that asked something of the bot."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.models import Decision, IncomingMessage, Job
from bot.ops import faults
from bot.store.database import (
    INSERT_MESSAGE,
    ConversationTurn,
    Database,
    StoredMessage,
    TriggerStatus,
    atomically,
    message_row,
    now_ms,
)
from bot.store.messages import TurnsQuery, read_recent_turns

# The claim is one statement: a new event is inserted as pending; a known one is left as it
# is (the no-op update only makes RETURNING give its row). Its status says whether to go on.
CLAIM = (
    "INSERT INTO triggers (event_id, room_id, sender, status, received_at_ms, "
    "event_timestamp_ms, payload, updated_at_ms) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO UPDATE SET status = status RETURNING status"
)
# The triggering message's text, unless its trigger is already finished (a replayed sync
# must not bring back a text that was forgotten or redacted since).
INSERT_MESSAGE_UNLESS_FINISHED = (
    "INSERT OR IGNORE INTO room_messages "
    "(event_id, room_id, sender, sender_name, body, timestamp_ms, thread_root_id) "
    "SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS "
    "(SELECT 1 FROM triggers WHERE event_id = ? AND status != 'pending')"
)


@dataclass(frozen=True, slots=True)
class Claim:
    claimed: bool
    turns: list[ConversationTurn] | None = None  # read when asked, for a claimed question


def _claim_row(message: IncomingMessage, decision: Decision | None) -> tuple[object, ...]:
    timestamp = now_ms()
    return (
        message.event_id,
        message.room_id,
        message.sender,
        timestamp,
        message.timestamp_ms,
        Job(message=message, decision=decision).model_dump_json(),
        timestamp,
    )


async def claim_in(
    db: aiosqlite.Connection, message: IncomingMessage, decision: Decision | None
) -> bool:
    """The claim itself, inside the caller's transaction (a schedule's advance shares it)."""
    rows = await db.execute_fetchall(CLAIM, _claim_row(message, decision))
    return any(row[0] == "pending" for row in rows)


class TriggersRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self,
        message: IncomingMessage,
        stored: StoredMessage | None = None,
        decision: Decision | None = None,
    ) -> bool:
        """Record a triggering event with what it was classified as (and its text for summaries);
        False if it was already answered (or given up, or withdrawn)."""
        return (await self.claim_reading(message, stored, decision)).claimed

    async def claim_reading(
        self,
        message: IncomingMessage,
        stored: StoredMessage | None = None,
        decision: Decision | None = None,
        context: TurnsQuery | None = None,
    ) -> Claim:
        """`claim`, and with `context` the conversation's recent turns, read for a question
        whose job starts at once.

        One hop to SQLite for all of it, the text and the claim in one transaction: a crash
        leaves both or neither, and the replayed sync claims again (the text is never inserted
        twice); a finished trigger's text is never brought back."""
        claim_row = _claim_row(message, decision)
        text_row = None if stored is None else (*message_row(stored), message.event_id)

        def write(connection: sqlite3.Connection) -> list[Any]:
            if text_row is not None:
                connection.execute(INSERT_MESSAGE_UNLESS_FINISHED, text_row)
            return connection.execute(CLAIM, claim_row).fetchall()

        def work(connection: sqlite3.Connection) -> Claim:
            statuses = atomically(connection, write)
            claimed = any(row[0] == "pending" for row in statuses)
            turns = read_recent_turns(connection, context) if claimed and context else None
            return Claim(claimed, turns)

        return await self._db.in_one_hop(work)

    async def status(self, event_id: str) -> TriggerStatus | None:
        row = await self._db.fetchone("SELECT status FROM triggers WHERE event_id = ?", (event_id,))
        return row[0] if row else None

    async def withdraw(self, event_ids: Sequence[str]) -> int:
        """Pending triggers that will not be answered (their asker took them back): skipped,
        their text cleared. Triggers already finished are left as they are."""
        if not event_ids:
            return 0
        marks = ", ".join("?" for _ in event_ids)
        return await self._db.write(
            "UPDATE triggers SET status = 'skipped', payload = '{}', updated_at_ms = ? "
            f"WHERE status = 'pending' AND event_id IN ({marks})",
            (now_ms(), *event_ids),
        )

    async def pending(self) -> list[Job]:
        rows = await self._db.fetchall(
            "SELECT payload FROM triggers WHERE status = 'pending' ORDER BY received_at_ms"
        )
        return [Job.model_validate_json(row[0]) for row in rows]

    async def finish(
        self,
        message: IncomingMessage,
        status: TriggerStatus,
        *,
        answer_event_id: str | None = None,
        turns: Sequence[ConversationTurn] = (),
        answer_messages: Sequence[StoredMessage] = (),
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        question: bool = True,
    ) -> bool:
        """Record the outcome of a trigger and the exchange it produced, atomically, only if
        the trigger is still pending: a trigger withdrawn meanwhile (redacted, forgotten, its
        room left) stays as it is and nothing of the exchange is stored. The question's full
        text (`payload`) is cleared with the outcome. Returns False when nothing was recorded.
        Commands pass `question=False`: usage counts questions to the model only."""
        if answer_event_id is not None:
            faults.maybe_crash("after_send_before_record")  # tests only: sent, not recorded
        timestamp = now_ms()
        answered = 1 if status == "answered" and question else 0
        asked = 1 if question else 0
        turn_rows = [
            (
                message.room_id,
                message.thread_root_id,
                turn.role,
                turn.sender,
                turn.sender_name,
                turn.content,
                turn.event_id,
                turn.timestamp_ms,
            )
            for turn in turns
        ]
        message_rows = [message_row(m) for m in answer_messages]

        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE triggers SET status = ?, answer_event_id = ?, updated_at_ms = ?, "
                "payload = '{}' WHERE event_id = ? AND status = 'pending'",
                (status, answer_event_id, timestamp, message.event_id),
            )
            if cursor.rowcount != 1:
                return False
            if turn_rows:
                connection.executemany(
                    "INSERT INTO conversation_turns (room_id, thread_root_id, role, sender, "
                    "sender_name, content, event_id, timestamp_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    turn_rows,
                )
            if message_rows:
                connection.executemany(INSERT_MESSAGE, message_rows)
            connection.execute(
                "INSERT INTO room_usage (room_id, questions, answers, prompt_tokens, completion_tokens, "
                "last_activity_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE SET "
                "questions = questions + excluded.questions, answers = answers + excluded.answers, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_activity_ms = excluded.last_activity_ms",
                (message.room_id, asked, answered, prompt_tokens, completion_tokens, timestamp),
            )
            return True

        # One hop to SQLite for the whole record (each hop is a thread hand-over and a loop
        # wake-up): bench/, figure 4's profile.
        return await self._db.in_one_transaction(work)
