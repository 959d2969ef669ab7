"""Per-room command configuration: disabled built-ins and custom commands, cached in memory.

The cache makes the check "is this command disabled here?" free on every message; every change
goes through the store, which writes the audit row in the same transaction.
"""

from __future__ import annotations

from bot.store import Store
from bot.store.database import CustomCommand, now_ms


class RoomCommandsRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._disabled: dict[str, set[str]] = {}
        self._custom: dict[str, dict[str, CustomCommand]] = {}

    async def load_all(self) -> None:
        self._disabled = await self._store.commands.disabled()
        self._custom = {}
        for command in await self._store.commands.custom():
            self._custom.setdefault(command.room_id, {})[command.name] = command

    def is_disabled(self, room_id: str, name: str) -> bool:
        return name in self._disabled.get(room_id, set())

    def disabled(self, room_id: str) -> set[str]:
        return set(self._disabled.get(room_id, set()))

    async def set_enabled(self, room_id: str, name: str, user_id: str, enabled: bool) -> None:
        await self._store.commands.set_enabled(room_id, name, user_id, enabled)
        if enabled:
            self._disabled.get(room_id, set()).discard(name)
        else:
            self._disabled.setdefault(room_id, set()).add(name)

    def custom(self, room_id: str, name: str) -> CustomCommand | None:
        return self._custom.get(room_id, {}).get(name)

    def customs(self, room_id: str) -> list[CustomCommand]:
        return sorted(self._custom.get(room_id, {}).values(), key=lambda command: command.name)

    async def save_custom(
        self, room_id: str, name: str, template: str, description: str, user_id: str
    ) -> CustomCommand:
        old = self.custom(room_id, name)
        command = CustomCommand(
            room_id=room_id,
            name=name,
            template=template,
            description=description,
            created_by=user_id,
            created_at_ms=now_ms(),
        )
        await self._store.commands.save_custom(command, old.template if old else None)
        self._custom.setdefault(room_id, {})[name] = command
        return command

    async def delete_custom(self, room_id: str, name: str, user_id: str) -> bool:
        old = self.custom(room_id, name)
        if old is None:
            return False
        await self._store.commands.delete_custom(room_id, name, user_id, old.template)
        del self._custom[room_id][name]
        return True

    def forget(self, room_id: str) -> None:
        self._disabled.pop(room_id, None)
        self._custom.pop(room_id, None)
