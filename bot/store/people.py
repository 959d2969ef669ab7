"""Data-subject requests: everything stored about one person, exported or deleted."""

from __future__ import annotations

from typing import Any

from bot.store.database import Database, UserDataDeleted


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
        return {
            "user_id": user_id,
            "messages": [dict(row) for row in messages],
            "conversation_turns": [dict(row) for row in turns],
            "settings_changes": [dict(row) for row in audit],
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

    async def purge(self, user_id: str) -> UserDataDeleted:
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
            await db.execute(
                "DELETE FROM triggers WHERE sender = ? AND status = 'pending'", (user_id,)
            )
            await db.execute("DELETE FROM read_receipts WHERE user_id = ?", (user_id,))
            cursor = await db.execute("DELETE FROM documents WHERE sender = ?", (user_id,))
            documents = max(cursor.rowcount, 0)
        return UserDataDeleted(messages=messages, conversation_turns=turns, documents=documents)
