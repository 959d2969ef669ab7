"""Members' public read receipts, for `!resume` "since you last read"."""

from __future__ import annotations

from bot.models import ReadReceipt
from bot.store.database import Database, Record


class ReadPosition(Record):
    event_id: str
    read_at_ms: int
    event_ms: int | None

    @property
    def since_ms(self) -> int:
        """Messages strictly after this are unread: the read event's time when the bot stored
        that event, else the moment of the receipt."""
        return (self.event_ms if self.event_ms is not None else self.read_at_ms) + 1


class ReadReceiptsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, receipt: ReadReceipt, session_gap_ms: int) -> None:
        """Keep a member's newest public receipt; when it opens a new reading session (more
        than `session_gap_ms` after the previous one), the previous one becomes `earlier`."""
        await self._db.write(
            "INSERT INTO read_receipts (room_id, user_id, thread, event_id, read_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id, thread) DO UPDATE SET "
            "earlier_event_id = CASE WHEN excluded.read_at_ms - read_at_ms > ? "
            "THEN event_id ELSE earlier_event_id END, "
            "earlier_read_at_ms = CASE WHEN excluded.read_at_ms - read_at_ms > ? "
            "THEN read_at_ms ELSE earlier_read_at_ms END, "
            "event_id = excluded.event_id, read_at_ms = excluded.read_at_ms "
            "WHERE excluded.read_at_ms >= read_at_ms AND excluded.event_id != event_id",
            (
                receipt.room_id,
                receipt.user_id,
                receipt.thread,
                receipt.event_id,
                receipt.read_at_ms,
                session_gap_ms,
                session_gap_ms,
            ),
        )

    async def positions(self, room_id: str, user_id: str, thread: str = "") -> list[ReadPosition]:
        """Where the member stopped reading, newest first: the latest receipt, then the last
        one of their previous reading session."""
        row = await self._db.fetchone(
            "SELECT r.event_id, r.read_at_ms, m.timestamp_ms, "
            "r.earlier_event_id, r.earlier_read_at_ms, e.timestamp_ms "
            "FROM read_receipts r "
            "LEFT JOIN room_messages m ON m.event_id = r.event_id AND m.room_id = r.room_id "
            "LEFT JOIN room_messages e ON e.event_id = r.earlier_event_id "
            "AND e.room_id = r.room_id "
            "WHERE r.room_id = ? AND r.user_id = ? AND r.thread = ?",
            (room_id, user_id, thread),
        )
        if row is None:
            return []
        positions = [ReadPosition(event_id=row[0], read_at_ms=row[1], event_ms=row[2])]
        if row[3] is not None:
            positions.append(ReadPosition(event_id=row[3], read_at_ms=row[4], event_ms=row[5]))
        return positions
