"""Per-room settings with an in-memory cache, so checking a room's answer mode costs no query."""

from __future__ import annotations

from typing import Any

from bot.store import Store
from config.room_settings import RoomSettings, display_value


class RoomConfigRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, RoomSettings] = {}

    async def load_all(self) -> None:
        for room_id, data in (await self._store.settings.all()).items():
            self._cache[room_id] = RoomSettings.model_validate(data)

    def get(self, room_id: str) -> RoomSettings:
        return self._cache.get(room_id) or RoomSettings()

    async def change(self, room_id: str, user_id: str, field: str, new: RoomSettings) -> None:
        """Persist the room's new settings with an audit row (who, when, old, new)."""
        old_value: Any = getattr(self.get(room_id), field)
        new_value: Any = getattr(new, field)
        await self._store.settings.change(
            room_id,
            user_id,
            field,
            new.model_dump(mode="json", exclude_defaults=True),
            display_value(old_value),
            display_value(new_value),
        )
        self._cache[room_id] = new

    def forget(self, room_id: str) -> None:
        self._cache.pop(room_id, None)
