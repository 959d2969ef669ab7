"""Encrypted events (ciphertext only) waiting for their room key, kept across restarts."""

from __future__ import annotations

from bot.store.database import Database, now_ms


class AwaitingKeysRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, room_id: str, event_id: str, session_id: str, source: str) -> None:
        await self._db.write(
            "INSERT OR IGNORE INTO awaiting_keys (event_id, room_id, session_id, source, received_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (event_id, room_id, session_id, source, now_ms()),
        )

    async def since(self, since_ms: int) -> list[tuple[str, str]]:
        """(room_id, encrypted event JSON) of events still waiting, received after `since_ms`."""
        await self._db.write("DELETE FROM awaiting_keys WHERE received_at_ms < ?", (since_ms,))
        rows = await self._db.fetchall(
            "SELECT room_id, source FROM awaiting_keys ORDER BY received_at_ms"
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def forget(self, event_id: str) -> None:
        await self._db.write("DELETE FROM awaiting_keys WHERE event_id = ?", (event_id,))
