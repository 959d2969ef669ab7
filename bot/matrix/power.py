"""Power levels: who may change a room's settings. Rights come from the room's real state only.

Since room version 12 the room's creators (the `m.room.create` sender and `additional_creators`)
have unlimited power and are absent from `m.room.power_levels`; older rooms read it classically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
