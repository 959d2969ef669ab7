"""Per-room counters: questions, answers, tokens (no content)."""

from __future__ import annotations

from bot.store.database import Database, RoomUsage, now_ms


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, room_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens spent outside a question (summaries, commands)."""
        await self._db.write(
            "INSERT INTO room_usage (room_id, prompt_tokens, completion_tokens, last_activity_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE SET "
            "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, "
            "last_activity_ms = excluded.last_activity_ms",
            (room_id, prompt_tokens, completion_tokens, now_ms()),
        )

    async def of_room(self, room_id: str) -> RoomUsage:
        row = await self._db.fetchone(
            "SELECT questions, answers, prompt_tokens, completion_tokens, last_activity_ms "
            "FROM room_usage WHERE room_id = ?",
            (room_id,),
        )
        return RoomUsage(**dict(row)) if row else RoomUsage()
