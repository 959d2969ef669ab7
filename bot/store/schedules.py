"""Scheduled commands, advanced by compare-and-set so that a run never happens twice."""

from __future__ import annotations

from bot.store.database import Database, Schedule, now_ms
from bot.store.settings import record_audit


class SchedulesRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, room_id: str, spec: str, command_line: str, user_id: str, next_run_ms: int
    ) -> int:
        timestamp = now_ms()
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO schedules (room_id, spec, command_line, created_by, created_at_ms, next_run_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (room_id, spec, command_line, user_id, timestamp, next_run_ms),
            )
            schedule_id = int(cursor.lastrowid or 0)
            await record_audit(
                db,
                room_id,
                user_id,
                f"planification:{schedule_id}",
                None,
                f"{spec} → {command_line}",
                timestamp,
            )
        return schedule_id

    async def list(self, room_id: str | None = None) -> list[Schedule]:
        if room_id is None:
            rows = await self._db.fetchall("SELECT * FROM schedules ORDER BY next_run_ms")
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM schedules WHERE room_id = ? ORDER BY id", (room_id,)
            )
        return [Schedule(**dict(row)) for row in rows]

    async def delete(self, room_id: str, schedule_id: int, user_id: str) -> bool:
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM schedules WHERE room_id = ? AND id = ?", (room_id, schedule_id)
            )
            deleted = cursor.rowcount > 0
            if deleted:
                await record_audit(
                    db, room_id, user_id, f"planification:{schedule_id}", "active", None, now_ms()
                )
        return deleted

    async def advance(
        self, schedule_id: int, expected_next_ms: int, ran_at_ms: int | None, next_run_ms: int
    ) -> bool:
        """Move a schedule to its next run; False if another run already moved it (never twice)."""
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "UPDATE schedules SET next_run_ms = ?, last_run_ms = coalesce(?, last_run_ms) "
                "WHERE id = ? AND next_run_ms = ?",
                (next_run_ms, ran_at_ms, schedule_id, expected_next_ms),
            )
            return cursor.rowcount > 0
