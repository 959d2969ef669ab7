"""Power levels: who may change a room's settings. Rights come from the room's real state only.

Only two state events are read (`m.room.power_levels`, `m.room.create`), cached per room and
dropped when sync delivers a change of the room's state (`PowerLevelCache`).

Since room version 12 the room's creators (the `m.room.create` sender and `additional_creators`)
have unlimited power and are absent from `m.room.power_levels`; older rooms read it classically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

UNLIMITED_POWER = 1 << 53  # room v12 creators outrank every power level


def effective_power_level(
    user_id: str,
    power_levels: Mapping[str, Any] | None,
    create_sender: str | None,
    create_content: Mapping[str, Any] | None,
) -> int:
    """A user's power in a room, including room-version-12 creators (absent from power_levels)."""
    create_content = create_content or {}
    version = str(create_content.get("room_version", "1"))
    if _creators_are_privileged(version):
        creators = {create_sender} if create_sender else set()
        extra = create_content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(item for item in extra if isinstance(item, str))
        if user_id in creators:
            return UNLIMITED_POWER
    if power_levels is None:
        # No power_levels event: the creator has 100, everybody else 0 (spec, all versions).
        return 100 if user_id == create_sender else 0
    users = power_levels.get("users")
    default = _as_int(power_levels.get("users_default"), 0)
    if isinstance(users, Mapping) and user_id in users:
        return _as_int(users[user_id], default)
    return default


def _creators_are_privileged(version: str) -> bool:
    if version == "org.matrix.hydra.11":
        return True
    return version.isdigit() and int(version) >= 12


def _as_int(value: Any, fallback: int) -> int:
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return fallback


class RoomPower(NamedTuple):
    """What rights in one room are computed from: its power levels and its create event."""

    power_levels: Mapping[str, Any] | None
    create_sender: str | None
    create_content: Mapping[str, Any] | None

    def level_of(self, user_id: str) -> int:
        return effective_power_level(
            user_id, self.power_levels, self.create_sender, self.create_content
        )


FetchRoomPower = Callable[[str], Awaitable[RoomPower | None]]


class PowerLevelCache:
    """Each room's `RoomPower`, fetched once (two small state events) and kept until sync says
    the room's state changed (`invalidate`). Never the whole room state: in a Tchap room of
    thousands of members that is megabytes per check.

    A fetch that overlaps an invalidation is not kept (generation counter): a change seen by
    sync always wins over a read that started before it.
    """

    def __init__(self, fetch: FetchRoomPower) -> None:
        self._fetch = fetch
        self._rooms: dict[str, RoomPower] = {}
        self._generation: dict[str, int] = {}
        self.fetches = 0  # for tests and the benchmark

    async def level(self, room_id: str, user_id: str) -> int:
        power = self._rooms.get(room_id)
        for _ in range(3):
            if power is not None:
                break
            generation = self._generation.get(room_id, 0)
            self.fetches += 1
            fetched = await self._fetch(room_id)
            if fetched is None:
                return 0  # state unreadable: nobody gets moderator rights from a failure
            if self._generation.get(room_id, 0) == generation:
                self._rooms[room_id] = power = fetched
            else:
                power = self._rooms.get(room_id)  # changed meanwhile: read again
        if power is None:
            return 0
        return power.level_of(user_id)

    def invalidate(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)
        self._generation[room_id] = self._generation.get(room_id, 0) + 1

    def forget(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)
        self._generation.pop(room_id, None)

    def cached(self, room_id: str) -> bool:
        return room_id in self._rooms
