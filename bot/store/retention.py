"""Retention: stored messages older than the room's retention period are deleted."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bot.room_config import RoomConfigRepository
from bot.store import Store
from bot.store.database import now_ms

log = structlog.get_logger(__name__)
DAY_MS = 86_400_000


async def purge_expired(
    store: Store, room_config: RoomConfigRepository, default_days: int, at_ms: int | None = None
) -> int:
    """Delete what each room keeps beyond its retention; returns the number of messages removed."""
    moment = now_ms() if at_ms is None else at_ms
    removed = 0
    for room_id in await store.rooms.with_data():
        days = room_config.get(room_id).retention_jours or default_days
        removed += await store.messages.purge_older_than(room_id, moment - days * DAY_MS)
    if removed:
        log.info("retention.purged", messages=removed)
    return removed


async def retention_loop(
    store: Store,
    room_config: RoomConfigRepository,
    default_days: int,
    every_seconds: float,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            await purge_expired(store, room_config, default_days)
        except Exception:
            log.exception("retention.failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_seconds)
