"""Room settings changed by moderators, and the audit trail of every room-level change."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from bot.store.database import Database, SettingChange, now_ms


async def record_audit(
    db: aiosqlite.Connection,
    room_id: str,
    user_id: str,
    key: str,
    old: str | None,
    new: str | None,
    timestamp: int,
) -> None:
    await db.execute(
        "INSERT INTO settings_audit (room_id, user_id, key, old_value, new_value, changed_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, user_id, key, old, new, timestamp),
    )


class RoomSettingsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_room(self, room_id: str) -> dict[str, Any]:
        row = await self._db.fetchone(
            "SELECT settings FROM room_settings WHERE room_id = ?", (room_id,)
        )
        return dict(json.loads(row[0])) if row else {}

    async def all(self) -> dict[str, dict[str, Any]]:
        rows = await self._db.fetchall("SELECT room_id, settings FROM room_settings")
        return {str(row[0]): dict(json.loads(row[1])) for row in rows}

    async def change(
        self,
        room_id: str,
        user_id: str,
        key: str,
        settings: dict[str, Any],
        old: str | None,
        new: str | None,
    ) -> None:
        """Save a room's settings and the audit row of the change in one transaction."""
        timestamp = now_ms()
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO room_settings (room_id, settings, updated_at_ms) VALUES (?, ?, ?)",
                (room_id, json.dumps(settings, ensure_ascii=False), timestamp),
            )
            await record_audit(db, room_id, user_id, key, old, new, timestamp)

    async def audit_of(self, room_id: str) -> list[SettingChange]:
        rows = await self._db.fetchall(
            "SELECT room_id, user_id, key, old_value, new_value, changed_at_ms FROM settings_audit "
            "WHERE room_id = ? ORDER BY id",
            (room_id,),
        )
        return [SettingChange(**dict(row)) for row in rows]
