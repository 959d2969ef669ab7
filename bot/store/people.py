"""Data-subject requests: everything stored about one person, exported or deleted.

What a person wrote is found in: room messages, conversation turns, the questions recorded as
triggers (their full text is kept only while pending), the texts of the room-level changes
they made (settings audit), the custom commands and the schedules they created.
"""

from __future__ import annotations

from typing import Any

from bot.store.database import Database, UserDataDeleted, now_ms


class PeopleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def export(self, user_id: str) -> dict[str, Any]:
        messages = await self._db.fetchall(
            "SELECT * FROM room_messages WHERE sender = ? ORDER BY timestamp_ms", (user_id,)
        )
        turns = await self._db.fetchall(
            "SELECT room_id, thread_root_id, role, content, event_id, timestamp_ms "
            "FROM conversation_turns WHERE sender = ? ORDER BY id",
            (user_id,),
        )
        audit = await self._db.fetchall(
            "SELECT room_id, key, old_value, new_value, changed_at_ms FROM settings_audit "
            "WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        triggers = await self._db.fetchall(
            "SELECT event_id, room_id, status, event_timestamp_ms, received_at_ms, "
            "answer_event_id, CASE status WHEN 'pending' THEN payload END AS pending_payload "
            "FROM triggers WHERE sender = ? ORDER BY received_at_ms",
            (user_id,),
        )
        commands = await self._db.fetchall(
            "SELECT room_id, name, template, description, created_at_ms FROM custom_commands "
            "WHERE created_by = ? ORDER BY room_id, name",
            (user_id,),
        )
        schedules = await self._db.fetchall(
            "SELECT id, room_id, spec, command_line, created_at_ms, next_run_ms, last_run_ms "
            "FROM schedules WHERE created_by = ? ORDER BY id",
            (user_id,),
        )
        return {
            "user_id": user_id,
            "messages": [dict(row) for row in messages],
            "conversation_turns": [dict(row) for row in turns],
            "settings_changes": [dict(row) for row in audit],
            "questions": [dict(row) for row in triggers],
            "custom_commands": [dict(row) for row in commands],
            "schedules": [dict(row) for row in schedules],
            "read_receipts": [
                dict(row)
                for row in await self._db.fetchall(
                    "SELECT room_id, thread, event_id, read_at_ms FROM read_receipts "
                    "WHERE user_id = ? ORDER BY room_id",
                    (user_id,),
                )
            ],
            "documents": [
                {**dict(row), "text": str(row["text"] or "")}
                for row in await self._db.fetchall(
                    "SELECT d.room_id, d.event_id, d.name, d.mimetype, d.pages, d.timestamp_ms, "
                    "group_concat(p.text, char(10) || char(10)) AS text FROM documents d "
                    "LEFT JOIN (SELECT document_id, text FROM document_passages ORDER BY position) p "
                    "ON p.document_id = d.id WHERE d.sender = ? GROUP BY d.id ORDER BY d.timestamp_ms",
                    (user_id,),
                )
            ],
        }

    async def purge(
        self, user_id: str, *, keep_event_id: str | None = None, until_ms: int | None = None
    ) -> UserDataDeleted:
        """Delete what this person wrote and blank the texts of the changes they made.

        Their questions still waiting are withdrawn (skipped, text cleared) when they were
        sent up to `until_ms` (all of them when None), except `keep_event_id` (the request
        itself when it came as a command). The trigger rows stay, without content, so that a
        replayed sync never answers a withdrawn question."""
        async with self._db.transaction() as db:
            cursor = await db.execute("DELETE FROM room_messages WHERE sender = ?", (user_id,))
            messages = max(cursor.rowcount, 0)
            cursor = await db.execute("DELETE FROM conversation_turns WHERE sender = ?", (user_id,))
            turns = max(cursor.rowcount, 0)
            # The bot's answers to this user's questions are built from them: they go too.
            answers = (
                "SELECT answer_event_id FROM triggers WHERE sender = ? "
                "AND answer_event_id IS NOT NULL"
            )
            cursor = await db.execute(
                f"DELETE FROM conversation_turns WHERE role = 'assistant' AND event_id IN ({answers})",
                (user_id,),
            )
            turns += max(cursor.rowcount, 0)
            await db.execute(f"DELETE FROM room_messages WHERE event_id IN ({answers})", (user_id,))
            await db.execute(
                "UPDATE triggers SET payload = '{}' WHERE sender = ? AND status != 'pending'",
                (user_id,),
            )
            cursor = await db.execute(
                "UPDATE triggers SET status = 'skipped', payload = '{}', updated_at_ms = ? "
                "WHERE sender = ? AND status = 'pending' AND event_id IS NOT ? "
                "AND (? IS NULL OR event_timestamp_ms <= ?)",
                (now_ms(), user_id, keep_event_id, until_ms, until_ms),
            )
            withdrawn = max(cursor.rowcount, 0)
            await db.execute("DELETE FROM read_receipts WHERE user_id = ?", (user_id,))
            cursor = await db.execute(
                "DELETE FROM custom_commands WHERE created_by = ?", (user_id,)
            )
            commands = max(cursor.rowcount, 0)
            cursor = await db.execute("DELETE FROM schedules WHERE created_by = ?", (user_id,))
            schedules = max(cursor.rowcount, 0)
            # Who changed what and when stays (the room's accountability); the texts go.
            cursor = await db.execute(
                "UPDATE settings_audit SET old_value = NULL, new_value = NULL "
                "WHERE user_id = ? AND (old_value IS NOT NULL OR new_value IS NOT NULL)",
                (user_id,),
            )
            audit = max(cursor.rowcount, 0)
            cursor = await db.execute("DELETE FROM documents WHERE sender = ?", (user_id,))
            documents = max(cursor.rowcount, 0)
        return UserDataDeleted(
            messages=messages,
            conversation_turns=turns,
            questions_withdrawn=withdrawn,
            custom_commands=commands,
            schedules=schedules,
            audit_texts=audit,
            documents=documents,
        )
