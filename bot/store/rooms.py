"""Rooms the bot is in, and forgetting everything about a room it left."""

from __future__ import annotations

from bot.store.database import Database, now_ms


class RoomsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def remember(self, room_id: str, is_direct: bool) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT INTO rooms (room_id, is_direct, joined_at) VALUES (?, ?, ?) "
                "ON CONFLICT(room_id) DO UPDATE SET is_direct = max(is_direct, excluded.is_direct)",
                (room_id, int(is_direct), now_ms()),
            )

    async def is_direct(self, room_id: str) -> bool:
        row = await self._db.fetchone("SELECT is_direct FROM rooms WHERE room_id = ?", (room_id,))
        return bool(row and row[0])

    async def known_ids(self) -> list[str]:
        return [str(row[0]) for row in await self._db.fetchall("SELECT room_id FROM rooms")]

    async def with_data(self) -> list[str]:
        """Every room something is stored about (retention must not miss unregistered ones)."""
        rows = await self._db.fetchall(
            "SELECT room_id FROM rooms UNION SELECT room_id FROM room_messages "
            "UNION SELECT room_id FROM conversation_turns UNION SELECT room_id FROM triggers "
            "UNION SELECT room_id FROM documents"
        )
        return [str(row[0]) for row in rows]

    async def forget(self, room_id: str) -> None:
        """Delete everything stored about a room the bot left (data protection)."""
        async with self._db.transaction() as db:
            for table in (
                "room_messages",
                "conversation_turns",
                "triggers",
                "room_settings",
                "settings_audit",
                "room_usage",
                "disabled_commands",
                "custom_commands",
                "schedules",
                "awaiting_keys",
                "documents",  # passages, their index and embeddings follow (cascade)
                "read_receipts",
                "rooms",
            ):
                await db.execute(f"DELETE FROM {table} WHERE room_id = ?", (room_id,))
