"""The bot's own session (user, device, access token) and small state such as the sync token."""

from __future__ import annotations

from bot.store.database import Database, Session


class StateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load_session(self) -> Session | None:
        row = await self._db.fetchone(
            "SELECT user_id, device_id, access_token FROM session WHERE id = 1"
        )
        return Session(**dict(row)) if row else None

    async def save_session(self, session: Session) -> None:
        await self._db.write(
            "INSERT OR REPLACE INTO session (id, user_id, device_id, access_token) VALUES (1, ?, ?, ?)",
            (session.user_id, session.device_id, session.access_token),
        )

    async def forget_session(self) -> bool:
        """Drop the saved access token (`tchap-bot reset-session`); True if there was one."""
        return await self._db.write("DELETE FROM session WHERE id = 1") > 0

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set(self, key: str, value: str) -> None:
        # After every sync: an update in place (REPLACE would delete and re-insert the row).
        await self.set_many({key: value})

    async def set_many(self, values: dict[str, str]) -> None:
        """One statement, so the values are saved together or not at all (autocommit: one
        round trip)."""
        rows = [item for pair in values.items() for item in pair]
        marks = ", ".join("(?, ?)" for _ in values)
        await self._db.write(
            f"INSERT INTO bot_state (key, value) VALUES {marks} "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            rows,
        )
