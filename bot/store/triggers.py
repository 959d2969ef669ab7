"""Exactly-once bookkeeping: one row per event that asked something of the bot."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import Decision, IncomingMessage, Job
from bot.ops import faults
from bot.store.database import (
    INSERT_MESSAGE,
    ConversationTurn,
    Database,
    StoredMessage,
    TriggerStatus,
    message_row,
    now_ms,
)


class TriggersRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self,
        message: IncomingMessage,
        stored: StoredMessage | None = None,
        decision: Decision | None = None,
    ) -> bool:
        """Record a triggering event with what it was classified as (and its text for summaries,
        in the same transaction: one write on the question's path); False if it was already
        answered (or given up)."""
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO triggers (event_id, room_id, sender, status, received_at_ms, "
                "event_timestamp_ms, payload, updated_at_ms) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    message.event_id,
                    message.room_id,
                    message.sender,
                    now_ms(),
                    message.timestamp_ms,
                    Job(message=message, decision=decision).model_dump_json(),
                    now_ms(),
                ),
            )
            async with db.execute(
                "SELECT status FROM triggers WHERE event_id = ?", (message.event_id,)
            ) as cursor:
                row = await cursor.fetchone()
            pending = bool(row and row[0] == "pending")
            if pending and stored is not None:
                await db.execute(INSERT_MESSAGE, message_row(stored))
        return pending

    async def status(self, event_id: str) -> TriggerStatus | None:
        row = await self._db.fetchone("SELECT status FROM triggers WHERE event_id = ?", (event_id,))
        return row[0] if row else None

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
    ) -> None:
        """Record the outcome of a trigger and the exchange it produced, atomically.
        Commands pass `question=False`: usage counts questions to the model only."""
        if answer_event_id is not None:
            faults.maybe_crash("after_send_before_record")  # tests only: sent, not recorded
        timestamp = now_ms()
        answered = 1 if status == "answered" and question else 0
        asked = 1 if question else 0
        async with self._db.transaction() as db:
            await db.execute(
                "UPDATE triggers SET status = ?, answer_event_id = ?, updated_at_ms = ? WHERE event_id = ?",
                (status, answer_event_id, timestamp, message.event_id),
            )
            await db.executemany(
                "INSERT INTO conversation_turns (room_id, thread_root_id, role, sender, sender_name, "
                "content, event_id, timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
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
                ],
            )
            await db.executemany(INSERT_MESSAGE, [message_row(m) for m in answer_messages])
            await db.execute(
                "INSERT INTO room_usage (room_id, questions, answers, prompt_tokens, completion_tokens, "
                "last_activity_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE SET "
                "questions = questions + excluded.questions, answers = answers + excluded.answers, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_activity_ms = excluded.last_activity_ms",
                (message.room_id, asked, answered, prompt_tokens, completion_tokens, timestamp),
            )
