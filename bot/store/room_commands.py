"""Commands a room turned off, and the room's own (custom) commands."""

from __future__ import annotations

from bot.store.database import CustomCommand, Database, now_ms
from bot.store.settings import record_audit


class RoomCommandsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def disabled(self) -> dict[str, set[str]]:
        rows = await self._db.fetchall("SELECT room_id, command FROM disabled_commands")
        disabled: dict[str, set[str]] = {}
        for row in rows:
            disabled.setdefault(str(row[0]), set()).add(str(row[1]))
        return disabled

    async def set_enabled(self, room_id: str, command: str, user_id: str, enabled: bool) -> None:
        """Enable or disable a command in a room, with its audit row."""
        timestamp = now_ms()
        async with self._db.transaction() as db:
            if enabled:
                await db.execute(
                    "DELETE FROM disabled_commands WHERE room_id = ? AND command = ?",
                    (room_id, command),
                )
            else:
                await db.execute(
                    "INSERT OR REPLACE INTO disabled_commands (room_id, command, disabled_by, disabled_at_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (room_id, command, user_id, timestamp),
                )
            await record_audit(
                db,
                room_id,
                user_id,
                f"commande:{command}",
                None,
                "activée" if enabled else "désactivée",
                timestamp,
            )

    async def custom(self) -> list[CustomCommand]:
        rows = await self._db.fetchall("SELECT * FROM custom_commands ORDER BY room_id, name")
        return [CustomCommand(**dict(row)) for row in rows]

    async def save_custom(self, command: CustomCommand, old_template: str | None) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO custom_commands (room_id, name, template, description, created_by, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    command.room_id,
                    command.name,
                    command.template,
                    command.description,
                    command.created_by,
                    command.created_at_ms,
                ),
            )
            await record_audit(
                db,
                command.room_id,
                command.created_by,
                f"commande-perso:{command.name}",
                old_template,
                command.template,
                command.created_at_ms,
            )

    async def delete_custom(self, room_id: str, name: str, user_id: str, old_template: str) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                "DELETE FROM custom_commands WHERE room_id = ? AND name = ?", (room_id, name)
            )
            await record_audit(
                db, room_id, user_id, f"commande-perso:{name}", old_template, None, now_ms()
            )
